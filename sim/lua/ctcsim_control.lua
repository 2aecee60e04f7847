-- ctcsim_control: the /_sim/ control API (no auth) used by specs, demos and benchmarks.
local util = require "ctcsim_util"
local store = require "ctcsim_store"
local faults = require "ctcsim_fault"
local recording = require "ctcsim_recording"

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

local MAX_TIMES = 1000000
local MAX_DELAY = 30 * 86400

-- "times": a list of end times (and "session_ids", one for each) -> the sorted Unix seconds and the
-- sessionIds in the same order (or nil), or nil, message
local function seed_times(list, sids)
  if type(list) ~= "table" or list[1] == nil or #list > MAX_TIMES then
    return nil, "times must be a non-empty list of at most " .. MAX_TIMES .. " times"
  end
  local n = #list
  if sids ~= nil then
    if type(sids) ~= "table" or #sids ~= n then return nil, "session_ids must be a list as long as times" end
    local seen = {}
    for i = 1, n do
      local v = sids[i]
      if type(v) ~= "string" or #v > 1024 then
        return nil, "session_ids[" .. i .. "] must be a string (<= 1024 bytes)"
      end
      if seen[v] then return nil, "session_ids[" .. i .. "] repeats an earlier one" end
      seen[v] = true
    end
  end
  local order = {}
  for i = 1, n do
    local t = util.to_epoch(list[i])
    if not t then return nil, "times[" .. i .. "] must be \"yyyy-MM-dd HH:mm:ss\" (UTC+8) or Unix seconds" end
    order[i] = { t, i }
  end
  table.sort(order, function(a, b) if a[1] ~= b[1] then return a[1] < b[1] end return a[2] < b[2] end)
  local times, out_sids = {}, sids and {} or nil
  for k = 1, n do
    times[k] = order[k][1]
    if sids then out_sids[k] = sids[order[k][2]] end
  end
  return times, out_sids
end

local function opt_recording_bytes(v)
  local n = util.to_int(v, recording.MIN_BYTES, recording.MAX_BYTES)
  if not n or n ~= v then
    return nil, "recording_bytes must be an integer " .. recording.MIN_BYTES .. ".." .. recording.MAX_BYTES
  end
  return n
end

handlers["POST /_sim/seed"] = function()
  local req, err = body_object(false)
  if not req then return fail(400, err) end
  local times, count, t0, t1, sids
  if req.session_ids ~= nil and req.times == nil then return fail(400, "session_ids need times") end
  if req.times ~= nil then
    times, sids = seed_times(req.times, req.session_ids)
    if not times then return fail(400, sids) end
    if req.count ~= nil and req.count ~= #times then return fail(400, "count must be the number of times") end
    count = #times
  else
    count = util.to_int(req.count, 1, 100000000)
    if not count then return fail(400, "count must be an integer 1..100000000") end
    t0 = util.to_epoch(req.start_time)
    t1 = util.to_epoch(req.end_time)
    if not t0 or not t1 then
      return fail(400, "start_time and end_time must be \"yyyy-MM-dd HH:mm:ss\" (UTC+8) or Unix seconds")
    end
    if t1 < t0 then return fail(400, "end_time is before start_time") end
  end
  local ud = opt_string(req.user_data, util.config.user_data)
  if not ud then return fail(400, "user_data must be a non-empty string") end
  local recorded = req.recorded
  if recorded == util.null then recorded = nil end
  if recorded ~= nil and type(recorded) ~= "boolean" then return fail(400, "recorded must be true, false or absent") end
  local rbytes
  if req.recording_bytes ~= nil and req.recording_bytes ~= util.null then
    rbytes, err = opt_recording_bytes(req.recording_bytes)
    if not rbytes then return fail(400, err) end
  end
  local delay = store.listing_delay()
  if req.listing_delay ~= nil and req.listing_delay ~= util.null then
    delay = util.to_int(req.listing_delay, 0, MAX_DELAY)
    if not delay or delay ~= req.listing_delay then
      return fail(400, "listing_delay must be an integer 0.." .. MAX_DELAY)
    end
  end
  -- ids at_hangup: a record gets its id when it is listed; those not listed yet wait (times seeds only)
  local waiting
  if store.ids_mode() == "at_hangup" then
    local now = math.floor(util.now())
    if not times then
      if t1 + delay > now then
        return fail(400, "with ids at_hangup a count seed must be listed already (end_time + listing_delay <= "
                         .. "now); give times for records listed later")
      end
    else
      local due = 0
      while due < #times and times[due + 1] + delay <= now do due = due + 1 end
      if due < #times then
        if sids then return fail(400, "with ids at_hangup, session_ids need times already listed") end
        waiting = {}
        for i = due + 1, #times do waiting[#waiting + 1] = times[i] end
        for i = #times, due + 1, -1 do times[i] = nil end
        count = due
      end
    end
  end
  if not store.is_known(ud) then store.add_customer(ud) end
  if waiting then
    local n; n, err = store.seed_pending(waiting, ud, recorded, delay, rbytes)
    if not n then return fail(507, err) end
    if count == 0 then return util.send_json(200, { first_id = util.null, last_id = util.null, pending = n }) end
  end
  if sids then
    for i = 1, #sids do
      if store.id_from_custom_session(sids[i]) then
        return fail(400, "session_ids[" .. i .. "] was seeded before (reset first)")
      end
    end
  end
  local first, last = store.seed(count, t0, t1, ud, recorded, times, rbytes, sids, delay)
  if not first then return fail(507, last) end
  return util.send_json(200, { first_id = first, last_id = last, pending = waiting and #waiting or 0 })
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

-- numeric options: name -> { lo, hi, what }; null (or 0 where 0 means "none") removes the option
local NUM_OPTIONS = {
  dial_duration = { 1, 86400, "an integer 1..86400 or null" },
  recording_bytes = { recording.MIN_BYTES, recording.MAX_BYTES,
                      "an integer " .. recording.MIN_BYTES .. ".." .. recording.MAX_BYTES .. " or null" },
  recording_rate = { 0, 1e12, "an integer number of bytes per second (0 or null: no limit)" },
  latency_ms = { 0, 600000, "an integer 0..600000 (0 or null: none)" },
  recording_latency_ms = { 0, 600000, "an integer 0..600000 (0 or null: none)" },
  listing_delay = { 0, MAX_DELAY, "an integer number of seconds 0.." .. MAX_DELAY .. " (0 or null: none)" },
}
local IDS = { at_dial = true, at_hangup = true }

local function options()
  local out = { dial_recorded = store.dial_recorded(), ids = store.ids_mode(),
                recording_base = util.dict:get("opt:recording_base") or util.null }
  for name in pairs(NUM_OPTIONS) do
    local v = util.dict:get("opt:" .. name)
    if v == nil then v = util.null end
    out[name] = v
  end
  if out.dial_duration == util.null then out.dial_duration = "formula" end
  return out
end
M.options = options

handlers["POST /_sim/options"] = function()
  local req, err = body_object(false)
  if not req then return fail(400, err) end
  -- check everything before changing anything
  local set = {}
  if req.dial_recorded ~= nil then
    if type(req.dial_recorded) ~= "boolean" then return fail(400, "dial_recorded must be a boolean") end
    set.dial_recorded = req.dial_recorded
  end
  for name, r in pairs(NUM_OPTIONS) do
    local v = req[name]
    if v ~= nil then
      if v == util.null then
        set[name] = false
      else
        local n = util.to_int(v, r[1], r[2])
        if not n or n ~= v then return fail(400, name .. " must be " .. r[3]) end
        if n == 0 then set[name] = false else set[name] = n end
      end
    end
  end
  if req.ids ~= nil then
    if not IDS[req.ids] then return fail(400, "ids must be \"at_dial\" or \"at_hangup\"") end
    set.ids = req.ids
  end
  local rb = req.recording_base
  if rb ~= nil then
    if rb == util.null then
      set.recording_base = false
    elseif type(rb) ~= "string" or not rb:match("^https?://[^%s/]+[^%s]*$") or rb:sub(-1) == "/" then
      return fail(400, "recording_base must be an http(s) URL without a trailing slash, or null")
    else
      set.recording_base = rb
    end
  end
  for k in pairs(req) do
    if k ~= "dial_recorded" and k ~= "recording_base" and k ~= "ids" and not NUM_OPTIONS[k] then
      return fail(400, "unknown option " .. tostring(k))
    end
  end
  for name, v in pairs(set) do
    if v == false and name ~= "dial_recorded" then
      util.dict:delete("opt:" .. name)
    else
      util.dict:set("opt:" .. name, v)
    end
  end
  return util.send_json(200, options())
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

handlers["GET /_sim/stats"] = function()
  return util.send_json(200, faults.stats())
end

handlers["POST /_sim/stats/clear"] = function()
  util.read_body()
  faults.stats_clear()
  return util.send_json(200, { ok = true })
end

-- GET /_sim/recording_info/<sessionId>[.wav], or ?session_id=<percent-encoded sessionId>, or ?id=<record id>:
-- what a download of it gets now
local function recording_info(path_sid)
  local sid = path_sid and path_sid:gsub("%.wav$", "")
  local id
  if not sid then
    local args = ngx.req.get_uri_args(10)
    if type(args.session_id) == "string" then
      sid = args.session_id
    elseif args.id then
      id = util.to_int(args.id, 1)
      if not id then return fail(400, "id must be a record id") end
    else
      return fail(400, "give a sessionId: /_sim/recording_info/<sessionId>, ?session_id= or ?id=")
    end
  end
  local name = recording.name_of(sid, id)
  local status, bytes, tend, found_sid
  local a, b, c, d, e = recording.find(name)
  if a then status, bytes, tend, found_sid = 200, b, c, a else status, bytes, tend, found_sid = b, c, d, e end
  if status == 404 then
    return fail(404, "no recording for " .. (id and ("id " .. id) or ("session " .. util.encode(sid))))
  end
  sid = found_sid
  local sha, err = recording.cached_sha256(sid, bytes)
  if not sha then return fail(500, err) end
  return util.send_json(200, {
    session_id = sid, url_path = "/recordings/" .. name .. ".wav", status = status,
    bytes = bytes or #recording.WAV, sha256 = sha, generated = bytes ~= nil,
    call_end_time = util.fmt_time(tend), expires_at = tend + util.RECORDING_TTL,
  })
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
    pending = c.pending,
    segments = c.segments,
    clock_offset = util.dict:get("clock_offset") or 0,
    now = util.fmt_time(util.now()),
    dial_recorded = store.dial_recorded(),
    dial_duration = util.dict:get("opt:dial_duration") or "formula",
    options = options(),
    stats = faults.stats(),
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
  local sid = uri:match("^/_sim/recording_info/([^/]+)$")
  if sid or uri == "/_sim/recording_info" then
    if method ~= "GET" then return fail(405, "method " .. method .. " not allowed on " .. uri) end
    return recording_info(sid)
  end
  for k in pairs(handlers) do
    if k:match("^%u+ (.*)$") == uri then return fail(405, "method " .. method .. " not allowed on " .. uri) end
  end
  return fail(404, "no control endpoint " .. uri)
end

return M
