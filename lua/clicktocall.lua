--- clicktocall: a client for a two-way callback ("click-to-call") provider.
--
-- The C core (clicktocall.core) builds requests and reads responses; a
-- transport moves the bytes (libcurl by default, cosockets with
-- transport = "ngx", or any function). This file strings them together:
-- validation, send, read, retry with backoff, the next page.
--
-- Options of clicktocall.new{} (see the README for the whole list):
--   base_url, app_secret (required); user_data; timeout = 10; connect_timeout = 3;
--   retries = 2; max_body = 8 MiB; transport = nil | "curl" | "ngx" | function;
--   country_code = "86"; ca_file; insecure = false; proxy; user_agent;
--   dial_guard, dial_guard_window = 10 (OpenResty); on_event;
--   sleep (function(seconds), for backoff), backoff_base = 0.2, backoff_max = 5,
--   retry_after_max = 30, download_timeout = 300.

local core = require "clicktocall.core"
local errors = require "clicktocall.errors"

local type = type
local pairs = pairs
local pcall = pcall
local error = error
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local floor = math.floor
local random = math.random
local huge = math.huge
local find = string.find
local gsub = string.gsub
local match = string.match
local format = string.format
local lower = string.lower
local os_time = os.time
local os_rename = os.rename
local os_remove = os.remove
local io_open = io.open

local _M = {
  _VERSION = core._VERSION,
  PAGE_SIZE = core.PAGE_SIZE,
}

local DEFAULTS = {
  timeout = 10,
  connect_timeout = 3,
  retries = 2,
  max_body = 8 * 1024 * 1024,
  country_code = "86",
  dial_guard_window = 10,
  backoff_base = 0.2,
  backoff_max = 5,
  retry_after_max = 30,
  download_timeout = 300,
}

local KNOWN_OPTIONS = {
  base_url = true, app_secret = true, user_data = true, timeout = true,
  connect_timeout = true, retries = true, max_body = true, transport = true,
  country_code = true, ca_file = true, insecure = true, proxy = true,
  user_agent = true, dial_guard = true, dial_guard_window = true, on_event = true,
  sleep = true, backoff_base = true, backoff_max = true, retry_after_max = true,
  download_timeout = true, pool_size = true, keepalive_timeout = true,
}

local MAX_REDIRECTS = 3

-- Per-client state lives here, not in the client table, so that dumping a
-- client (inspect, serpent, a debugger) never shows the secret.
local private = setmetatable({}, { __mode = "k" })

local client_mt = {}
client_mt.__index = client_mt

--------------------------------------------------------------------------
-- helpers
--------------------------------------------------------------------------

local function bad_argument(fname, pos, what)
  return nil, errors.argument(format("bad argument #%d to '%s' (%s)", pos, fname, what))
end

local function is_positive_number(v)
  return type(v) == "number" and v == v and v > 0 and v < huge
end

local function is_whole(v, min)
  return type(v) == "number" and v == v and v >= min and v < huge and floor(v) == v
end

-- Every occurrence of the secret and of its base64 form becomes "***".
local function redact(st, s)
  if type(s) ~= "string" then
    return s
  end
  for i = 1, #st.secrets do
    local secret = st.secrets[i]
    local from = 1
    while true do
      local a, b = find(s, secret, from, true)
      if not a then
        break
      end
      s = s:sub(1, a - 1) .. "***" .. s:sub(b + 1)
      from = a + 3
    end
  end
  return s
end

local function new_error(st, kind, message, fields)
  return errors.new(kind, redact(st, message), fields)
end

local function emit(st, event)
  if st.on_event then
    -- a failing hook must not fail the call it observes
    pcall(st.on_event, event)
  end
end

local function header(headers, name)
  if type(headers) ~= "table" then
    return nil
  end
  local v = headers[name]
  if v ~= nil then
    return v
  end
  for k, val in pairs(headers) do
    if type(k) == "string" and lower(k) == name then
      return val
    end
  end
  return nil
end

local MONTHS = {
  jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6,
  jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12,
}

-- days since 1970-01-01 of a civil date (proleptic Gregorian)
local function days_from_civil(y, m, d)
  if m <= 2 then
    y = y - 1
  end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- Retry-After: delay-seconds or an HTTP-date (RFC 9110 10.2.3) -> seconds
local function retry_after_seconds(v)
  if type(v) == "number" then
    return v >= 0 and v or nil
  end
  if type(v) ~= "string" then
    return nil
  end
  local secs = match(v, "^%s*(%d+)%s*$")
  if secs then
    return tonumber(secs)
  end
  local d, mon, y, hh, mm, ss = match(v, "^%s*%a+,%s*(%d+)%s+(%a+)%s+(%d+)%s+(%d+):(%d+):(%d+)%s+GMT%s*$")
  local m = mon and MONTHS[lower(mon)]
  if not m then
    return nil
  end
  local at = days_from_civil(tonumber(y), m, tonumber(d)) * 86400
    + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
  local delta = at - os_time()
  return delta > 0 and delta or 0
end

--------------------------------------------------------------------------
-- the exchange: send, read, retry
--------------------------------------------------------------------------

-- Seconds to wait before attempt `attempt + 1`, or nil when not to retry.
local function retry_delay(st, err, attempt, idempotent, res)
  if attempt > st.retries then
    return nil
  end
  if not idempotent then
    -- a dial goes again only when the transport proves nothing was sent
    if err.sent or (err.kind ~= "network" and err.kind ~= "timeout") then
      return nil
    end
  elseif not err.retryable then
    return nil
  end
  local delay = st.backoff_base * 2 ^ (attempt - 1)
  if delay > st.backoff_max then
    delay = st.backoff_max
  end
  delay = delay * (0.5 + random() * 0.5) -- jitter: clients that failed together spread out
  local after = res and retry_after_seconds(header(res.headers, "retry-after"))
  if after then
    err.retry_after = after
    if after > st.retry_after_max then
      return nil -- the server asks for longer than we may wait: let the caller decide
    end
    delay = after
  end
  return delay
end

local function check_response(st, res)
  if type(res) ~= "table" or type(res.status) ~= "number" or type(res.body) ~= "string" then
    return new_error(st, "protocol", "the transport returned something that is not a response", { sent = true })
  end
  return nil
end

-- Runs once(st, op, request, asked) -> res | nil, err until it succeeds or must stop.
-- once returns (value, value2) on success, or nil, err, res.
-- Events (and their tables and clock reads) are made only when there is an on_event hook.
local function with_retries(st, idempotent, request, once, op, asked)
  local attempt = 0
  local on_event = st.on_event
  while true do
    attempt = attempt + 1
    local t0
    if on_event then
      emit(st, { type = "request", method = request.method, url = request.url, attempt = attempt })
      t0 = st.now()
    end
    local a, b, res = once(st, op, request, asked)
    local elapsed = on_event and st.now() - t0
    if a ~= nil then
      if on_event then
        emit(st, { type = "response", method = request.method, url = request.url, attempt = attempt,
                   status = res and res.status, elapsed = elapsed })
      end
      return a, b
    end
    local err = b
    if on_event then
      emit(st, { type = "response", method = request.method, url = request.url, attempt = attempt,
                 status = err.status, elapsed = elapsed, error = tostring(err) })
    end
    local delay = retry_delay(st, err, attempt, idempotent, res)
    if not delay then
      return nil, err
    end
    if on_event then
      emit(st, { type = "retry", method = request.method, url = request.url, attempt = attempt,
                 status = err.status, elapsed = elapsed, error = tostring(err), delay = delay })
    end
    st.sleep(delay)
  end
end

local function api_once(st, op, request, asked)
  local res, terr = st.send(request)
  if not res then
    local e = errors.from_transport(terr)
    e.message = redact(st, e.message)
    return nil, e
  end
  local bad = check_response(st, res)
  if bad then
    return nil, bad
  end
  local v1, v2 = core.response(op, res.status, res.body, asked)
  if v1 == nil then
    return nil, new_error(st, v2.kind, v2.message, { status = res.status, sent = true }), res
  end
  return v1, v2, res
end

local function api_exchange(st, op, request, asked)
  request.timeout = st.timeout
  request.connect_timeout = st.connect_timeout
  request.max_body = st.max_body
  -- only a dial must never be re-sent by the transport itself (see csrc/curl.c)
  request.resend_safe = op ~= "dial"
  -- the headers of a 2xx answer are never read here (Retry-After matters only on failures)
  request.want_headers = false
  return with_retries(st, op ~= "dial", request, api_once, op, asked)
end

local function state_of(self, fname)
  local st = private[self]
  if not st then
    return nil, errors.argument(format("bad argument #1 to '%s' (clicktocall client expected; use client:%s)",
                                       fname, fname))
  end
  if st.closed then
    return nil, errors.argument(format("'%s' called on a closed client", fname))
  end
  return st
end

local function call(self, fname, op, args)
  local st, err = state_of(self, fname)
  if not st then
    return nil, err
  end
  if args == nil and op == "balance" then
    args = {}
  end
  if type(args) ~= "table" then
    return bad_argument(fname, 1, "table expected, got " .. type(args))
  end
  local request, asked = core.request(op, st.cfg, args)
  if not request then
    return bad_argument(fname, 1, asked.message)
  end
  return st, request, asked
end

--------------------------------------------------------------------------
-- the client
--------------------------------------------------------------------------

function client_mt:bind_seat(args)
  local st, request = call(self, "bind_seat", "bind_seat", args)
  if not st then
    return nil, request
  end
  return api_exchange(st, "bind_seat", request)
end

function client_mt:dial(args)
  local st, request = call(self, "dial", "dial", args)
  if not st then
    return nil, request
  end
  local guard, key = st.guard, nil
  if guard and not args.force then
    local caller, callee, seat =
      match(request.body, '"callerNbr":"([^"]*)","calleeNbr":"([^"]*)".-"setingNbr":"(.*)"}$')
    key = { caller, callee, seat }
    local ok, why = guard:check(caller, callee, seat)
    if not ok then
      return nil, new_error(st, "duplicate", why, { sent = false, retryable = false })
    end
  end
  local session, err = api_exchange(st, "dial", request)
  if not session and key and not err.sent then
    guard:release(key[1], key[2], key[3]) -- it never left: a second click may go
  end
  return session, err
end

function client_mt:balance(args)
  local st, request = call(self, "balance", "balance", args)
  if not st then
    return nil, request
  end
  return api_exchange(st, "balance", request)
end

function client_mt:records_page(args)
  local st, request, asked = call(self, "records_page", "records_page", args)
  if not st then
    return nil, request
  end
  return api_exchange(st, "records_page", request, asked)
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do
    c[k] = v
  end
  return c
end

--- for rec in client:records{ start_time=, end_time= [, max_id=] [, limit=] } do ... end
-- Raises the error object on any failure (never ends a failed sync silently).
function client_mt:records(args)
  local pending -- an error to raise on the first step
  local st, request, asked = call(self, "records", "records_page", args)
  local limit = type(args) == "table" and args.limit or nil
  if not st then
    pending = request
  elseif limit ~= nil and not is_whole(limit, 1) then
    pending = errors.argument("bad argument #1 to 'records' (field 'limit' must be a positive integer)")
  end
  local page, n, i, cursor = nil, 0, 0, nil
  local count, done = 0, false
  local page_args = type(args) == "table" and copy(args) or nil

  local function step()
    if pending then
      local e = pending
      pending, done = nil, true
      error(e)
    end
    if done then
      return nil
    end
    if limit and count >= limit then
      done, page = true, nil
      return nil
    end
    if i >= n then
      if page ~= nil and cursor == nil then
        done, page = true, nil
        return nil
      end
      local recs, nxt
      if page == nil then
        recs, nxt = api_exchange(st, "records_page", request, asked)
      else
        page_args.max_id = cursor
        recs, nxt = client_mt.records_page(self, page_args)
      end
      if not recs then
        done, page = true, nil
        error(nxt)
      end
      page, n, i, cursor = recs, #recs, 0, nxt
      if n == 0 then
        done, page = true, nil
        return nil
      end
    end
    i = i + 1
    local rec = page[i]
    page[i] = false -- let the consumer own it; the page does not keep it alive
    count = count + 1
    return rec
  end

  -- the 5.4 closing value: breaking out of the loop drops the page at once
  local closer = setmetatable({}, { __close = function()
    done, page = true, nil
  end })
  return step, nil, nil, closer
end

local function random_suffix()
  return format("%08x%04x", random(0, 0x7fffffff), random(0, 0xffff))
end

local function parent_dir(path)
  local dir = match(path, "^(.*)/[^/]*$")
  if dir == nil then
    return "."
  end
  return dir == "" and "/" or dir
end

local function resolve_location(url, location)
  if match(location, "^[%a][%w+.-]*://") then
    return location
  end
  local origin = match(url, "^(%a[%w+.-]*://[^/]+)")
  if find(location, "^/") then
    return origin .. location
  end
  return (gsub(url, "[^/]*$", "", 1)) .. location
end

-- A download through a transport written in Lua: the body comes to a sink.
local function sink_download(st, request, tmp)
  local url = request.url
  for _ = 0, MAX_REDIRECTS do
    if core.file_kind(tmp) ~= "missing" then
      return nil, new_error(st, "argument", "temporary file " .. tmp .. " exists", { sent = false })
    end
    local f, ferr = io_open(tmp, "wb")
    if not f then
      return nil, new_error(st, "argument", "could not create " .. tmp .. ": " .. tostring(ferr), { sent = false })
    end
    local hash, bytes, werr = core.sha256(), 0, nil
    request.url = url
    request.sink = function(chunk)
      local ok, e = f:write(chunk)
      if not ok then
        werr = e
        return nil, "could not write the file: " .. tostring(e)
      end
      hash:update(chunk)
      bytes = bytes + #chunk
      return true
    end
    local res, terr = st.send(request)
    request.sink = nil
    local closed_ok = f:close()
    if res and res.status >= 300 and res.status < 400 and header(res.headers, "location") then
      os_remove(tmp)
      url = resolve_location(url, header(res.headers, "location"))
      if not match(lower(url), "^https?://") then
        return nil, new_error(st, "protocol", "recording redirected to a URL that is not http(s)")
      end
    else
      local e
      if not res then
        e = errors.from_transport(terr)
        e.message = redact(st, e.message)
      elseif werr or not closed_ok then
        e = new_error(st, "network", "could not write the file: " .. tostring(werr))
      elseif res.status < 200 or res.status > 299 then
        e = new_error(st, "http", format("the recording server answered HTTP %d", res.status), { status = res.status })
      else
        local length = tonumber(header(res.headers, "content-length"))
        if length and length ~= bytes then
          e = new_error(st, "network", format("recording cut short: got %d of %d bytes", bytes, length))
        else
          local ok, serr = core.fsync(tmp)
          if not ok then
            e = new_error(st, "network", serr)
          else
            return { status = res.status, headers = res.headers, bytes = bytes, sha256 = hash:hex() }
          end
        end
      end
      os_remove(tmp)
      return nil, e, res
    end
  end
  return nil, new_error(st, "protocol", "recording redirected more than " .. MAX_REDIRECTS .. " times")
end

--- client:download_recording(rec_or_url, path) -> true, { bytes=, sha256= } | nil, err
function client_mt:download_recording(rec, path)
  local st, err = state_of(self, "download_recording")
  if not st then
    return nil, err
  end
  local url = rec
  if type(rec) == "table" then
    url = rec.recordFileDownloadUrl
    if rec.recordFlag == "0" or rec.recordFlag == 0 or url == nil or url == "" then
      return bad_argument("download_recording", 1,
                          "the record has no recording (recordFlag \"0\" or no recordFileDownloadUrl)")
    end
  end
  if type(url) ~= "string" then
    return bad_argument("download_recording", 1, "record or URL expected, got " .. type(rec))
  end
  url = match(url, "^%s*(.-)%s*$")
  if not match(lower(url), "^https?://[^/%s]+") or find(url, "[%c%s]") then
    return bad_argument("download_recording", 1, "the recording URL must be http:// or https://")
  end
  if type(path) ~= "string" or path == "" then
    return bad_argument("download_recording", 2, "file path expected, got " .. type(path))
  end
  if core.file_kind(path) == "directory" then
    return bad_argument("download_recording", 2, path .. " is a directory")
  end
  local dir = parent_dir(path)
  if core.file_kind(dir) ~= "directory" then
    return bad_argument("download_recording", 2, "directory " .. dir .. " does not exist")
  end
  -- no Authorization: the recording host is not the API and must not see the secret
  local request = {
    method = "GET", url = url,
    headers = { ["User-Agent"] = st.cfg.user_agent },
    timeout = st.download_timeout, connect_timeout = st.connect_timeout,
  }
  local result, derr = with_retries(st, true, request, function()
    local tmp = path .. ".part-" .. random_suffix()
    local res, e, eres
    if st.download then
      res, e = st.download(request, tmp)
      if not res then
        e = errors.from_transport(e)
        e.message = redact(st, e.message)
      elseif res.status < 200 or res.status > 299 then
        eres, e = res, new_error(st, "http", format("the recording server answered HTTP %d", res.status),
                                 { status = res.status })
        res = nil
      end
    else
      res, e, eres = sink_download(st, request, tmp)
    end
    if not res then
      return nil, e, eres
    end
    local ok, rerr = os_rename(tmp, path)
    if not ok then
      os_remove(tmp)
      return nil, new_error(st, "argument", "could not move the recording into place: " .. tostring(rerr),
                            { sent = true, retryable = false })
    end
    core.fsync(dir) -- the rename itself survives a crash
    return { bytes = res.bytes, sha256 = res.sha256 }, nil, res
  end)
  if not result then
    return nil, derr
  end
  return true, result
end

function client_mt:close()
  local st = private[self]
  if st and not st.closed then
    st.closed = true
    if st.handle then
      st.handle:close()
    end
  end
  return true
end

client_mt.__close = client_mt.close

function client_mt.__tostring(self)
  local st = private[self]
  if not st then
    return "clicktocall.client"
  end
  return format("clicktocall.client (%s%s)", st.cfg.base_url, st.closed and ", closed" or "")
end

--------------------------------------------------------------------------
-- construction
--------------------------------------------------------------------------

local function check_options(o)
  for k in pairs(o) do
    if not KNOWN_OPTIONS[k] then
      return "unknown option '" .. tostring(k) .. "'"
    end
  end
  local url = o.base_url
  if type(url) ~= "string" then
    return "field 'base_url' must be a string such as \"https://api.example.com\""
  end
  if find(url, "[%c%s]") or not match(lower(url), "^https?://[^/?#]+") or find(url, "[?#]") then
    return "field 'base_url' must be an http:// or https:// URL without spaces, query or fragment"
  end
  if type(o.app_secret) ~= "string" or o.app_secret == "" or find(o.app_secret, "%c") then
    return "field 'app_secret' must be a non-empty string without control characters"
  end
  if o.user_data ~= nil and (type(o.user_data) ~= "string" or not find(o.user_data, "%S")) then
    return "field 'user_data' must be a non-empty string"
  end
  for _, k in pairs { "timeout", "connect_timeout", "dial_guard_window", "backoff_base", "backoff_max",
                      "download_timeout", "keepalive_timeout" } do
    if o[k] ~= nil and not is_positive_number(o[k]) then
      return "field '" .. k .. "' must be a positive number of seconds"
    end
  end
  if o.retry_after_max ~= nil and not is_whole(o.retry_after_max, 0) then
    return "field 'retry_after_max' must be a whole number of seconds"
  end
  if o.retries ~= nil and not (is_whole(o.retries, 0) and o.retries <= 10) then
    return "field 'retries' must be an integer from 0 to 10"
  end
  if o.max_body ~= nil and not (is_whole(o.max_body, 1) and o.max_body <= 2 ^ 31) then
    return "field 'max_body' must be a positive integer (bytes)"
  end
  if o.pool_size ~= nil and not is_whole(o.pool_size, 1) then
    return "field 'pool_size' must be a positive integer"
  end
  if o.country_code ~= nil and (type(o.country_code) ~= "string" or not match(o.country_code, "^%+?%d%d?%d?$")) then
    return "field 'country_code' must be a string of 1 to 3 digits such as \"86\""
  end
  if o.ca_file ~= nil then
    if type(o.ca_file) ~= "string" or core.file_kind(o.ca_file) ~= "file" then
      return "field 'ca_file' must name a readable CA bundle file"
    end
  end
  if o.insecure ~= nil and type(o.insecure) ~= "boolean" then
    return "field 'insecure' must be a boolean"
  end
  if o.proxy ~= nil and (type(o.proxy) ~= "string" or find(o.proxy, "[%c%s]")) then
    return "field 'proxy' must be a URL string such as \"http://proxy:3128\""
  end
  if o.user_agent ~= nil and (type(o.user_agent) ~= "string" or find(o.user_agent, "%c")) then
    return "field 'user_agent' must be a string without control characters"
  end
  local t = o.transport
  if t ~= nil and t ~= "curl" and t ~= "ngx" and type(t) ~= "function" then
    return "field 'transport' must be nil, \"curl\", \"ngx\" or a function"
  end
  if o.dial_guard ~= nil and type(o.dial_guard) ~= "string" then
    return "field 'dial_guard' must be the name of a lua_shared_dict"
  end
  for _, k in pairs { "on_event", "sleep" } do
    if o[k] ~= nil and type(o[k]) ~= "function" then
      return "field '" .. k .. "' must be a function"
    end
  end
  return nil
end

local function setup_transport(st, o)
  local t = o.transport
  if t == nil or t == "curl" then
    local handle, herr = core.curl_transport { ca_file = o.ca_file, insecure = o.insecure, proxy = o.proxy }
    if not handle then
      return herr
    end
    st.handle = handle
    st.send = function(request)
      return handle:perform(request)
    end
    st.download = function(request, tmp)
      return handle:download(request, tmp)
    end
    st.sleep = o.sleep or core.sleep
    st.now = core.now
  elseif t == "ngx" then
    local ok, ngx_transport = pcall(require, "clicktocall.transport.ngx")
    if not ok then
      return "transport \"ngx\" needs OpenResty/ngx_lua: " .. tostring(ngx_transport)
    end
    local send, terr = ngx_transport.new {
      pool_size = o.pool_size, keepalive_timeout = o.keepalive_timeout,
      ssl_verify = not o.insecure, ca_file = o.ca_file,
    }
    if not send then
      return terr
    end
    st.send = send
    st.sleep = o.sleep or ngx_transport.sleep
    st.now = ngx_transport.now
  else
    st.send = t
    st.sleep = o.sleep or core.sleep
    st.now = core.now
  end
  if o.dial_guard then
    local ok, guard_mod = pcall(require, "clicktocall.dial_guard")
    if not ok then
      return "dial_guard needs OpenResty: " .. tostring(guard_mod)
    end
    local guard, gerr = guard_mod.new(o.dial_guard, o.dial_guard_window or DEFAULTS.dial_guard_window)
    if not guard then
      return "field 'dial_guard': " .. tostring(gerr)
    end
    st.guard = guard
  end
  return nil
end

--- clicktocall.new(options) -> client | nil, err
function _M.new(o)
  if type(o) ~= "table" then
    return bad_argument("new", 1, "table expected, got " .. type(o))
  end
  local why = check_options(o)
  if why then
    return bad_argument("new", 1, why)
  end
  local authorization = core.base64(o.app_secret)
  local ua = "clicktocall/" .. _M._VERSION
  if o.user_agent and o.user_agent ~= "" then
    ua = ua .. " " .. o.user_agent
  end
  local st = {
    cfg = {
      base_url = (gsub(o.base_url, "/+$", "")),
      authorization = authorization,
      user_agent = ua,
      country_code = o.country_code and (gsub(o.country_code, "^%+", "")) or DEFAULTS.country_code,
      user_data = o.user_data,
    },
    secrets = { o.app_secret, authorization },
    on_event = o.on_event,
    closed = false,
  }
  for k, v in pairs(DEFAULTS) do
    if st[k] == nil and k ~= "country_code" then
      st[k] = o[k] == nil and v or o[k]
    end
  end
  local terr = setup_transport(st, o)
  if terr then
    return nil, errors.argument("bad argument #1 to 'new' (" .. redact(st, terr) .. ")")
  end
  local client = setmetatable({}, client_mt)
  private[client] = st
  return client
end

--- clicktocall.normalize_phone(s [, country_code]) -> "+86..." | nil, err
function _M.normalize_phone(s, cc)
  local phone, why = core.normalize_phone(s, cc)
  if not phone then
    return nil, errors.argument(why)
  end
  return phone
end

--- clicktocall.format_time(string | unix seconds) -> "yyyy-MM-dd HH:mm:ss" (UTC+8) | nil, err
function _M.format_time(v)
  local s, why = core.format_time(v)
  if not s then
    return nil, errors.argument(why)
  end
  return s
end

_M.is_error = errors.is_error

return _M
