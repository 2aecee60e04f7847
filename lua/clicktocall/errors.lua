--- Error values of clicktocall.
-- Every failure of the public API is `nil, err` with `err` one of these:
-- a table with kind, message, retryable, sent (always present), and status,
-- code, code_name, retry_after where they apply; field on an "argument" error
-- about one field of a table (err.field = "caller"), auth = true when the
-- provider refused the credentials. tostring(err) reads
-- "[kind] message" or "[network][CURLE_COULDNT_CONNECT] message (7)".

local setmetatable = setmetatable
local getmetatable = getmetatable
local tostring = tostring
local type = type
local error = error
local pcall = pcall
local format = string.format
local match = string.match
local find = string.find

local _M = { _VERSION = require "clicktocall.version" }

local KINDS = {
  argument = true, network = true, timeout = true, http = true,
  api = true, protocol = true, duplicate = true,
  io = true, -- a local file could not be written (full disk, EFBIG): never retried
  busy = true, -- another archive or sync holds the same directory or state file: nothing was done
  callback = true, -- a hook of the caller's (on_record, on_file) raised or returned nil, err: see err.cause
  rate_limited = true, -- the client's rate_limit was reached: nothing was sent; err.retry_after says when to try
}
_M.KINDS = KINDS

local mt = {}
mt.__index = mt

function mt.__tostring(e)
  if e.code_name then
    return format("[%s][%s] %s (%s)", e.kind, e.code_name, e.message, tostring(e.code))
  end
  return format("[%s] %s", e.kind, e.message)
end

local function default_retryable(kind, status)
  if kind == "network" or kind == "timeout" or kind == "busy" or kind == "rate_limited" then
    return true
  end
  if kind == "http" then
    return status == 429 or (status ~= nil and status >= 500 and status ~= 501)
  end
  return false
end

--- new(kind, message [, fields]) -> err
-- fields: status, sent, retryable, code, code_name, retry_after, field, auth.
function _M.new(kind, message, fields)
  fields = fields or {}
  local sent = fields.sent
  if sent == nil then
    sent = kind ~= "argument" and kind ~= "duplicate" and kind ~= "busy" and kind ~= "rate_limited"
  end
  local retryable = fields.retryable
  if retryable == nil then
    retryable = default_retryable(kind, fields.status)
  end
  return setmetatable({
    kind = kind,
    message = message,
    status = fields.status,
    retryable = retryable and true or false,
    sent = sent and true or false,
    code = fields.code,
    code_name = fields.code_name,
    retry_after = fields.retry_after,
    field = fields.field,
    auth = fields.auth,
  }, mt)
end

--- argument(message [, field]) -> an "argument" error; field: the name of the table field it is about,
-- as the caller wrote it ("caller", "base_url", "start_time"), so a form can mark that input
function _M.argument(message, field)
  return _M.new("argument", message, { sent = false, retryable = false, field = field })
end

--- call_argument(call, what [, field]) -> an "argument" error whose message is "<call>: <what>"
-- ("dial: caller is missing"). Without field, a `what` in the older form "field 'x' must be ..." or
-- "unknown field 'x'" is read for it and said the newer way, so every job's checks give one form.
function _M.call_argument(call, what, field)
  what = tostring(what)
  if field == nil then
    local name, rest = match(what, "^field '([^']+)'(.*)$")
    if name then
      -- "is missing" reads on from the name; anything else is a sentence of its own, after a colon
      if not (match(rest, "^ is ") or match(rest, "^ must ") or match(rest, "^ holds ") or match(rest, "^ cannot ")
              or match(rest, "^: ")) then
        rest = ": " .. match(rest, "^%s*(.-)$")
      end
      field, what = name, name .. rest
    else
      field = match(what, "^unknown field '([^']+)'")
    end
  end
  return _M.argument(call .. ": " .. what, field)
end

--- may_have_rung(err) -> boolean: whether a dial that failed with err may have rung the agent.
-- Only what left this machine can ring (sent); of that, a refusal by the provider (kind "api") and an
-- HTTP 4xx (the request refused at the door: credentials, throttling, a bad path) rang nobody. A timeout, a
-- network error after sending, an unreadable answer (protocol) or any other HTTP status (a 5xx may come
-- after the provider acted, from a gateway that forwarded the dial) leave the outcome unknown.
function _M.may_have_rung(err)
  if type(err) ~= "table" or not err.sent or err.kind == "api" then
    return false
  end
  if err.kind == "http" and type(err.status) == "number" and err.status >= 400 and err.status <= 499 then
    return false
  end
  return err.kind ~= "argument" and err.kind ~= "duplicate" and err.kind ~= "busy" and err.kind ~= "rate_limited"
end

function _M.is_error(v)
  return type(v) == "table" and getmetatable(v) == mt
end

--- is_interrupt(v) -> whether v is what Ctrl-C raises: the standalone interpreters (lua, luajit) turn SIGINT
-- into the error "interrupted!", with the position luaL_error puts before it ("x.lua:344: interrupted!").
-- The library passes it on: it is never made an error value, a failed recording or a failed run.
local function is_interrupt(v)
  return type(v) == "string" and (v == "interrupted!" or find(v, ":%d+: interrupted!$") ~= nil)
end
_M.is_interrupt = is_interrupt

--- pass_interrupt(v): raises v again, as it is, when it is an interrupt; returns otherwise.
-- For a pcall that has something to clean up first (a lock, a temporary file).
function _M.pass_interrupt(v)
  if is_interrupt(v) then
    error(v, 0)
  end
end

local function passed(ok, ...)
  if not ok and is_interrupt((...)) then
    error((...), 0)
  end
  return ok, ...
end

--- pcall(f, ...) -> as the standard pcall, except that an interrupt is raised again, never returned
function _M.pcall(f, ...)
  return passed(pcall(f, ...))
end

--- Turns what a transport returned as its error into an error value.
-- A transport may return a string or a table { kind, message, sent, ... };
-- anything unknown counts as a network failure that may have been sent.
function _M.from_transport(terr)
  if type(terr) ~= "table" then
    return _M.new("network", terr ~= nil and tostring(terr) or "the transport failed without a message",
                  { sent = true })
  end
  local kind = KINDS[terr.kind] and terr.kind or "network"
  local sent = terr.sent
  if sent == nil then
    sent = true -- unknown: assume the worst, a dial must never be sent twice
  end
  -- a transport that knows better (a full disk, a re-send it refused) says retryable = false
  local retryable = kind == "network" or kind == "timeout"
  if type(terr.retryable) == "boolean" then
    retryable = terr.retryable
  end
  return _M.new(kind, tostring(terr.message or "the transport failed"), {
    sent = sent, status = terr.status, code = terr.code, code_name = terr.code_name,
    retryable = retryable,
  })
end

return _M
