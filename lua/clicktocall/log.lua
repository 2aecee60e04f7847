--- clicktocall.log: a ready on_event hook that writes one JSON line per event (request, response, retry; a
-- rate_limit's rate_wait and rate_limited).
--
--   local log = require "clicktocall.log"
--   local client = clicktocall.new { ..., on_event = log.json(io.stderr) }
--   local client = clicktocall.new { ..., on_event = log.json(function(line) ngx.log(ngx.INFO, line) end) }
--   on_event = log.json(io.stderr, { fields = { job = "archive" }, also = m.on_event })
--
-- A line: {"ts":"2026-12-06T03:26:09.120Z","event":"response","op":"balance","method":"POST","url":"https://…",
-- "attempt":1,"status":200,"elapsed":0.0123} (then error, delay, and the event's other fields and the caller's
-- constant ones, sorted by name),
-- ts in UTC. The events come redacted from the library: the secret is never in them, in any of its forms; the
-- logger adds nothing but the time and the caller's constant fields, and never a header or a body.
-- A file gets the line and "\n", flushed at once; a function gets the line without "\n". A failing write
-- is dropped: a log must never fail the call it watches.
--
-- Options: fields (a table of constant string, number or boolean fields added to each line), also (another
-- on_event hook called after the line is written, e.g. clicktocall.metrics' m.on_event), now (function() ->
-- Unix seconds, maybe fractional; default ngx.now inside nginx, else LuaSocket's gettime, else os.time).

local type = type
local pairs = pairs
local pcall = pcall
local tostring = tostring
local floor = math.floor
local format = string.format
local os_time = os.time
local os_date = os.date

local errors = require "clicktocall.errors"
local json = require "clicktocall.json"

local _M = { _VERSION = require "clicktocall.version" }

-- the fields every line has first, in this order (the event's type is named "event"); the others follow by name
local LINE = { order = { "ts", "event", "op", "method", "url", "attempt", "status", "elapsed", "error", "delay" } }

-- a field's value as logged: strings, booleans, numbers (seconds to the microsecond: enough for timings,
-- short enough to read), an error object as its sentence; functions, other tables and userdata not at all
local function value(v)
  local t = type(v)
  if t == "string" or t == "boolean" then
    return v
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge or floor(v) == v then
      return v -- json writes NaN and infinities as null
    end
    return tonumber(format("%.6f", v))
  elseif t == "table" and errors.is_error(v) then
    return tostring(v)
  end
  return nil
end

local function timestamp(t)
  local secs = floor(t)
  local ms = floor((t - secs) * 1000 + 0.5)
  if ms >= 1000 then
    secs, ms = secs + 1, ms - 1000
  end
  return os_date("!%Y-%m-%dT%H:%M:%S", secs) .. format(".%03dZ", ms)
end

-- Unix seconds with milliseconds where there is such a clock: nginx's, else LuaSocket's (when installed)
local function wall_clock()
  if type(ngx) == "table" and ngx.now then -- luacheck: ignore 113
    return ngx.now -- luacheck: ignore 113
  end
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and type(socket.gettime) == "function" then
    return socket.gettime
  end
  return os_time
end

--- line(event [, fields [, t]]) -> the JSON text of one event, without "\n"
function _M.line(event, fields, t)
  local out = {}
  for k, v in pairs(fields or {}) do
    if type(k) == "string" then
      out[k] = value(v)
    end
  end
  for k, v in pairs(event) do
    if type(k) == "string" and k ~= "type" then
      out[k] = value(v)
    end
  end
  out.ts, out.event = timestamp(t or os_time()), value(event.type) or json.null
  return json.encode(out, LINE)
end

--- json(file_or_fn [, opts]) -> on_event function | nil, err (kind "argument")
function _M.json(sink, opts)
  opts = opts or {}
  local write
  if type(sink) == "function" then
    write = sink
  elseif (type(sink) == "userdata" or type(sink) == "table") and pcall(function() return sink.write end)
    and type(sink.write) == "function" then
    write = function(line)
      sink:write(line, "\n")
      if sink.flush then
        sink:flush()
      end
    end
  else
    return nil, errors.new("argument", "clicktocall.log.json: a file (io.stderr, io.open(...)) or a "
      .. "function(line) expected, got " .. type(sink), { field = "sink" })
  end
  if type(opts) ~= "table" then
    return nil, errors.new("argument", "clicktocall.log.json: options must be a table", { field = "opts" })
  end
  for k in pairs(opts) do
    if k ~= "fields" and k ~= "also" and k ~= "now" then
      return nil, errors.new("argument", "clicktocall.log.json: unknown option '" .. tostring(k) .. "'",
                             { field = tostring(k) })
    end
  end
  if opts.fields ~= nil and type(opts.fields) ~= "table" then
    return nil, errors.new("argument", "clicktocall.log.json: fields must be a table", { field = "fields" })
  end
  if opts.also ~= nil and type(opts.also) ~= "function" then
    return nil, errors.new("argument", "clicktocall.log.json: also must be a function", { field = "also" })
  end
  local now = opts.now or wall_clock()
  local fields, also = opts.fields, opts.also
  return function(event)
    if type(event) == "table" then
      pcall(function() write(_M.line(event, fields, now())) end)
    end
    if also then
      also(event)
    end
  end
end

return _M
