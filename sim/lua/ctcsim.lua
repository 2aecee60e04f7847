-- ctcsim: entry point of the click-to-call provider simulator (ngx_lua content handler).
--   init()              init_by_lua: read the configuration, set the initial state
--   handle()            every request: /_sim/* control API, or a provider path (faults, log, answer)
--   handle_close_after() the internal location with keepalive_timeout 0 (fault "close_after")
local util = require "ctcsim_util"
local store = require "ctcsim_store"
local faults = require "ctcsim_fault"
local provider = require "ctcsim_provider"
local control = require "ctcsim_control"

local ngx = ngx
local char, floor, sin = string.char, math.floor, math.sin

local M = {}

-- a small valid WAV: 0.5 s of a 440 Hz tone, 8 kHz mono 16-bit PCM (built once; immutable)
local function le16(n) return char(n % 256, floor(n / 256) % 256) end
local function le32(n) return char(n % 256, floor(n / 256) % 256, floor(n / 65536) % 256, floor(n / 16777216) % 256) end

local WAV = (function()
  local rate, samples = 8000, 4000
  local pcm = {}
  for i = 0, samples - 1 do
    local v = floor(6000 * sin(2 * math.pi * 440 * i / rate) + 0.5)
    if v < 0 then v = v + 65536 end
    pcm[#pcm + 1] = le16(v)
  end
  local data = table.concat(pcm)
  return "RIFF" .. le32(36 + #data) .. "WAVE"
      .. "fmt " .. le32(16) .. le16(1) .. le16(1) .. le32(rate) .. le32(rate * 2) .. le16(2) .. le16(16)
      .. "data" .. le32(#data) .. data
end)()
M.WAV = WAV

function M.init()
  util.load_config()
  store.init()
end

local HTML_CT = "text/html;charset=UTF-8"

local function not_found(uri)
  return util.send(404, util.encode({ timestamp = util.fmt_time(util.now()), status = 404,
    error = "Not Found", path = uri }), util.JSON_CT)
end

-- GET /recordings/<sessionId>.wav
local function recording(uri, fault)
  local method = ngx.req.get_method()
  if method ~= "GET" and method ~= "HEAD" then
    return util.send(405, util.encode({ status = 405, error = "Method Not Allowed" }), util.JSON_CT)
  end
  local sid = uri:match("^/recordings/([^/]+)%.wav$")
  local id = sid and store.id_from_session(sid)
  local rec, tend
  if id then rec, tend = store.get_record(id) end
  if not rec or rec.sessionId ~= sid or rec.recordFlag ~= "1" then return not_found(uri) end
  if util.now() > tend + util.RECORDING_TTL then return not_found(uri) end
  if fault and fault.kind == "short_recording" then
    ngx.status = 200
    ngx.header["Content-Type"] = "audio/wav"
    ngx.header["Content-Length"] = #WAV
    ngx.print(WAV:sub(1, floor(#WAV / 2)))
    ngx.flush(true)
    return ngx.exit(ngx.ERROR)     -- close the connection short of Content-Length
  end
  if fault and fault.kind == "drop" then return ngx.exit(444) end
  if fault and fault.kind == "truncated" then
    return util.send(200, WAV:sub(1, floor(#WAV / 2)), "audio/wav")
  end
  return util.send(200, WAV, "audio/wav")
end

-- answer a provider path, with the faults that need the real processing (drop, truncated, stuck_ids)
local function serve(uri, method, body, fault)
  if uri:sub(1, 12) == "/recordings/" then return recording(uri, fault) end
  local h = provider.routes[uri]
  if not h then return not_found(uri) end
  if method ~= "POST" then
    return util.send(405, util.err_body("Request method '" .. method .. "' not supported"), util.JSON_CT)
  end
  local kind = fault and fault.kind
  local ok, out = pcall(h, body, { base = util.base_url(), stuck = (kind == "stuck_ids") })
  if not ok then
    ngx.log(ngx.ERR, "handler error on ", uri, ": ", tostring(out))
    out = util.err_body("系统内部错误 (simulator error)")
  end
  if kind == "drop" then return ngx.exit(444) end
  if kind == "truncated" then out = out:sub(1, floor(#out / 2)) end
  return util.send(200, out, util.JSON_CT)
end

-- faults that replace the answer (the request is not processed)
local function huge_body(bytes)
  local head = '{"meta":{"success":true,"message":"ok"},"data":"'
  local tail = '"}'
  local fill = bytes - #head - #tail
  if fill < 0 then fill = 0 end
  ngx.status = 200
  ngx.header["Content-Type"] = util.JSON_CT
  ngx.header["Content-Length"] = #head + fill + #tail
  ngx.print(head)
  local chunk = string.rep("x", 65536)
  while fill > 0 do
    if fill >= #chunk then
      ngx.print(chunk)
      fill = fill - #chunk
    else
      ngx.print(chunk:sub(1, fill))
      fill = 0
    end
    local ok = ngx.flush(true)
    if not ok then return ngx.exit(ngx.ERROR) end   -- client went away
  end
  ngx.print(tail)
  return ngx.exit(ngx.OK)
end

local STATUS_TEXT = { [429] = "Too Many Requests", [500] = "Internal Server Error", [502] = "Bad Gateway",
  [503] = "Service Temporarily Unavailable", [504] = "Gateway Time-out" }

local function apply_replacing_fault(uri, fault)
  local kind = fault.kind
  if kind == "status" then
    local st = fault.status
    local text = STATUS_TEXT[st] or "Error"
    local headers = fault.retry_after and { ["Retry-After"] = fault.retry_after } or nil
    return true, util.send(st, "<html><head><title>" .. st .. " " .. text .. "</title></head><body><center><h1>"
      .. st .. " " .. text .. "</h1></center><hr><center>nginx</center></body></html>\n", HTML_CT, headers)
  elseif kind == "not_json" then
    return true, util.send(200, "<html><head><title>Welcome</title></head><body><h1>It works!</h1>"
      .. "<p>This is not JSON.</p></body></html>\n", HTML_CT)
  elseif kind == "no_meta" then
    return true, util.send(200, '{"success":true,"data":"ok","timestamp":1700000000000}', util.JSON_CT)
  elseif kind == "wrong_data" then
    local b = provider.wrong_data[uri]
    if b then return true, util.send(200, b, util.JSON_CT) end
  elseif kind == "api_error" then
    return true, util.send(200, util.err_body(fault.message), util.JSON_CT)
  elseif kind == "redirect" then
    -- by default to the very URL asked for: the request after the fault's count gets the real answer
    local location = fault.location or (util.base_url() .. ngx.var.request_uri)
    return true, util.send(fault.status, "redirected to " .. location .. "\n", "text/plain",
                           { Location = location })
  elseif kind == "huge" then
    return true, huge_body(fault.bytes)
  end
  return false
end

function M.handle()
  local uri = ngx.var.uri
  if uri == "/_sim" or uri:sub(1, 6) == "/_sim/" then return control.handle(uri) end
  local method = ngx.req.get_method()
  local body = util.read_body()
  local fault = faults.take(uri)
  faults.log_request(method, uri, body, fault)
  if fault then
    if fault.kind == "latency" then
      ngx.sleep(fault.ms / 1000)
      fault = nil
    elseif fault.kind == "close_after" then
      -- re-run in a location with keepalive_timeout 0: nginx answers "Connection: close" and closes
      return ngx.exec("/_ctc_close_after", { u = uri })
    else
      local done, rv = apply_replacing_fault(uri, fault)
      if done then return rv end
    end
  end
  return serve(uri, method, body, fault)
end

function M.handle_close_after()
  local uri = ngx.unescape_uri(ngx.var.arg_u or "/")
  return serve(uri, ngx.req.get_method(), util.read_body(), nil)
end

return M
