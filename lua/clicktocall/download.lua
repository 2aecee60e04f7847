--- clicktocall.download: the one download policy, for every transport: a recording is written whole at
-- `path` or not at all. The body goes to a temporary file of ours in the same directory (through the
-- transport's own t:download, or else a C file sink: exclusive create, running SHA-256, fsync, unlinked
-- unless finished), renamed into place once its status and length are right, then the directory synced.
-- fetch's opts let archive_recordings take over the directory sync, or the fsync and rename too, to group
-- them per turn of its scheduler. The path checks, redirects of a sink transfer and messages are here.

local core = require "clicktocall.core"
local errors = require "clicktocall.errors"
local exchange = require "clicktocall.exchange"
local http1 = require "clicktocall.http1"

local type = type
local pcall = pcall
local error = error
local tonumber = tonumber
local tostring = tostring
local find = string.find
local gsub = string.gsub
local match = string.match
local format = string.format
local byte = string.byte
local sub = string.sub
local gmatch = string.gmatch
local concat = table.concat
local os_rename = os.rename
local os_remove = os.remove
local os_time = os.time
local io_open = io.open

local fail = exchange.fail
local header = exchange.header

local _M = { _VERSION = core._VERSION }

-- one limit for both paths: libcurl's CURLOPT_MAXREDIRS is set from the same constant
local MAX_REDIRECTS = require("clicktocall.limits").redirects
_M.MAX_REDIRECTS = MAX_REDIRECTS

--------------------------------------------------------------------------
-- temporary names
--------------------------------------------------------------------------

-- A few random bytes read once per process, so that a pid reused after a crash
-- still gives new names. math.random is not used: the caller owns its state, and
-- LuaJIT never seeds it, so every fresh process would draw the same names.
local process_noise
local function noise()
  if not process_noise then
    local f = io_open("/dev/urandom", "rb")
    local b = f and f:read(4)
    if f then
      f:close()
    end
    if b and #b == 4 then
      local b1, b2, b3, b4 = byte(b, 1, 4)
      process_noise = format("%02x%02x%02x%02x", b1, b2, b3, b4)
    else
      process_noise = format("%x", os_time() % 0x100000000)
    end
  end
  return process_noise
end

local sequence = 0

--- temp_name(dir) -> a name in dir no other process or attempt uses
-- Short (about 40 bytes), so any name the file system accepts for `path` works:
-- the temporary name is never path .. a suffix. The pid is read each time
-- because nginx forks its workers after the module may have been loaded.
function _M.temp_name(dir)
  sequence = sequence + 1
  return format("%s/.ctc-%x-%s-%x.part", dir, core.getpid(), noise(), sequence)
end

--------------------------------------------------------------------------
-- checks
--------------------------------------------------------------------------

local function parent_dir(path)
  local dir = match(path, "^(.*)/[^/]*$")
  if dir == nil then
    return "."
  end
  return dir == "" and "/" or dir
end

-- download_recording's two arguments are positional: err.field names them as the README does
local function argument(st, field, what)
  local e = errors.call_argument("download_recording", what, field)
  e.message = exchange.redact(st, e.message)
  return nil, e
end

--- check(st, rec, path) -> url, dir | nil, err
local function check(st, rec, path)
  local url = rec
  if type(rec) == "table" then
    url = rec.recordFileDownloadUrl
    if rec.recordFlag == "0" or rec.recordFlag == 0 or url == nil or url == "" then
      return argument(st, "rec_or_url", "the record has no recording (recordFlag \"0\" or no recordFileDownloadUrl)")
    end
  end
  if type(url) ~= "string" then
    return argument(st, "rec_or_url", "expected a record or a URL, got " .. type(rec))
  end
  url = match(url, "^%s*(.-)%s*$")
  if not http1.web_url(url) then
    return argument(st, "rec_or_url", "the recording URL must be an http:// or https:// URL without spaces")
  end
  if type(path) ~= "string" or path == "" then
    return argument(st, "path", "path must be a file path, got " .. (path == "" and "\"\"" or type(path)))
  end
  if core.file_kind(path) == "directory" then
    return argument(st, "path", "path " .. path .. " is a directory")
  end
  local dir = parent_dir(path)
  if core.file_kind(dir) ~= "directory" then
    return argument(st, "path", "path's directory " .. dir .. " does not exist")
  end
  return url, dir
end

--------------------------------------------------------------------------
-- one attempt
--------------------------------------------------------------------------

-- RFC 3986 5.2.4, for a path that starts with "/": "." and ".." segments go.
local function remove_dot_segments(path)
  local parts, out = {}, {}
  for seg in gmatch(sub(path, 2) .. "/", "([^/]*)/") do
    parts[#parts + 1] = seg
  end
  for k = 1, #parts do
    local seg = parts[k]
    if seg == ".." then
      out[#out] = nil
    elseif seg ~= "." then
      out[#out + 1] = seg
    end
    if (seg == "." or seg == "..") and k == #parts then
      out[#out + 1] = ""
    end
  end
  return "/" .. concat(out, "/")
end

-- A Location relative to the URL that answered it (RFC 3986 5.2, the common forms).
local function resolve_location(url, location)
  if match(location, "^[%a][%w+.-]*://") then
    return location
  end
  if find(location, "^//") then
    return match(url, "^(%a[%w+.-]*:)") .. location
  end
  local origin, path = match(url, "^(%a[%w+.-]*://[^/?#]+)([^?#]*)")
  local ref, rest = match(location, "^([^?#]*)(.*)$")
  if ref == "" then
    ref = path ~= "" and path or "/"
  elseif not find(ref, "^/") then
    ref = gsub(path ~= "" and path or "/", "[^/]*$", "", 1) .. ref
  end
  return origin .. remove_dot_segments(ref) .. rest
end

local function http_error(st, status)
  return fail(st, "http", format("the recording server answered HTTP %d", status), { status = status })
end

local function io_error(st, message)
  -- a local write failure: fetching again would fill the same full disk
  return fail(st, "io", message, { sent = true, retryable = false })
end

-- A new file sink under a fresh name; a name taken by anyone (a stale file of
-- ours after a crash, say) only makes us draw another.
local function open_sink(st, dir, mode)
  local err
  for _ = 1, 8 do
    local tmp = _M.temp_name(dir)
    local sink
    sink, err = core.file_sink(tmp, mode)
    if sink then
      return sink, tmp
    end
    if err.code ~= "exists" then
      break
    end
  end
  return nil, fail(st, "io", err.message, { sent = false, retryable = false })
end

-- One request whose body goes to the sink -> res, err, the sink's write error.
-- A transport may stream the body to request.sink or return it whole as res.body (the transport contract
-- never required the sink): a 2xx body that never went through the sink is written to it here, so the
-- length check and the whole-or-nothing rename treat both alike.
local function send_to_sink(st, t, request, sink)
  local werr, streamed
  request.sink = function(chunk)
    streamed = true
    local ok, e = sink:write(chunk)
    if not ok then
      werr = e.message
      return nil, e
    end
    return true
  end
  local ok, res, err = pcall(exchange.send, st, t, request)
  request.sink = nil
  if not ok then
    sink:abort() -- only an interrupt gets here (exchange.send returns every other failure): no file is left
    error(res, 0)
  end
  if res and not streamed and not werr and res.status >= 200 and res.status <= 299
    and type(res.body) == "string" and res.body ~= "" then
    local wok, e = sink:write(res.body)
    if not wok then
      werr = e
    end
  end
  return res, err, werr
end

-- The Location of a redirect, or nil when the answer is not one.
local function redirect_of(res)
  local status = res and res.status
  if status and status >= 300 and status < 400 then
    return header(res.headers, "location")
  end
  return nil
end

-- An answer that is not a redirect: the file is whole -> { status, headers, bytes, sha256 } | nil, err
local function keep_body(st, sink, res, err, werr)
  if werr then
    return nil, io_error(st, werr) -- whatever the transport made of it, the disk failed
  end
  if not res then
    return nil, err
  end
  if res.status < 200 or res.status > 299 then
    return nil, http_error(st, res.status)
  end
  local length = tonumber(header(res.headers, "content-length"))
  if length and length ~= sink:bytes() then
    return nil, fail(st, "network", format("recording cut short: got %.0f of %.0f bytes", sink:bytes(), length),
                     { sent = true })
  end
  local bytes, sha = sink:finish()
  if not bytes then
    return nil, io_error(st, sha.message)
  end
  return { status = res.status, headers = res.headers, bytes = bytes, sha256 = sha }
end

local function next_url(st, url, location)
  if type(location) ~= "string" then
    return nil, fail(st, "protocol", "the recording server sent a redirect without a usable Location")
  end
  url = resolve_location(url, location)
  if not http1.web_url(url) then
    return nil, fail(st, "protocol", "the recording was redirected to something other than an http:// or https:// URL")
  end
  return url
end

-- Through a transport written in Lua: redirects, status and length here, the
-- body into a file sink (a new one per hop, so a 3xx body is never kept).
local function fetch_lua(st, t, request, dir)
  local url = request.url
  for _ = 0, MAX_REDIRECTS do
    local sink, tmp = open_sink(st, dir, request.mode)
    if not sink then
      return nil, tmp
    end
    request.url = url
    local res, err, werr = send_to_sink(st, t, request, sink)
    local location = not werr and redirect_of(res)
    if not location then
      local result, kerr = keep_body(st, sink, res, err, werr)
      if not result then
        sink:abort()
        return nil, kerr, res
      end
      return result, tmp
    end
    sink:abort()
    url, err = next_url(st, url, location)
    if not url then
      return nil, err, res
    end
  end
  return nil, fail(st, "protocol", "recording redirected more than " .. MAX_REDIRECTS .. " times")
end

-- Through the transport's own download (libcurl: C follows redirects and checks the length, same limit,
-- same messages).
local function fetch_own(st, t, request, dir)
  -- C creates the file with O_EXCL, so it never writes into another's file; a name
  -- already taken (a stale file of ours) is skipped here, before C sees it
  local tmp
  for _ = 1, 8 do
    tmp = _M.temp_name(dir)
    if core.file_kind(tmp) == "missing" then
      break
    end
  end
  local ok, res, terr = pcall(t.download, t, request, tmp)
  if not ok then
    os_remove(tmp)
    errors.pass_interrupt(res) -- Ctrl-C: the caller stops too, with no file left
    return nil, fail(st, "protocol", "the download raised an error: " .. exchange.describe(res), { sent = true })
  end
  if not res then
    local e = errors.from_transport(terr)
    e.message = exchange.redact(st, e.message)
    return nil, e
  end
  if res.status < 200 or res.status > 299 then
    os_remove(tmp)
    return nil, http_error(st, res.status), res
  end
  return res, tmp
end

-- One attempt: fetch into a temporary file, then rename it into place (and sync dir when asked);
-- place == false: leave it whole at its temporary name (result.tmp) for the caller.
local function attempt(st, t, request, dir, path, sync_dir, place)
  local fetch = t.download and fetch_own or fetch_lua
  local start = request.url
  local res, tmp, eres = fetch(st, t, request, dir)
  request.url = start -- a retry starts over from the first URL
  if not res then
    return nil, tmp, eres
  end
  if place == false then
    return { bytes = res.bytes, sha256 = res.sha256, tmp = tmp }, nil, res
  end
  local ok, rerr = os_rename(tmp, path)
  if not ok then
    os_remove(tmp)
    return nil, io_error(st, "could not move the recording into place: " .. tostring(rerr)), res
  end
  if sync_dir then
    core.fsync(dir) -- the rename itself survives a crash
  end
  return { bytes = res.bytes, sha256 = res.sha256 }, nil, res
end

-- exchange.with_retries passes two values on: one `once` per choice of directory sync
local function once_synced(st, t, request, dir, path)
  return attempt(st, t, request, dir, path, true)
end

local function once_unsynced(st, t, request, dir, path)
  return attempt(st, t, request, dir, path, false)
end

local function once_unplaced(st, t, request, dir, path)
  return attempt(st, t, request, dir, path, false, false)
end

--- fetch(st, rec_or_url, path [, opts [, t]]) -> true, { bytes =, sha256 = [, tmp =] } | nil, err
-- opts.sync_dir = false: the caller fsyncs path's directory itself before it relies on the rename
-- (archive_recordings does it once for all the files of a turn); by default fetch does.
-- opts.sync = false: the file is whole (size and status checked) at result.tmp, in path's directory,
-- but neither renamed nor (with libcurl) fsynced: the caller fsyncs it, renames it to path, fsyncs
-- the directory, and removes result.tmp if it does not get that far.
-- opts.mode: the file's mode at creation (0..0777, less the umask); by default 0666 less the umask.
function _M.fetch(st, rec, path, opts, t)
  t = t or st.transport
  local url, dir = check(st, rec, path)
  if not url then
    return nil, dir
  end
  -- no Authorization: the recording host is not the API and must not see the secret
  local request = {
    method = "GET", url = url,
    headers = { ["User-Agent"] = st.cfg.user_agent },
    timeout = st.download_timeout, connect_timeout = st.connect_timeout,
    mode = opts and opts.mode,
  }
  local once = once_synced
  if opts and opts.sync == false then
    if t.download then
      request.sync = false -- libcurl's finish leaves the fsync to the caller (a Lua sink still does it)
    end
    once = once_unplaced
  elseif opts and opts.sync_dir == false then
    once = once_unsynced
  end
  local result, err = exchange.with_retries(st, t, "download", true, request, once, dir, path)
  if not result then
    return nil, err
  end
  return true, result
end

return _M
