--- clicktocall: a client for a two-way callback ("click-to-call") provider.
--
-- Where things are:
--   clicktocall.core (C)      builds each request, reads each answer, the libcurl transport
--   clicktocall.options       the options of new{}, their checks, the client's state and its transport
--   clicktocall.transport.*   the transport objects: curl (libcurl), ngx (cosockets), func (yours)
--   clicktocall.exchange      send, read, retry with backoff, events, redaction of the secret
--   clicktocall.pager         a window's records page by page (records, slices, the jobs)
--   clicktocall.download      download_recording for every transport
--   clicktocall.batch         many requests at once (records{ concurrency }, the archive)
--   clicktocall.archive       archive_recordings;  clicktocall.sync: sync
--   clicktocall.slices        records{ concurrency = N }: the window paged as N slices at once
--   this file                 new{}, the four calls, records, close
--
-- docs/API.md is the reference: every option, call, field and error kind.

local core = require "clicktocall.core"
local errors = require "clicktocall.errors"
local options = require "clicktocall.options"
local exchange = require "clicktocall.exchange"
local download = require "clicktocall.download"

-- The jobs' modules are loaded on first use: a process that only dials never carries them.
local function job(name)
  return require("clicktocall." .. name)
end

local type = type
local pairs = pairs
local ipairs = ipairs
local error = error
local tostring = tostring
local setmetatable = setmetatable
local floor = math.floor
local format = string.format

local _M = {
  _VERSION = core._VERSION,
  PAGE_SIZE = require("clicktocall.limits").page_size,
}

-- Per-client state lives here, not in the client table, so that dumping a
-- client (inspect, serpent, a debugger) never shows the secret.
local private = setmetatable({}, { __mode = "k" })

local client_mt = {}
client_mt.__index = client_mt

--------------------------------------------------------------------------
-- a call's table
--------------------------------------------------------------------------

-- The fields each call's table may have; anything else is a typo to report.
local FIELDS = {
  bind_seat = { user_data = true, seat = true, phone = true },
  dial = { user_data = true, caller = true, callee = true, seat = true, force = true },
  balance = { user_data = true },
  records_page = { user_data = true, start_time = true, end_time = true, max_id = true },
  records = { user_data = true, start_time = true, end_time = true, max_id = true, limit = true,
              concurrency = true },
}

-- records{ concurrency }: at most this many slices (docs/API.md)
local MAX_CONCURRENCY = require("clicktocall.limits").records_concurrency

local NO_ARGS = setmetatable({}, { __newindex = function() error("read-only", 2) end })

-- "dial: caller is missing", err.field = "caller" (field nil when the error is not about one field)
local function argument_error(st, fname, what, field)
  local e = errors.call_argument(fname, what, field)
  if st then
    e.message = exchange.redact(st, e.message)
  end
  return e
end

local function state_of(self, fname)
  local st = private[self]
  if not st then
    return nil, errors.argument(format("%s: clicktocall client expected: call it as client:%s, not client.%s",
                                       fname, fname, fname))
  end
  if st.closed then
    return nil, errors.argument(format("%s: the client is closed (client:close() was called); nothing was sent",
                                       fname))
  end
  return st
end

--- prepare(self, fname, op, args) -> st, request, asked [, caller, callee, seat] | nil, err
local function prepare(self, fname, op, args)
  local st, err = state_of(self, fname)
  if not st then
    return nil, err
  end
  if args == nil and op == "balance" then
    args = NO_ARGS
  end
  if type(args) ~= "table" then
    return nil, argument_error(st, fname, "expected a table of fields, got " .. type(args))
  end
  local known = FIELDS[fname]
  for k in pairs(args) do
    if not known[k] then
      return nil, argument_error(st, fname, "unknown field '" .. tostring(k) .. "'", tostring(k))
    end
  end
  -- a dial's parts (caller, callee, seat) are for the guard only
  local request, asked, caller, callee, seat = core.request(op, st.cfg, args, st.guard ~= nil)
  if not request then
    -- the core fails with an error table: { message = "caller: ...", field = "caller" }
    return nil, argument_error(st, fname, asked.message, asked.field)
  end
  return st, request, asked, caller, callee, seat
end

--------------------------------------------------------------------------
-- the four calls
--------------------------------------------------------------------------

-- Each call runs as run(st, op, args, request, asked, caller, callee, seat) -> v1, v2 | nil, err.

local function plain(st, op, _, request, asked)
  return exchange.api(st, op, request, asked)
end

-- The dial guard: a second click on the same dial is refused, unless force = true. The claim lasts
-- dial_guard_hold seconds while the outcome is unknown; it is shortened to dial_guard_window once the
-- outcome is known (a session id, or an error that rang nobody), released when the dial provably never
-- left, and kept whole when the dial may have rung (errors.may_have_rung): its record appears only when
-- the call ends, so nothing can tell sooner that it was placed.
local function guarded_dial(st, op, args, request, _, caller, callee, seat)
  local guard = st.guard
  if not guard or args.force then
    return exchange.api(st, op, request)
  end
  -- caller, callee, seat: the normalized values C wrote into the body (core.request's last results)
  local user_data = args.user_data or st.cfg.user_data
  local claim, why, kind = guard:check(caller, callee, seat, user_data)
  if not claim then
    kind = kind or "duplicate" -- "network": a redis:// guard could not ask Redis
    return nil, exchange.fail(st, kind, why, { sent = false, retryable = kind == "network" or kind == "busy" })
  end
  local session, err = exchange.api(st, op, request)
  if session then
    guard:settle(caller, callee, seat, user_data, claim)
  elseif not err.sent then
    guard:release(caller, callee, seat, user_data, claim)
  elseif not errors.may_have_rung(err) then
    guard:settle(caller, callee, seat, user_data, claim)
  end
  return session, err
end

-- The four methods come from the core's list of ops (named once, in C); only dial differs.
local SPECIAL = { dial = guarded_dial }

for _, op in ipairs(core.OPS) do
  local run = SPECIAL[op] or plain
  client_mt[op] = function(self, args)
    local st, request, asked, caller, callee, seat = prepare(self, op, op, args)
    local v1, v2
    if st then
      v1, v2 = run(st, op, args, request, asked, caller, callee, seat)
    else
      v2 = request
    end
    if v1 == nil and op == "dial" and type(v2) == "table" then
      -- every error of a dial says whether the agent may have been rung
      v2.may_have_rung = errors.may_have_rung(v2)
    end
    return v1, v2
  end
end

-- A plain dial (no events, guard or limit: options.lua) goes to the transport whole when it can: no
-- request table, no layers. Whatever it leaves (arguments to refuse, an answer to read) goes the long way.
local long_dial = client_mt.dial
function client_mt.dial(self, args)
  local st = private[self]
  local quick = st and st.quick_dial
  if quick and not st.closed and type(args) == "table" then
    local t = st.transport
    local v, res, terr = quick(t, st.cfg, args, st.timeout, st.connect_timeout, st.max_body)
    if v == true then
      v, res = exchange.dial_sent(st, core.request("dial", st.cfg, args, false), res, terr)
      if v == nil then
        res.may_have_rung = errors.may_have_rung(res)
      end
      return v, res
    elseif v then
      return v
    end
  end
  return long_dial(self, args)
end

--------------------------------------------------------------------------
-- records
--------------------------------------------------------------------------

local function copy(t)
  local c = {}
  for k, v in pairs(t) do
    c[k] = v
  end
  return c
end

--- for rec in client:records{ start_time=, end_time= [, max_id=] [, limit=] [, user_data=] } do ... end
-- Raises an error object on any failure (never ends a failed sync silently).
function client_mt:records(args)
  local pending -- an error to raise on the first step
  local st, request = prepare(self, "records", "records_page", args)
  local limit = type(args) == "table" and args.limit or nil
  if not st then
    pending = request
  elseif limit ~= nil and not (type(limit) == "number" and limit >= 1 and floor(limit) == limit
                               and limit < math.huge) then
    pending = argument_error(st, "records", "limit must be a positive integer", "limit")
  end
  local concurrency = type(args) == "table" and args.concurrency or nil
  if not pending and concurrency ~= nil
    and not (type(concurrency) == "number" and concurrency >= 1 and concurrency <= MAX_CONCURRENCY
             and floor(concurrency) == concurrency) then
    pending = argument_error(st, "records", "concurrency must be an integer from 1 to " .. MAX_CONCURRENCY,
                             "concurrency")
  end
  local page_args = type(args) == "table" and copy(args) or nil
  if page_args then
    page_args.limit = nil
    page_args.concurrency = nil
  end
  if not pending and concurrency and concurrency > 1 then
    return job("slices").iterate(st, page_args, concurrency, limit)
  end
  local page, n, i = nil, 0, 0
  local count, done = 0, false
  local next_page, close_pages
  if not pending then
    next_page, close_pages = job("pager").new(st, "records", page_args, { ahead = true, limit = limit })
  end

  local function stop()
    done, page = true, nil
    if close_pages then
      close_pages()
    end
  end

  local function step()
    if st and st.closed and not done then
      -- the client's connections are gone: nothing may be sent for it any more
      pending = errors.argument("records: the iterator was used after client:close(); nothing was sent")
    end
    if pending then
      local e = pending
      pending = nil
      stop()
      error(e)
    end
    if done then
      return nil
    end
    if limit and count >= limit then
      stop()
      return nil
    end
    if i >= n then
      local recs, err = next_page()
      if not recs or #recs == 0 then
        stop()
        if err then
          error(err)
        end
        return nil
      end
      page, n, i = recs, #recs, 0
    end
    i = i + 1
    local rec = page[i]
    page[i] = false -- let the consumer own it; the page does not keep it alive
    count = count + 1
    return rec
  end

  -- the 5.4 closing value: breaking out of the loop drops the page at once
  local closer = setmetatable({}, { __close = stop })
  return step, nil, nil, closer
end

--------------------------------------------------------------------------
-- recordings, close
--------------------------------------------------------------------------

--- client:download_recording(rec_or_url, path) -> true, { bytes=, sha256= } | nil, err
function client_mt:download_recording(rec, path, mode)
  local st, err = state_of(self, "download_recording")
  if not st then
    return nil, err
  end
  if mode == nil then
    return download.fetch(st, rec, path) -- 0666 less the umask, as before
  end
  if type(mode) ~= "number" or mode ~= floor(mode) or mode < 0 or mode > 511 then
    return nil, errors.call_argument("download_recording", "mode must be a whole number from 0 to 511 (0777)",
      "mode")
  end
  return download.fetch(st, rec, path, { mode = mode })
end

--- client:archive_recordings{ start_time=, end_time=, dir= [, concurrency=4] [, layout="date"]
--   [, manifest=] [, on_file=] [, user_data=] [, upload=] } -> summary | nil, err  (upload: clicktocall.s3)
function client_mt:archive_recordings(args)
  local st, err = state_of(self, "archive_recordings")
  if not st then
    return nil, err
  end
  return job("archive").run(st, args)
end

--- client:sync{ state=, on_record= [, since=] [, lookback=3600] [, user_data=] [, lock=] } -> summary | nil, err
function client_mt:sync(args)
  local st, err = state_of(self, "sync")
  if not st then
    return nil, err
  end
  return job("sync").run(st, args)
end

function client_mt:close()
  local st = private[self]
  if st and not st.closed then
    st.closed = true
    st.transport:close()
  end
  return true
end

client_mt.__close = client_mt.close

function client_mt.__tostring(self)
  local st = private[self]
  if not st then
    return "clicktocall.client"
  end
  return exchange.redact(st, format("clicktocall.client (%s%s)", st.cfg.base_url, st.closed and ", closed" or ""))
end

--------------------------------------------------------------------------
-- the module
--------------------------------------------------------------------------

--- clicktocall.new(options) -> client | nil, err
function _M.new(o)
  if type(o) ~= "table" then
    return nil, argument_error(nil, "clicktocall.new", "expected a table of options, got " .. type(o))
  end
  local st, why, field = options.state(o, _M._VERSION)
  if not st then
    return nil, argument_error(nil, "clicktocall.new", why, field) -- why is redacted already
  end
  local client = setmetatable({}, client_mt)
  private[client] = st
  return client
end

--- clicktocall.normalize_phone(s [, country_code]) -> "+86..." | nil, err
function _M.normalize_phone(s, cc)
  local phone, why = core.normalize_phone(s, cc)
  if not phone then
    return nil, errors.argument(why.message)
  end
  return phone
end

--- clicktocall.format_time(string | unix seconds) -> "yyyy-MM-dd HH:mm:ss" (UTC+8) | nil, err
function _M.format_time(v)
  local s, why = core.format_time(v)
  if not s then
    return nil, errors.argument(why.message)
  end
  return s
end

_M.is_error = errors.is_error

--- clicktocall.verify_archive{ dir= [, manifest=] } -> report | nil, err: every file the manifest names,
-- re-hashed (no network)
function _M.verify_archive(args)
  return job("archive").verify(args)
end

return _M
