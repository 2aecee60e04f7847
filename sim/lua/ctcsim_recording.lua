-- ctcsim_recording: recording bodies, generated on the fly and streamed, never stored.
--   default:    the fixed 8044-byte WAV (0.5 s, 440 Hz, 8 kHz mono 16-bit)
--   generated:  recording_bytes = N (seed or option): a 44-byte WAV header, then N - 44 data bytes made of
--               64 KiB chunks; chunk k = md5(sessionId) (16 bytes) .. le32(k) .. the fixed noise block.
--               So every session and every chunk differs (a dropped or repeated chunk changes the sha256),
--               and serving 100 MiB costs no more memory than serving 64 KiB.
-- M.serve streams a body (optionally cut short or paced); M.sha256 hashes the same stream (OpenSSL's
-- libcrypto, already loaded into nginx, through the FFI).
local util = require "ctcsim_util"
local store = require "ctcsim_store"
local ffi = require "ffi"

local ngx = ngx
local char, floor, sin, min = string.char, math.floor, math.sin, math.min
local concat = table.concat

local M = {}

M.CHUNK = 65536          -- data bytes per generated chunk
M.HEADER = 44            -- a canonical WAV header
M.MIN_BYTES = 44
M.MAX_BYTES = 16 * 1024 * 1024 * 1024

local PREFIX_LEN = 20    -- md5(sessionId) .. le32(chunk index)

local function le16(n) return char(n % 256, floor(n / 256) % 256) end
local function le32(n) return char(n % 256, floor(n / 256) % 256, floor(n / 65536) % 256, floor(n / 16777216) % 256) end

local function wav_header(data_bytes, rate)
  local riff = data_bytes + 36
  -- sizes past 4 GiB cannot be written in a RIFF header; players read to the end of the file then
  if riff > 0xFFFFFFFF then riff = 0xFFFFFFFF end
  if data_bytes > 0xFFFFFFFF then data_bytes = 0xFFFFFFFF end
  return "RIFF" .. le32(riff) .. "WAVE" .. "fmt " .. le32(16) .. le16(1) .. le16(1) .. le32(rate) .. le32(rate * 2)
      .. le16(2) .. le16(16) .. "data" .. le32(data_bytes)
end

-- the default recording (built once; immutable)
M.WAV = (function()
  local rate, samples = 8000, 4000
  local pcm = {}
  for i = 0, samples - 1 do
    local v = floor(6000 * sin(2 * math.pi * 440 * i / rate) + 0.5)
    if v < 0 then v = v + 65536 end
    pcm[#pcm + 1] = le16(v)
  end
  local data = concat(pcm)
  return wav_header(#data, rate) .. data
end)()

-- the noise after each chunk's prefix: the same for every session (built once per worker)
local TAIL = (function()
  local parts = {}
  local n = 0
  local i = 0
  while n < M.CHUNK - PREFIX_LEN do
    local b = ngx.md5_bin("ctcsim-recording:" .. i)
    parts[#parts + 1] = b
    n = n + #b
    i = i + 1
  end
  return concat(parts):sub(1, M.CHUNK - PREFIX_LEN)
end)()

-- a source: the body of one recording, readable in pieces
-- piece(src, off, len) -> string or list of strings (never crossing a chunk), and its byte count
local function piece(src, off, len)
  if src.whole then
    local n = min(len, src.size - off)
    return src.whole:sub(off + 1, off + n), n
  end
  if off < M.HEADER then
    local n = min(len, M.HEADER - off)
    return src.header:sub(off + 1, off + n), n
  end
  local d = off - M.HEADER
  local k = floor(d / M.CHUNK)
  local r0 = d - k * M.CHUNK
  local r1 = min(M.CHUNK, r0 + len, src.size - M.HEADER - k * M.CHUNK)
  local pre = src.sid_md5 .. le32(k % 4294967296)
  local parts = {}
  if r0 < PREFIX_LEN then parts[1] = pre:sub(r0 + 1, min(r1, PREFIX_LEN)) end
  if r1 > PREFIX_LEN then
    local a = r0 > PREFIX_LEN and r0 or PREFIX_LEN
    if a == PREFIX_LEN and r1 == M.CHUNK then
      parts[#parts + 1] = TAIL               -- the common case: no copy
    else
      parts[#parts + 1] = TAIL:sub(a - PREFIX_LEN + 1, r1 - PREFIX_LEN)
    end
  end
  return parts, r1 - r0
end

-- the body of session `sid` with `bytes` bytes (nil: the default WAV)
function M.source(sid, bytes)
  if not bytes then return { whole = M.WAV, size = #M.WAV } end
  return { size = bytes, header = wav_header(bytes - M.HEADER, 8000), sid_md5 = ngx.md5_bin(sid) }
end

-- the recording served at /recordings/<name>.wav (name: the sessionId, or r<id> for a custom sessionId):
-- its sessionId, size (nil: the default WAV), the call's end time; or nil, the HTTP status a download gets
-- (404 unknown or not recorded; 410 more than 7 days after the call's end), and for a 410 the size and end time
function M.find(name)
  local rec, tend, first
  if name then rec, tend, first = store.record_by_recording_name(name) end
  if not rec or rec.recordFlag ~= "1" then return nil, 404 end
  local bytes = store.seed_recording_bytes(first) or util.dict:get("opt:recording_bytes")
  -- past its 7 days the provider answers 410 Gone (as the bundled mock does)
  if util.now() > tend + util.RECORDING_TTL then return nil, 410, bytes, tend, rec.sessionId end
  return rec.sessionId, bytes, tend
end

-- the recording's name (see find) of a sessionId or of a record id, or nil
function M.name_of(sid, id)
  if id then
    local _, _, _, name = store.get_record(id)
    return name
  end
  local cid = store.id_from_custom_session(sid)
  if cid then return store.custom_name(cid) end
  return sid
end

-- sha256 ------------------------------------------------------------------------------------

local crypto
do
  local ok = pcall(ffi.cdef, [[
    typedef struct evp_md_ctx_st EVP_MD_CTX;
    typedef struct evp_md_st EVP_MD;
    typedef struct engine_st ENGINE;
    EVP_MD_CTX *EVP_MD_CTX_new(void);
    void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
    const EVP_MD *EVP_sha256(void);
    int EVP_DigestInit_ex(EVP_MD_CTX *ctx, const EVP_MD *type, ENGINE *impl);
    int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt);
    int EVP_DigestFinal_ex(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s);
  ]])
  if ok then
    -- nginx is linked with libcrypto, so its symbols are already in the process
    if pcall(function() return ffi.C.EVP_sha256 end) then
      crypto = ffi.C
    else
      local lok, lib = pcall(ffi.load, "crypto")
      if not lok then lok, lib = pcall(ffi.load, "libcrypto.so.3") end
      if lok then crypto = lib end
    end
  end
end

local function hex(bin)
  return (bin:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- the sha256 (hex) of a source's first `limit` bytes (default: all); nil, message without libcrypto
function M.sha256(src, limit)
  if not crypto then return nil, "no libcrypto in this nginx" end
  local ctx = crypto.EVP_MD_CTX_new()
  if ctx == nil then return nil, "EVP_MD_CTX_new failed" end
  ctx = ffi.gc(ctx, crypto.EVP_MD_CTX_free)
  crypto.EVP_DigestInit_ex(ctx, crypto.EVP_sha256(), nil)
  local total = limit or src.size
  local off = 0
  while off < total do
    local p, n = piece(src, off, min(M.CHUNK, total - off))
    if type(p) == "string" then
      crypto.EVP_DigestUpdate(ctx, p, #p)
    else
      for i = 1, #p do crypto.EVP_DigestUpdate(ctx, p[i], #p[i]) end
    end
    off = off + n
  end
  local out = ffi.new("unsigned char[32]")
  crypto.EVP_DigestFinal_ex(ctx, out, nil)
  return hex(ffi.string(out, 32))
end

-- streaming ---------------------------------------------------------------------------------

--[[ send a source's bytes [0, limit) to the client. opts:
       limit   bytes to send (default: all)
       rate    bytes per second (nil: as fast as the client reads)
     Returns the bytes sent and true, or the bytes sent and false when the client went away. ]]
function M.stream(src, opts)
  local limit = opts.limit or src.size
  local rate = opts.rate
  -- paced: pieces small enough that the pace is smooth (about 20 a second), never over a chunk
  local step = M.CHUNK
  if rate then step = min(M.CHUNK, floor(rate / 20)) end
  if step < 1 then step = 1 end
  local t0 = ngx.now()
  local off = 0
  while off < limit do
    local p, n = piece(src, off, min(step, limit - off))
    ngx.print(p)
    off = off + n
    -- wait until the client took it: the worker's memory stays at one piece, whatever the size
    if not ngx.flush(true) then return off, false end
    if rate then
      ngx.update_time()
      local due = t0 + off / rate - ngx.now()
      if due > 0 then ngx.sleep(due) end
    end
  end
  return off, true
end

-- headers for a recording body of `size` bytes
function M.send_headers(size, content_length)
  ngx.status = 200
  ngx.header["Content-Type"] = "audio/wav"
  ngx.header["Content-Length"] = content_length or size
  return ngx.send_headers()
end

-- used by /_sim/recording_info: computed once per (session, size), kept in the shared dict
function M.cached_sha256(sid, bytes)
  local key = "sha:" .. sid .. "|" .. tostring(bytes or "wav")
  local v = util.dict:get(key)
  if v then return v end
  local err
  v, err = M.sha256(M.source(sid, bytes))
  if not v then return nil, err end
  util.dict:safe_set(key, v)
  return v
end

return M
