-- ctcsim_control: the /_sim/ control API (no auth) used by specs, demos and benchmarks.
local util = require "ctcsim_util"
local store = require "ctcsim_store"
local faults = require "ctcsim_fault"

local ngx = ngx
local type = type

local M = {}

local function fail(status, msg)
  return util.send_json(status, { error = msg })
end

local function body_object(optional)
  local raw = util.read_body()
  if raw == "" and optional then return {} end
  local v = util.decode(raw)
  if type(v) ~= "table" or v[1] ~= nil then return nil, "body must be a JSON object" end
  return v
end

local function opt_string(v, default)
  if v == nil or v == util.null then return default end
  if type(v) ~= "string" or v == "" then return nil end
  return v
end

local handlers = {}

handlers["GET /_sim/ping"] = function()
  return util.send_json(200, { ok = true, prefix = ngx.config.prefix(), pid = ngx.worker.pid() })
end

handlers["POST /_sim/reset"] = function()
  store.reset()
  return util.send_json(200, { ok = true })
end

handlers["POST /_sim/seed"] = function()
  local req, err = body_object(false)
  if not req then return fail(400, err) end
  local count = util.to_int(req.count, 1, 100000000)
  if not count then return fail(400, "count must be an integer 1..100000000") end
  local t0 = util.to_epoch(req.start_time)
  local t1 = util.to_epoch(req.end_time)
  if not t0 or not t1 then
    return fail(400, "start_time and end_time must be \"yyyy-MM-dd HH:mm:ss\" (UTC+8) or Unix seconds")
  end
  if t1 < t0 then return fail(400, "end_time is before start_time") end
  local ud = opt_string(req.user_data, util.config.user_data)
  if not ud then return fail(400, "user_data must be a non-empty string") end
  local recorded = req.recorded
  if recorded == util.null then recorded = nil end
  if recorded ~= nil and type(recorded) ~= "boolean" then return fail(400, "recorded must be true, false or absent") end
  if not store.is_known(ud) then store.add_customer(ud) end
  local first, last = store.seed(count, t0, t1, ud, recorded)
  if not first then return fail(507, last) end
  return util.send_json(200, { first_id = first, last_id = last })
end

handlers["POST /_sim/balance"] = function()
  local req, err = body_object(false)
  if not req then return fail(400, err) end
  local n = util.to_int(req.balance, -1e15, 1e15)
  if not n then return fail(400, "balance must be an integer") end
  local ud = opt_string(req.user_data, util.config.user_data)
  if not ud then return fail(400, "user_data must be a non-empty string") end
  store.set_balance(ud, n)
  return util.send_json(200, { user_data = ud, balance = n })
end

handlers["POST /_sim/clock"] = function()
  local req, err = body_object(false)
  if not req then return fail(400, err) end
  local off = req.offset_seconds
  if type(off) ~= "number" or off ~= off or off > 1e10 or off < -1e10 then
    return fail(400, "offset_seconds must be a number")
  end
  util.dict:set("clock_offset", off)
  return util.send_json(200, { offset_seconds = off, now = util.fmt_time(util.now()) })
end

handlers["POST /_sim/options"] = function()
  local req, err = body_object(false)
  if not req then return fail(400, err) end
  if req.dial_recorded ~= nil then
    if type(req.dial_recorded) ~= "boolean" then return fail(400, "dial_recorded must be a boolean") end
    util.dict:set("opt:dial_recorded", req.dial_recorded)
  end
  if req.dial_duration ~= nil then
    if req.dial_duration == util.null then
      util.dict:delete("opt:dial_duration")
    else
      local d = util.to_int(req.dial_duration, 1, 86400)
      if not d then return fail(400, "dial_duration must be an integer 1..86400 or null") end
      util.dict:set("opt:dial_duration", d)
    end
  end
  return util.send_json(200, { dial_recorded = store.dial_recorded(),
                               dial_duration = util.dict:get("opt:dial_duration") or "formula" })
end

handlers["GET /_sim/requests"] = function()
  local since = util.to_int(ngx.var.arg_since, 0)
  return util.send(200, faults.log_json(since), util.JSON_CT)
end

handlers["POST /_sim/requests/clear"] = function()
  util.read_body()
  faults.log_clear()
  return util.send_json(200, { ok = true })
end

handlers["POST /_sim/fault"] = function()
  local req, err = body_object(false)
  if not req then return fail(400, err) end
  local n; n, err = faults.add(req)
  if not n then return fail(400, err) end
  return util.send_json(200, { ok = true, path = req.path, queued = n })
end

handlers["POST /_sim/fault/clear"] = function()
  local req, err = body_object(true)
  if not req then return fail(400, err) end
  local path = opt_string(req.path, nil)
  faults.clear(path)
  return util.send_json(200, { ok = true })
end

handlers["GET /_sim/faults"] = function()
  return util.send(200, util.encode(faults.list()) or "{}", util.JSON_CT)
end

handlers["GET /_sim/state"] = function()
  local c = store.counts()
  local st = {
    binds = store.list_binds(),
    balances = store.list_balances(),
    default_user_data = util.config.user_data,
    record_count = c.record_count,
    last_id = c.last_id,
    segments = c.segments,
    clock_offset = util.dict:get("clock_offset") or 0,
    now = util.fmt_time(util.now()),
    dial_recorded = store.dial_recorded(),
    dial_duration = util.dict:get("opt:dial_duration") or "formula",
    faults = faults.list(),
    request_log_seq = util.dict:get("log_seq") or 0,
    request_log_dropped = util.dict:get("log_dropped") or 0,
    dict_free_bytes = util.dict:free_space(),
  }
  local s = util.encode(st) or "{}"
  -- cjson writes empty tables as {}; binds is a list
  if #st.binds == 0 then s = s:gsub('"binds":{}', '"binds":[]', 1) end
  return util.send(200, s, util.JSON_CT)
end

function M.handle(uri)
  local method = ngx.req.get_method()
  if method == "HEAD" then method = "GET" end
  local h = handlers[method .. " " .. uri]
  if h then return h() end
  for k in pairs(handlers) do
    if k:match("^%u+ (.*)$") == uri then return fail(405, "method " .. method .. " not allowed on " .. uri) end
  end
  return fail(404, "no control endpoint " .. uri)
end

return M
