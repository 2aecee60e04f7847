-- ctcsim_fault: queued faults per path, the request log and the in-flight counters. State in the shared dict.
local util = require "ctcsim_util"

local ngx = ngx
local dict = util.dict
local type, tostring, tonumber = type, tostring, tonumber

local M = {}

-- the faults shared with clicktocall.mock (by the same names: clicktocall.provider_rules.FAULTS), and those
-- of a real server only
M.KINDS = {
  status = true, latency = true, huge = true, close_after = true, redirect = true, slow_recording = true,
}
for name in pairs(util.rules.FAULTS) do M.KINDS[name] = true end

local LOG_MAX = 10000
local LOG_BODY_MAX = 65536

-- faults ----------------------------------------------------------------------------
-- "fault:<path>" holds a JSON array (FIFO queue) of fault specs, each with a remaining `count`.

local function load_queue(path)
  local s = dict:get("fault:" .. path)
  if not s then return {} end
  return util.decode(s) or {}
end

local function save_queue(path, q)
  if #q == 0 then
    dict:delete("fault:" .. path)
    return true
  end
  return dict:safe_set("fault:" .. path, util.encode(q))
end

-- validate and queue a fault; returns the queue length for that path, or nil, message
function M.add(spec)
  if type(spec) ~= "table" then return nil, "body must be a JSON object" end
  local path, kind = spec.path, spec.kind
  if type(path) ~= "string" or path == "" then return nil, "path (string) is required" end
  if type(kind) ~= "string" or not M.KINDS[kind] then
    return nil, "kind must be one of: status, latency, reset_after_send, bad_json, truncated, no_meta, "
      .. "wrong_data, huge, api_error, cut, stuck_ids, close_after, redirect, slow_recording"
  end
  local count = 1
  if spec.count ~= nil then
    count = util.to_int(spec.count, 1, 1e9)
    if not count then return nil, "count must be a positive integer" end
  end
  local f = { kind = kind, count = count }
  if kind == "status" then
    f.status = util.to_int(spec.status or 500, 100, 599)
    if not f.status then return nil, "status must be an HTTP status (100..599)" end
    if spec.retry_after ~= nil then
      local ra = spec.retry_after
      if type(ra) ~= "number" and type(ra) ~= "string" then return nil, "retry_after must be a number or string" end
      f.retry_after = tostring(ra)
    end
  elseif kind == "latency" then
    f.ms = util.to_int(spec.ms or 1000, 0, 600000)
    if not f.ms then return nil, "ms must be an integer 0..600000" end
  elseif kind == "huge" then
    f.bytes = util.to_int(spec.bytes or 20 * 1024 * 1024, 64, 4 * 1024 * 1024 * 1024)
    if not f.bytes then return nil, "bytes must be an integer >= 64" end
  elseif kind == "slow_recording" then
    f.rate = util.to_int(spec.rate or 65536, 1, 1e12)
    if not f.rate then return nil, "rate must be an integer number of bytes per second (>= 1)" end
  elseif kind == "cut" then
    if spec.bytes ~= nil then
      f.bytes = util.to_int(spec.bytes, 0, 1e15)
      if not f.bytes then return nil, "bytes must be an integer >= 0" end
    end
  elseif kind == "api_error" then
    f.message = spec.message ~= nil and tostring(spec.message) or util.rules.MSG.busy
  elseif kind == "redirect" then
    f.status = util.to_int(spec.status or 302, 300, 399)
    if not f.status then return nil, "status must be a redirect status (300..399)" end
    if spec.location ~= nil then
      if type(spec.location) ~= "string" or spec.location == "" or spec.location:find("[%c ]") then
        return nil, "location must be a URL or path without spaces"
      end
      f.location = spec.location
    end
  end
  return util.with_lock(function()
    local q = load_queue(path)
    if spec.replace == true then q = {} end
    q[#q + 1] = f
    local ok, err = save_queue(path, q)
    if not ok then return nil, "state full: " .. tostring(err) end
    return #q
  end)
end

function M.clear(path)
  return util.with_lock(function()
    if path then
      dict:delete("fault:" .. path)
      return true
    end
    for _, k in ipairs(dict:get_keys(0)) do
      if k:sub(1, 6) == "fault:" then dict:delete(k) end
    end
    return true
  end)
end

function M.list()
  local out = {}
  for _, k in ipairs(dict:get_keys(0)) do
    if k:sub(1, 6) == "fault:" then out[k:sub(7)] = load_queue(k:sub(7)) end
  end
  return out
end

-- take (consume one count of) the fault for this request's URI, or nil.
-- Order: the exact path, then "/recordings/*" for recordings, then "*".
function M.take(uri)
  local keys = { uri }
  if uri:sub(1, 12) == "/recordings/" then keys[#keys + 1] = "/recordings/*" end
  keys[#keys + 1] = "*"
  local any = false
  for i = 1, #keys do
    if dict:get("fault:" .. keys[i]) then any = true break end
  end
  if not any then return nil end       -- fast path: no lock when no fault is queued
  return util.with_lock(function()
    for i = 1, #keys do
      local q = load_queue(keys[i])
      local f = q[1]
      if f then
        f.count = f.count - 1
        if f.count <= 0 then table.remove(q, 1) end
        save_queue(keys[i], q)
        f.count = nil
        f.path = keys[i]
        return f
      end
    end
    return nil
  end)
end

-- request log ------------------------------------------------------------------------

function M.log_request(method, uri, body, fault, started)
  local h = ngx.req.get_headers(100)
  local function hv(name)
    local v = h[name]
    if type(v) == "table" then v = table.concat(v, ", ") end
    if v == nil then return util.null end
    return v
  end
  local seq = dict:incr("log_seq", 1, 0)
  local truncated = false
  if #body > LOG_BODY_MAX then
    body = body:sub(1, LOG_BODY_MAX)
    truncated = true
  end
  local entry = {
    seq = seq,
    time = util.fmt_time(util.now()),
    started = started,
    method = method,
    uri = uri,
    args = ngx.var.args or util.null,
    authorization = hv("authorization"),
    content_type = hv("content-type"),
    user_agent = hv("user-agent"),
    connection_header = hv("connection"),
    body = body,
    body_truncated = truncated or nil,
    connection = tonumber(ngx.var.connection),
    connection_requests = tonumber(ngx.var.connection_requests),
    fault = fault and fault.kind or util.null,
  }
  local s = util.encode(entry)
  if not s then
    entry.body = ngx.encode_base64(body)
    entry.body_base64 = true
    s = util.encode(entry) or "{}"
  end
  local ok = dict:safe_set("log:" .. seq, s)
  if not ok then dict:incr("log_dropped", 1, 0) end
  if seq > LOG_MAX then
    dict:delete("log:" .. (seq - LOG_MAX))
    dict:delete("logf:" .. (seq - LOG_MAX))
  end
  return seq
end

-- in flight ------------------------------------------------------------------------------
-- "inflight" and "inflight:<class>" count the provider requests being served (class "api" or
-- "recordings"): incremented when the handler starts, decremented in the log phase (which nginx runs
-- for every request, also one that failed or was dropped). Each worker keeps its own maximum
-- ("maxw:<class>:<worker id>"): no other request of that worker runs between the incr and the set, so
-- the maximum is exact without a lock.

local CLASSES = { "all", "api", "recordings" }

local function bump_max(class, n)
  local key = "maxw:" .. class .. ":" .. (ngx.worker.id() or 0)
  local m = dict:get(key)
  if not m or n > m then dict:set(key, n) end
end

function M.begin(class)
  bump_max("all", dict:incr("inflight:all", 1, 0))
  bump_max(class, dict:incr("inflight:" .. class, 1, 0))
  dict:incr("nreq:" .. class, 1, 0)      -- all = api + recordings
end

-- the log phase: the request is over (seq: its log entry). The finish time and the bytes sent are written
-- before the counts go down, "inflight:all" last: a client that waits until nothing is in flight (another
-- worker answers it meanwhile) then finds every finished request's numbers written.
function M.finish(class, seq)
  if class == "recordings" then
    local body_bytes = tonumber(ngx.var.body_bytes_sent)
    if body_bytes and body_bytes > 0 then dict:incr("sent:recordings", body_bytes, 0) end
  end
  if seq then
    ngx.update_time()
    dict:safe_set("logf:" .. seq, ngx.now())
  end
  dict:incr("inflight:" .. class, -1, 0)
  dict:incr("inflight:all", -1, 0)
end

local function max_of(class, in_flight)
  local m = in_flight
  for w = 0, 15 do
    local v = dict:get("maxw:" .. class .. ":" .. w)
    if v and v > m then m = v end
  end
  return m
end

function M.stats()
  local out = {}
  for _, class in ipairs(CLASSES) do
    local in_flight = dict:get("inflight:" .. class) or 0
    out[class] = { in_flight = in_flight, max_in_flight = max_of(class, in_flight),
                   requests = dict:get("nreq:" .. class) or 0 }
  end
  local all = out.all
  all.requests = out.api.requests + out.recordings.requests
  out.all = nil
  all.api, all.recordings = out.api, out.recordings
  all.recordings.body_bytes = dict:get("sent:recordings") or 0
  return all
end

-- counts from zero again; the maxima start at what is in flight now
function M.stats_clear()
  for _, class in ipairs(CLASSES) do
    dict:delete("nreq:" .. class)
    for w = 0, 15 do dict:delete("maxw:" .. class .. ":" .. w) end
  end
  dict:delete("sent:recordings")
end

-- the log as a JSON array string (entries with seq > since)
function M.log_json(since)
  local last = dict:get("log_seq") or 0
  local base = dict:get("log_base") or 0
  local from = math.max(base + 1, last - LOG_MAX + 1, (since or 0) + 1, 1)
  local parts = {}
  for seq = from, last do
    local s = dict:get("log:" .. seq)
    if s then
      -- the finish time is written by the log phase, after the entry: splice it in
      local f = dict:get("logf:" .. seq)
      parts[#parts + 1] = s:sub(1, -2) .. ',"finished":' .. (f and string.format("%.3f", f) or "null") .. "}"
    end
  end
  return "[" .. table.concat(parts, ",") .. "]"
end

function M.log_clear()
  local last = dict:get("log_seq") or 0
  local base = dict:get("log_base") or 0
  for seq = math.max(base + 1, last - LOG_MAX + 1, 1), last do
    dict:delete("log:" .. seq)
    dict:delete("logf:" .. seq)
  end
  dict:set("log_base", last)
  return true
end

return M
