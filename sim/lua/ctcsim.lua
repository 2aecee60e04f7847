-- ctcsim: entry point of the click-to-call provider simulator (ngx_lua content handler).
--   init()              init_by_lua: read the configuration, set the initial state
--   handle()            every request: /_sim/* control API, or a provider path (faults, log, answer)
--   handle_close_after() the internal location with keepalive_timeout 0 (fault "close_after")
--   log_phase()         log_by_lua: the request is over (in-flight count, finish time in the request log)
local util = require "ctcsim_util"
local store = require "ctcsim_store"
local faults = require "ctcsim_fault"
local provider = require "ctcsim_provider"
local control = require "ctcsim_control"

local recording_body = require "ctcsim_recording"

local ngx = ngx
local floor, min = math.floor, math.min
local dict = util.dict
local rules = util.rules

local M = {}

M.WAV = recording_body.WAV

function M.init()
  util.load_config()
  store.init()
end

local HTML_CT = rules.HTML_CT

local function not_found(uri)
  return util.send(404, rules.not_found_body(uri, util.now()), util.JSON_CT)
end

local function gone(uri)
  return util.send(410, rules.gone_body(uri, util.now()), util.JSON_CT)
end

-- GET /recordings/<sessionId>.wav
local function recording(uri, fault)
  local method = ngx.req.get_method()
  if method ~= "GET" and method ~= "HEAD" then
    return util.send(405, rules.METHOD_NOT_ALLOWED, util.JSON_CT)
  end
  local sid, bytes = recording_body.find(uri:match("^/recordings/([^/]+)%.wav$"))
  if not sid then
    if bytes == 410 then return gone(uri) end
    return not_found(uri)
  end
  local kind = fault and fault.kind
  if kind == "reset_after_send" then return ngx.exit(444) end
  local src = recording_body.source(sid, bytes)
  local size = src.size
  local content_length, limit = size, size
  if kind == "cut" then
    limit = min(fault.bytes or floor(size / 2), size)
  elseif kind == "truncated" then
    limit = floor(size / 2)
    content_length = limit
  end
  local rate = kind == "slow_recording" and fault.rate or dict:get("opt:recording_rate")
  recording_body.send_headers(size, content_length)
  if method == "HEAD" then return ngx.exit(ngx.OK) end
  local _, ok = recording_body.stream(src, { limit = limit, rate = rate })
  -- short of Content-Length, or the client went away: close the connection, never keep it alive
  if not ok or limit < content_length then return ngx.exit(ngx.ERROR) end
  return ngx.exit(ngx.OK)
end

-- answer a provider path, with the faults that need the real processing (reset_after_send, truncated, stuck_ids)
local function serve(uri, method, body, fault)
  if uri:sub(1, 12) == "/recordings/" then return recording(uri, fault) end
  local h = provider.routes[uri]
  if not h then return not_found(uri) end
  if method ~= "POST" then
    return util.send(405, rules.wrong_method_body(method), util.JSON_CT)
  end
  local kind = fault and fault.kind
  -- recording URLs: on this server, or where the recording_base option says (another host, https, ...)
  local base = dict:get("opt:recording_base") or util.base_url()
  local ok, out = pcall(h, body, { base = base, stuck = (kind == "stuck_ids") })
  if not ok then
    ngx.log(ngx.ERR, "handler error on ", uri, ": ", tostring(out))
    out = util.err_body("系统内部错误 (simulator error)")
  end
  if kind == "reset_after_send" then return ngx.exit(444) end
  if kind == "truncated" then out = rules.truncate(out) end
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

local function apply_replacing_fault(uri, fault)
  local kind = fault.kind
  if kind == "status" then
    local headers = fault.retry_after and { ["Retry-After"] = fault.retry_after } or nil
    return true, util.send(fault.status, rules.status_page(fault.status), HTML_CT, headers)
  elseif kind == "bad_json" then
    return true, util.send(200, rules.BAD_JSON_BODY, HTML_CT)
  elseif kind == "no_meta" then
    return true, util.send(200, rules.NO_META_BODY, util.JSON_CT)
  elseif kind == "wrong_data" then
    local op = rules.PATHS[uri]
    if op then return true, util.send(200, rules.wrong_data_body(op), util.JSON_CT) end
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
  store.settle() -- ids at_hangup: the records due by now get their ids before anything reads them
  if uri == "/_sim" or uri:sub(1, 6) == "/_sim/" then return control.handle(uri) end
  local class = uri:sub(1, 12) == "/recordings/" and "recordings" or "api"
  local ctx = ngx.ctx
  ctx.class = class
  faults.begin(class)
  local method = ngx.req.get_method()
  local body = util.read_body()
  local fault = faults.take(uri)
  ctx.seq = faults.log_request(method, uri, body, fault, ngx.req.start_time())
  -- the per-request latency (option), before anything else: other requests go on meanwhile
  local latency = dict:get(class == "api" and "opt:latency_ms" or "opt:recording_latency_ms")
  if latency and latency > 0 then ngx.sleep(latency / 1000) end
  if fault then
    if fault.kind == "latency" then
      ngx.sleep(fault.ms / 1000)
      fault = nil
    elseif fault.kind == "close_after" then
      -- re-run in a location with keepalive_timeout 0: nginx answers "Connection: close" and closes
      return ngx.exec("/_ctc_close_after", { u = uri, seq = ctx.seq, class = class })
    else
      local done, rv = apply_replacing_fault(uri, fault)
      if done then return rv end
    end
  end
  return serve(uri, method, body, fault)
end

function M.handle_close_after()
  local uri = ngx.unescape_uri(ngx.var.arg_u or "/")
  -- an internal redirect starts a new ngx.ctx: carry what the log phase needs
  ngx.ctx.seq = tonumber(ngx.var.arg_seq)
  ngx.ctx.class = ngx.var.arg_class == "recordings" and "recordings" or "api"
  return serve(uri, ngx.req.get_method(), util.read_body(), nil)
end

function M.log_phase()
  local ctx = ngx.ctx
  if ctx.class then faults.finish(ctx.class, ctx.seq) end
end

return M
