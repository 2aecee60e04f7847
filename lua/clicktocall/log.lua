--- clicktocall.log: a ready on_event hook that writes one JSON line per event (request, response, retry).
--
--   local log = require "clicktocall.log"
--   local client = clicktocall.new { ..., on_event = log.json(io.stderr) }
--   local client = clicktocall.new { ..., on_event = log.json(function(line) ngx.log(ngx.INFO, line) end) }
--   on_event = log.json(io.stderr, { fields = { job = "archive" }, also = m.on_event })
--
-- A line: {"ts":"2026-12-06T03:26:09.120Z","event":"response","op":"balance","method":"POST","url":"https://…",
-- "attempt":1,"status":200,"elapsed":0.0123} (then error, delay, and any other field an event has, sorted),
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
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local floor = math.floor
local format = string.format
local gsub = string.gsub
local byte = string.byte
local concat = table.concat
local sort = table.sort
local os_time = os.time
local os_date = os.date

local errors = require "clicktocall.errors"
local core_ok, core = pcall(require, "clicktocall.core")

local _M = { _VERSION = core_ok and core._VERSION or nil }

-- the fields every line has first, in this order (the event's type is named "event")
local ORDER = { "op", "method", "url", "attempt", "status", "elapsed", "error", "delay" }
local FIRST = { type = true }
for _, k in ipairs(ORDER) do
  FIRST[k] = true
end

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function str(s)
  return '"' .. gsub(s, '[%c"\\]', function(c)
    return ESC[c] or format("\\u%04x", byte(c))
  end) .. '"'
end

local function num(v)
  if v ~= v or v == math.huge or v == -math.huge then
    return "null" -- JSON has no NaN or infinity
  end
  if floor(v) == v and v > -2 ^ 53 and v < 2 ^ 53 then
    return format("%d", v)
  end
  -- seconds to the microsecond: enough for timings, short enough to read
  local s = gsub(format("%.6f", v), "0+$", "")
  return s
end

local function value(v)
  local t = type(v)
  if t == "string" then
    return str(v)
  elseif t == "number" then
    return num(v)
  elseif t == "boolean" then
    return v and "true" or "false"
  elseif t == "table" and errors.is_error(v) then
    return str(tostring(v))
  end
  return nil -- functions, tables, userdata: not logged
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
  local out = { '"ts":' .. str(timestamp(t or os_time())), '"event":' .. (value(event.type) or "null") }
  for _, k in ipairs(ORDER) do
    local v = event[k] ~= nil and value(event[k]) or nil
    if v then
      out[#out + 1] = str(k) .. ":" .. v
    end
  end
  local rest = {}
  for k in pairs(event) do
    if type(k) == "string" and not FIRST[k] then
      rest[#rest + 1] = k
    end
  end
  sort(rest)
  for _, k in ipairs(rest) do
    local v = value(event[k])
    if v then
      out[#out + 1] = str(k) .. ":" .. v
    end
  end
  if fields then
    local keys = {}
    for k in pairs(fields) do
      if type(k) == "string" and event[k] == nil and k ~= "ts" and k ~= "event" then
        keys[#keys + 1] = k
      end
    end
    sort(keys)
    for _, k in ipairs(keys) do
      local v = value(fields[k])
      if v then
        out[#out + 1] = str(k) .. ":" .. v
      end
    end
  end
  return "{" .. concat(out, ",") .. "}"
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
