--- clicktocall.exchange: one request through the transport, its answer read by
-- the core, retried with backoff and Retry-After; events; redaction of the secret.
--
-- Everything here works on `st`, a client's private state (see options.lua): st.on_event, st.secrets,
-- st.retries, st.backoff_base, st.backoff_max, st.retry_after_max, st.timeout, st.connect_timeout,
-- st.max_body, st.limiter; and on a transport object `t` (st.transport, or a scheduler's task transport): t:send,
-- t:sleep, t:now, t.name.

local core = require "clicktocall.core"
local errors = require "clicktocall.errors"

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = errors.pcall -- Ctrl-C in a transport, a hook or a sleep is passed on, never made an error value
local raw_pcall = _G.pcall
local tostring = tostring
local tonumber = tonumber
local random = math.random
local find = string.find
local gsub = string.gsub
local match = string.match
local lower = string.lower
local sub = string.sub
local sort = table.sort
local os_time = os.time

local _M = { _VERSION = core._VERSION }

--------------------------------------------------------------------------
-- the secret
--------------------------------------------------------------------------

--- secret_forms(secret) -> array of every form a server or transport could echo
-- Raw, base64 (the Authorization value) padded and unpadded, URL-safe base64
-- padded and unpadded; longest first, so a padded form goes before its prefix.
function _M.secret_forms(secret)
  local b64 = core.base64(secret)
  local url = gsub(b64, "[+/]", { ["+"] = "-", ["/"] = "_" })
  local forms, seen = {}, {}
  for _, f in ipairs { secret, b64, (gsub(b64, "=+$", "")), url, (gsub(url, "=+$", "")) } do
    if f ~= "" and not seen[f] then
      seen[f] = true
      forms[#forms + 1] = f
    end
  end
  sort(forms, function(a, b) return #a > #b end)
  return forms
end

--- redact(st, s) -> s with every form of the secret replaced by "***"
local function redact(st, s)
  if type(s) ~= "string" then
    return s
  end
  local secrets = st.secrets
  for i = 1, #secrets do
    local secret = secrets[i]
    local from = 1
    while true do
      local a, b = find(s, secret, from, true)
      if not a then
        break
      end
      s = sub(s, 1, a - 1) .. "***" .. sub(s, b + 1)
      from = a + 3
    end
  end
  return s
end
_M.redact = redact

--- fail(st, kind, message [, fields]) -> err, its message redacted
local function fail(st, kind, message, fields)
  return errors.new(kind, redact(st, message), fields)
end
_M.fail = fail

--- describe(v) -> what a user function raised, as text for a message
-- (a raised table may have no __tostring, or one that raises too)
local function describe(v)
  if errors.is_error(v) then
    return v.message
  end
  local t = type(v)
  if t == "string" or t == "number" then
    return tostring(v)
  end
  local ok, s = pcall(tostring, v)
  return ok and type(s) == "string" and s or "a " .. t
end
_M.describe = describe

--------------------------------------------------------------------------
-- events
--------------------------------------------------------------------------

local function emit(st, event)
  if st.on_event then
    event.url = redact(st, event.url)
    event.error = redact(st, event.error)
    -- a failing hook must not fail the call it observes
    pcall(st.on_event, event)
  end
end
_M.emit = emit

--------------------------------------------------------------------------
-- the transport
--------------------------------------------------------------------------

--- header(headers, name) -> value of a header, name in lower case
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
_M.header = header

-- checked(st, t, pcall's results of a transport's send) -> res | nil, err (see send)
local function checked(st, t, ok, res, terr)
  if not ok then
    errors.pass_interrupt(res)
    return nil, fail(st, "protocol", t.name .. " raised an error: " .. describe(res),
                     { sent = true, retryable = false })
  end
  if res == nil then
    local e = errors.from_transport(terr)
    e.message = redact(st, e.message)
    return nil, e
  end
  local status = type(res) == "table" and res.status
  if type(status) ~= "number" or status < 100 or status > 599 or status % 1 ~= 0
    or (res.headers ~= nil and type(res.headers) ~= "table") then
    return nil, fail(st, "protocol", "the transport returned something that is not a response", { sent = true })
  end
  return res
end

--- send(st, t, request) -> res | nil, err
-- The transport may be the caller's function, and so may raise. A raise is kind
-- "protocol" (the transport broke its contract: it is no fact about the network),
-- sent = true (we cannot know how far it got, and a dial must never go twice), and
-- not retryable (a raise is a bug, not a transient failure). What comes back is
-- checked to be a response: a status from 100 to 599, headers a table or nil.
local function send(st, t, request)
  return checked(st, t, raw_pcall(t.send, t, request)) -- the plain pcall: no vararg pass on the dial path
end
_M.send = send

--------------------------------------------------------------------------
-- retries
--------------------------------------------------------------------------

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
  local at = core.http_date(match(v, "^%s*(.-)%s*$"))
  if not at then
    return nil
  end
  local delta = at - os_time()
  return delta > 0 and delta or 0
end

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

--- with_retries(st, t, op, idempotent, request, once, a, b) -> v1, v2 | nil, err
-- Runs once(st, t, request, a, b) -> v1, v2, res | nil, err, res until it succeeds or
-- must stop. Events (and their tables and clock reads) are made only when there
-- is an on_event hook; each names its call, op ("dial", "records_page", "download").
local function with_retries(st, t, op, idempotent, request, once, a, b)
  local attempt = 0
  local on_event = st.on_event
  local limiter = st.limiter -- clicktocall.rate_limit; nil (nothing to do) without a rate_limit option
  while true do
    attempt = attempt + 1
    if limiter then
      local lerr = limiter:acquire(st, t, op) -- every attempt is a request the provider counts
      if lerr then
        return nil, lerr
      end
    end
    local t0
    if on_event then
      emit(st, { type = "request", op = op, method = request.method, url = request.url, attempt = attempt })
      t0 = t:now()
    end
    local v1, v2, res = once(st, t, request, a, b)
    local elapsed = on_event and t:now() - t0
    if v1 ~= nil then
      if on_event then
        emit(st, { type = "response", op = op, method = request.method, url = request.url, attempt = attempt,
                   status = res and res.status, elapsed = elapsed })
      end
      return v1, v2
    end
    local err = v2
    if on_event then
      emit(st, { type = "response", op = op, method = request.method, url = request.url, attempt = attempt,
                 status = err.status, elapsed = elapsed, error = tostring(err) })
    end
    local delay = retry_delay(st, err, attempt, idempotent, res)
    if not delay then
      return nil, err
    end
    if on_event then
      emit(st, { type = "retry", op = op, method = request.method, url = request.url, attempt = attempt,
                 status = err.status, elapsed = elapsed, error = tostring(err), delay = delay })
    end
    local ok, serr = pcall(t.sleep, t, delay)
    if not ok then
      -- the caller's sleep failed: stop here with the error we had, never raise
      err.message = redact(st, err.message .. " (not retried: the sleep function raised: " .. describe(serr) .. ")")
      return nil, err
    end
  end
end
_M.with_retries = with_retries

--------------------------------------------------------------------------
-- the four API calls
--------------------------------------------------------------------------

-- The provider refused the credentials (err.auth): HTTP 401 or 403, or a refusal in meta that names the
-- Authorization header, as the provider words it ("Authorization 验证失败", "Authorization 不能为空").
-- The provider documents no codes (docs/PROVIDER.md), so its message is all there is to go on.
local function refused_credentials(kind, status, message)
  if kind == "http" and (status == 401 or status == 403) then
    return true
  end
  if kind == "api" and type(message) == "string" and find(lower(message), "authori[sz]") then
    return true
  end
  return nil
end

-- read(st, op, asked, res | nil, err) -> v1, v2, res | nil, err [, res]: an answer read by the core
local function read(st, op, asked, res, e)
  if not res then
    return nil, e
  end
  if type(res.body) ~= "string" then
    return nil, fail(st, "protocol", "the transport returned something that is not a response", { sent = true })
  end
  -- the secrets go to C so that a body excerpt is redacted before it is cut
  local v1, v2 = core.response(op, res.status, res.body, asked, st.secrets)
  if v1 == nil then
    -- v2 is the core's error table { kind, message }
    return nil, fail(st, v2.kind, v2.message, { status = res.status, sent = true,
                                                auth = refused_credentials(v2.kind, res.status, v2.message) }), res
  end
  return v1, v2, res
end

local function api_once(st, t, request, op, asked)
  -- the headers of a 2xx answer are never read here (Retry-After matters only on failures)
  request.want_headers = false
  return read(st, op, asked, send(st, t, request))
end

--- api(st, op, request [, asked [, t]]) -> v1, v2 | nil, err   (t: st.transport unless a task's)
function _M.api(st, op, request, asked, t)
  request.timeout = st.timeout
  request.connect_timeout = st.connect_timeout
  request.max_body = st.max_body
  return with_retries(st, t or st.transport, op, op ~= "dial", request, api_once, op, asked)
end

--- dial_sent(st, request, res | nil, err) -> session | nil, err
-- A dial the transport sent itself (st.quick_dial) and whose answer it left to read: read as api()
-- reads an attempt's, then retried as api() retries (request: the same dial, for another attempt).
function _M.dial_sent(st, request, res, terr)
  local first = true
  local function once(_, t, req, op, asked)
    if first then
      first = false
      return read(st, op, asked, checked(st, t, true, res, terr))
    end
    return api_once(st, t, req, op, asked)
  end
  request.timeout = st.timeout
  request.connect_timeout = st.connect_timeout
  request.max_body = st.max_body
  return with_retries(st, st.transport, "dial", false, request, once, "dial")
end

return _M
