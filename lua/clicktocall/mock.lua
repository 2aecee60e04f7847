--- clicktocall.mock: an in-memory click-to-call provider behind a transport function, for tests.
--
-- Pure Lua (Lua 5.1-5.4, LuaJIT; no C core, no lua-cjson). It answers the provider's four
-- calls with the provider's own rules and messages, from clicktocall.provider_rules (which the bundled nginx
-- simulator, sim/, uses too; spec/integration/conformance_spec.lua holds the two to the same answers):
-- Authorization checked when a secret is given, userData must be a known customer, a seat must be bound
-- before it dials and only with its bound phone, the balance goes down by each call's talk time, each
-- dial adds a call record, records come 100 a page by maxId within the starTime/endTime window, and
-- each recorded call has a recording on a mock host that expires 7 days after its callEndTime (UTC+8).
-- Faults are queued per call; every request is logged with its JSON body decoded.
--
-- A busted test of your own code:
--
--   local clicktocall = require "clicktocall"
--   local mock = require "clicktocall.mock"
--
--   describe("notify_agent", function()
--     it("dials the customer from the agent's seat and survives a flaky balance call", function()
--       local provider = mock.new{ user_data = "UD-1", secret = "TEST", balance = 600,
--                                  seats = { PP7568032251 = "+8613500000002" } }
--       local client = assert(clicktocall.new{ base_url = "http://mock", app_secret = "TEST",
--                                              user_data = "UD-1", transport = provider.transport,
--                                              sleep = provider.sleep })     -- backoff without waiting
--       provider:fail("balance", 503)                                          -- once, then normal
--       local sid = assert(my_app.notify_agent(client, "PP7568032251", "13918000010"))
--       assert.equal(1, provider.dials)
--       assert.equal("+8613918000010", provider:last_request("dial").body.calleeNbr)
--       assert.equal(sid, provider:records()[1].sessionId)
--       assert.is_true(provider:balance() < 600)
--     end)
--   end)
--
-- mock.new{ ... } options (all optional):
--   user_data      = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"  the known customer (userData)
--   balance        = 6152     its remaining talk time (seconds); each dial takes its duration off
--   secret         = nil      when given, Authorization must be base64(secret) (the dial, as the provider's
--                             document has it, may omit the header; a wrong one is refused everywhere)
--   seats          = {}       seats bound up front: { [seat] = "+86..." }
--   clock          = os.time  function() -> Unix seconds: the provider's clock (see advance())
--   recorded       = true     whether dialled calls are recorded
--   call_duration  = nil      talk time of a dialled call in seconds (nil: 10..59, from the id)
--   recording_size = 32768    bytes of each recording
--   recording_base = "http://mock-recordings"  where recordings live: <base>/<sessionId>.wav
--   chunk_size     = 16384    bytes per call of request.sink
--   ids            = "at_dial" when a record gets its id: "at_dial", when the call is placed (or seeded), so a
--                             long call that ends after shorter, later ones has the lower id; "at_hangup", when
--                             it is listed (callEndTime + listing_delay), so ids follow the listing order
--   listing_delay  = 0        seconds after its callEndTime before a record is listed (reaches the provider);
--                             0: listed whenever its callEndTime is in the window asked for
--
-- The provider object (methods that change state return the provider, so calls chain):
--   provider.transport              function(request) -> response | nil, err: clicktocall.new{ transport = }
--   provider.sleep                  function(seconds) for clicktocall.new{ sleep = }: records the backoff in
--                                   provider.slept and moves the provider's clock instead of waiting
--   provider.requests               every request seen, oldest first: { op =, method =, url =, headers =,
--                                   body = <decoded JSON table or nil>, raw_body =, fault = <name or nil>,
--                                   time = <provider clock>, timeout =, connect_timeout =, max_body = };
--                                   op is one of the five below or "unknown"
--   provider.dials                  calls placed so far
--   provider:fail(op, fault [, times])  queue a fault (a status, a name, a canned response or a
--                                   function); see the function's comment. A canned response's header
--                                   names reach the client as written ("Location", not "location")
--   provider:clear_faults([op]), provider:pending_faults([op]) -> n
--   provider:seed_records(n [, opts]) / provider:seed_records({ rec, ... } [, opts]) -> the new records
--   provider:records([user_data]) -> every record (copies), by id (at_hangup: those numbered so far)
--   provider:recording(rec | url | sessionId) -> the bytes a download returns
--   provider:balance([ud]), provider:set_balance(n [, ud]), provider:add_customer(ud [, balance])
--   provider:bind(seat, phone [, ud]), provider:bound_phone(seat [, ud])
--   provider:count([op]) -> n, provider:last_request([op]) -> entry
--   provider:now(), provider:advance(seconds), provider:reset()
--   mock.null (a seeded field with it is sent as JSON null), mock.format_time(unix), mock.parse_time(s)
--
-- A dial's record is there at once, as the provider's is, with callEndTime = dial time + 8 s + its talk
-- time: a window that ends at the dial's time does not hold it yet (ask past it, or advance()).
--
-- Misuse of the mock's own methods (an unknown option, fault or op) raises at the caller, so a typo can
-- never leave a test passing for the wrong reason. The transport itself never raises: like a real one it
-- returns a response or nil, err with err = { kind = "network"|"timeout"|"protocol"|"argument",
-- message =, sent = }; only Ctrl-C's interrupt, raised in a fault function or a sink, is passed on.

local json = require "clicktocall.json"

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = require("clicktocall.errors").pcall -- Ctrl-C in a sink or a fault function is passed on
local error = error
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local floor = math.floor
local ceil = math.ceil
local huge = math.huge
local math_type = math.type       -- nil before 5.3
local concat = table.concat
local sort = table.sort
local char = string.char
local byte = string.byte
local format = string.format
local rep = string.rep
local sub = string.sub
local gsub = string.gsub
local find = string.find
local match = string.match
local lower = string.lower
local os_time = os.time

local rules = require "clicktocall.provider_rules"
local EXACT = require("clicktocall.limits").exact_double -- 2^53

local _M = { _VERSION = require "clicktocall.version" }

local PAGE = rules.PAGE
local fmt_time, parse_time = rules.format_time, rules.parse_time
local id_key, key_less, key_incr = rules.id_key, rules.key_less, rules.key_incr
local json_string = json.encode

local DEFAULTS = {
  user_data = "4e2239c5-a6e6-4201-a072-8342e29c3ae3",
  balance = 6152,
  recorded = true,
  recording_size = 32768,
  recording_base = "http://mock-recordings",
  chunk_size = 16384,
  ids = "at_dial",
  listing_delay = 0,
}

local KNOWN_OPTIONS = {
  user_data = true, balance = true, secret = true, seats = true, clock = true, recorded = true,
  call_duration = true, recording_size = true, recording_base = true, chunk_size = true, ids = true,
  listing_delay = true,
}

local OPS = { bind_seat = true, dial = true, balance = true, records_page = true, download = true }
local API_OPS = { bind_seat = true, dial = true, balance = true, records_page = true }

-- fault name -> the ops it makes sense for (false: every op): the shared ones of rules.FAULTS, and two
-- that only a transport function can give (a timeout at once, a connection refused)
local FAULTS = { timeout = false, refused = false }
for name, ops in pairs(rules.FAULTS) do
  FAULTS[name] = ops ~= true and (ops == "api" and API_OPS or { [ops] = true })
end

local JSON_CT, HTML_CT = rules.JSON_CT, rules.HTML_CT

local mt = {}
mt.__index = mt

--------------------------------------------------------------------------
-- helpers: misuse, JSON, time, ids, base64
--------------------------------------------------------------------------

-- raised at the code that called the mock's method (`depth` more levels up from a helper)
local function misuse(fname, what, depth)
  error("clicktocall.mock: " .. fname .. ": " .. what, 3 + (depth or 0))
end

local function is_whole(v, min)
  return type(v) == "number" and v == v and v >= min and v < huge and floor(v) == v
end

-- a record field's JSON (nil and mock.null: null)
local function json_value(v)
  if v == nil then
    return "null"
  end
  return json.encode(v)
end

-- a request body: the decoded object or array, or nil
local function decode(s)
  if type(s) ~= "string" or s == "" then
    return nil
  end
  return (json.decode(s))
end

local to_epoch = rules.to_epoch

-- the id as a Lua value: a number while exact, else the digit string (as the client gives it back)
local function key_value(k)
  local n = tonumber(k)
  if math_type and math_type(n) == "integer" then
    return n
  end
  if n <= EXACT then
    return n
  end
  return k
end

-- a small number from the id, for the fields derived from it
local function key_small(k)
  return tonumber(sub(k, -9))
end

-- MINSTD: deterministic pseudo-random numbers, exact in doubles on every Lua
local function next_rand(x)
  return x * 16807 % 2147483647
end

local function seed_of(s)
  local h = 5381
  for i = 1, #s do
    h = (h * 33 + byte(s, i)) % 2147483647
  end
  return h == 0 and 1 or h
end

local function uuid_from(seed)
  local x, parts = seed, {}
  for i = 1, 8 do
    x = next_rand(x)
    parts[i] = format("%04x", x % 65536)
  end
  local h = concat(parts)
  return sub(h, 1, 8) .. "-" .. sub(h, 9, 12) .. "-4" .. sub(h, 14, 16) .. "-a" .. sub(h, 18, 20) .. "-"
    .. sub(h, 21, 32)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {}
    for j = 1, 4 do
      local v = floor(n / 64 ^ (4 - j)) % 64
      q[j] = sub(B64, v + 1, v + 1)
    end
    if not b then
      q[3], q[4] = "=", "="
    elseif not c then
      q[4] = "="
    end
    out[#out + 1] = concat(q)
  end
  return concat(out)
end

local function url_escape(s)
  return (gsub(s, "[^%w%._~%-]", function(c)
    return format("%%%02X", byte(c))
  end))
end

local function header(headers, name)
  if type(headers) ~= "table" then
    return nil
  end
  for k, v in pairs(headers) do
    if type(k) == "string" and lower(k) == name then
      return v
    end
  end
  return nil
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do
    c[k] = type(v) == "table" and copy(v) or v
  end
  return c
end

local function clear(t)
  for k in pairs(t) do
    t[k] = nil
  end
end

local function terr(kind, sent, message)
  return { kind = kind, sent = sent, message = "clicktocall.mock: " .. message }
end

--------------------------------------------------------------------------
-- records
--------------------------------------------------------------------------

local RECORD_FIELDS = {
  "id", "sessionId", "userData", "setingNbr", "direction", "callerNum", "calleeNum", "callEndTime",
  "callOutAnswerTime", "fwdAnswerTime", "recordFlag", "recordFileDownloadUrl", "duration", "callmin",
}
local IS_RECORD_FIELD = {}
for _, f in ipairs(RECORD_FIELDS) do
  IS_RECORD_FIELD[f] = true
end

-- a record as the provider writes it: known fields in a fixed order, then any others sorted
-- (made once: a record does not change after it was added)
local function record_json(entry)
  if entry.json then
    return entry.json
  end
  local rec = entry.rec
  local parts = { '"id":' .. entry.key }
  for i = 2, #RECORD_FIELDS do
    local f = RECORD_FIELDS[i]
    if rec[f] ~= nil then
      parts[#parts + 1] = '"' .. f .. '":' .. json_value(rec[f])
    end
  end
  local extra = {}
  for k in pairs(rec) do
    if type(k) == "string" and not IS_RECORD_FIELD[k] then
      extra[#extra + 1] = k
    end
  end
  sort(extra)
  for _, k in ipairs(extra) do
    parts[#parts + 1] = json_string(k) .. ":" .. json_value(rec[k])
  end
  entry.json = "{" .. concat(parts, ",") .. "}"
  return entry.json
end

local function recording_url(self, sid)
  return self._opts.recording_base .. "/" .. url_escape(sid) .. ".wav"
end

-- the index of the first record whose id is above `key` (#recs + 1 when none)
local function first_after(recs, key)
  local lo, hi = 1, #recs
  while lo <= hi do
    local mid = floor((lo + hi) / 2)
    if key_less(key, recs[mid].key) then
      hi = mid - 1
    else
      lo = mid + 1
    end
  end
  return lo
end

-- Adds a record (fields as the provider sends them, plus the entry's own bookkeeping).
local function add_record(self, entry)
  local rec = entry.rec
  rec.id = key_value(entry.key)
  if rec.recordFlag == "1" and rec.recordFileDownloadUrl == nil then
    rec.recordFileDownloadUrl = recording_url(self, rec.sessionId)
  elseif rec.recordFileDownloadUrl == false then
    rec.recordFileDownloadUrl = nil
  end
  self._recs[#self._recs + 1] = entry
  self._last_key = entry.key
  if type(rec.recordFileDownloadUrl) == "string" then
    self._by_url[match(rec.recordFileDownloadUrl, "^[^?#]*")] = entry
  end
  return entry
end

-- the delay before an entry is listed: its seed's, else new{}'s
local function delay_of(self, entry)
  return entry.delay or self._opts.listing_delay
end

-- ids = "at_hangup": the records now due get their ids, in the order they are listed (ties: as added)
local function settle(self)
  local pending = self._pending
  if #pending == 0 then
    return
  end
  local now, due, left = self:now(), {}, {}
  for _, e in ipairs(pending) do
    if now >= e.t_end + delay_of(self, e) then
      due[#due + 1] = e
    else
      left[#left + 1] = e
    end
  end
  sort(due, function(a, b)
    local ta, tb = a.t_end + delay_of(self, a), b.t_end + delay_of(self, b)
    if ta ~= tb then
      return ta < tb
    end
    return a.seq < b.seq
  end)
  self._pending = left
  for _, e in ipairs(due) do
    e.key = key_incr(self._last_key)
    add_record(self, e)
  end
end

-- an entry for a new record: listed (with an id) now, or pending until it is due (ids = "at_hangup")
local function place(self, entry)
  if self._opts.ids == "at_hangup" then
    self._seq = self._seq + 1
    entry.seq = self._seq
    self._pending[#self._pending + 1] = entry
    return entry
  end
  return add_record(self, entry)
end

-- at_hangup: a record's fields are derived from a provisional key until it gets its id
local function new_key(self)
  if self._opts.ids == "at_hangup" then
    return tostring(self._seq + 1)
  end
  return key_incr(self._last_key)
end

-- a new record's fields, all derived from its id and end time
local function make_record(key, sid, ud, t_end, dur, recorded)
  local rec = rules.record_fields(key_small(key), t_end, dur)
  rec.sessionId, rec.userData, rec.recordFlag = sid, ud, recorded and "1" or "0"
  return rec
end

-- waiting: the number is a provisional one (ids = "at_hangup"), as the simulator's
local function session_id(key, salt, waiting)
  local n = #key < 9 and tostring(rules.session_number(tonumber(key), waiting)) or key
  return uuid_from(seed_of(salt .. key)) .. "_" .. n
end

-- the recording's bytes: a WAV header, then noise that depends on the record
local function le32(n)
  return char(n % 256, floor(n / 256) % 256, floor(n / 65536) % 256, floor(n / 16777216) % 256)
end

local function recording_bytes(entry, size)
  local x, block = seed_of(entry.key .. "\0" .. tostring(entry.rec.sessionId)), {}
  for i = 1, 4096 do
    x = next_rand(x)
    block[i] = char(x % 256)
  end
  block = concat(block)
  local head = "RIFF" .. le32(size - 8) .. "WAVEfmt " .. le32(16) .. char(1, 0, 1, 0) .. le32(8000)
    .. le32(16000) .. char(2, 0, 16, 0) .. "data" .. le32(size - 44)
  if size < #head then
    head = ""
  end
  local body = head .. rep(block, ceil((size - #head) / #block))
  return sub(body, 1, size)
end

--------------------------------------------------------------------------
-- the provider's four calls (messages as the provider, and the simulator, write them)
--------------------------------------------------------------------------

-- places a call (the checks of rules.answer passed): its record, the balance charged
local function place_call(self, ud, seat, caller, callee)
  local cust = self._customers[ud]
  local refusal = rules.refuse_dial(cust.balance)
  if refusal then
    return nil, refusal
  end
  local key = new_key(self)
  local hangup = self._opts.ids == "at_hangup"
  local dur = self._opts.call_duration or rules.dial_duration(key_small(key))
  local now = self:now()
  local t_agent, t_customer, t_end = rules.dial_times(now, dur)
  local sid = session_id(key, hangup and "hangup:" or "dial:", hangup)
  local rec = make_record(key, sid, ud, t_end, dur, self._opts.recorded)
  rec.setingNbr, rec.callerNum, rec.calleeNum = seat, caller, callee
  rec.callOutAnswerTime, rec.fwdAnswerTime = fmt_time(t_agent), fmt_time(t_customer)
  place(self, { key = key, rec = rec, t_end = t_end, ud = ud })
  cust.balance = rules.charge(cust.balance, dur)
  self.dials = self.dials + 1
  return sid
end

-- the provider's store (see clicktocall.provider_rules) over the mock's tables
local function new_store(self)
  local store = {}
  function store.known(ud)
    return self._customers[ud] ~= nil
  end
  function store.bind(ud, seat, phone)
    self._customers[ud].seats[seat] = phone
    return true
  end
  function store.bound_phone(ud, seat)
    return self._customers[ud].seats[seat]
  end
  function store.balance(ud)
    return self._customers[ud].balance
  end
  function store.dial(ud, seat, caller, callee)
    return place_call(self, ud, seat, caller, callee)
  end
  function store.page(ud, after, t0, t1, limit, now)
    local recs, out = self._recs, {}
    for i = first_after(recs, after), #recs do
      local e = recs[i]
      if e.ud == ud and e.t_end >= t0 and e.t_end <= t1 and rules.listed(e.t_end, delay_of(self, e), now) then
        out[#out + 1] = record_json(e)
        if #out >= limit then
          break
        end
      end
    end
    return out
  end
  function store.stuck_record(key, ud, now)
    local rec = make_record(key, session_id(key, "stuck:"), ud, now, rules.seed_duration(key_small(key)), false)
    return record_json({ key = key, rec = rec })
  end
  function store.now()
    return self:now()
  end
  return store
end

--------------------------------------------------------------------------
-- the transport
--------------------------------------------------------------------------

-- Hands the body to request.sink in chunks (as a streaming transport does), or returns it whole.
local function respond(self, request, status, headers, body, deliver)
  if header(headers, "content-length") == nil then
    headers["content-length"] = tostring(#body)
  end
  local sink = request.sink
  if sink == nil then
    return { status = status, headers = headers, body = deliver and sub(body, 1, deliver) or body }
  end
  local last = deliver or #body
  local size = self._opts.chunk_size
  for i = 1, last, size do
    local j = i + size - 1
    if j > last then
      j = last
    end
    local ok, r1, r2 = pcall(sink, sub(body, i, j))
    if not ok then
      return nil, terr("protocol", true, "the response body sink raised an error: " .. tostring(r1))
    end
    if not r1 then
      if type(r2) == "table" and r2.kind then
        return nil, { kind = r2.kind, sent = true, message = tostring(r2.message) }
      end
      return nil, terr("protocol", true, "the response body sink failed: " .. tostring(r2))
    end
  end
  return { status = status, headers = headers, body = "" }
end

local function not_found(self, path)
  return 404, { ["content-type"] = JSON_CT }, rules.not_found_body(path, self:now())
end

local function serve_download(self, call, fault)
  if call.method ~= "GET" then
    return 405, { ["content-type"] = JSON_CT }, rules.METHOD_NOT_ALLOWED
  end
  local entry = self._by_url[call.bare_url]
  if not entry or entry.rec.recordFlag ~= "1" then
    return not_found(self, call.path)
  end
  if rules.expired(entry.t_end, self:now()) then
    return 410, { ["content-type"] = JSON_CT }, rules.gone_body(call.path, self:now())
  end
  local body = recording_bytes(entry, entry.size or self._opts.recording_size)
  local deliver
  if fault and fault.kind == "cut" then
    deliver = floor(#body / 2)
  end
  return 200, { ["content-type"] = "audio/wav", ["content-length"] = tostring(#body) }, body, deliver
end

local function serve(self, call, fault)
  if call.op == "download" then
    return serve_download(self, call, fault)
  end
  if not call.op then
    return not_found(self, call.path)
  end
  if call.method ~= "POST" then
    return 405, { ["content-type"] = JSON_CT }, rules.wrong_method_body(call.method)
  end
  local body = rules.answer(call.op, {
    authorization = header(call.headers, "authorization"), auth = self._auth, body = decode(call.raw),
    raw = call.raw, null = json.null, stuck = fault ~= nil and fault.kind == "stuck_ids",
  }, self._store)
  return 200, { ["content-type"] = JSON_CT }, body
end

local function take_fault(self, op)
  local q = op and self._faults[op]
  local f = q and q[1]
  if not f then
    return nil
  end
  f.left = f.left - 1
  if f.left <= 0 then
    table.remove(q, 1)
  end
  return f
end

local function handle(self, request)
  if type(request) ~= "table" or type(request.url) ~= "string" then
    return nil, terr("argument", false, "the request must be a table with a url")
  end
  if request.sink ~= nil and type(request.sink) ~= "function" then
    return nil, terr("argument", false, "the request sink must be a function")
  end
  settle(self)
  local url = request.url
  local bare = match(url, "^[^?#]*")
  local path = match(bare, "^%a[%w+.-]*://[^/]*(/.*)$") or "/"
  local op
  local base = self._opts.recording_base
  if self._by_url[bare] or sub(bare, 1, #base + 1) == base .. "/" then
    op = "download"
  else
    for p, name in pairs(rules.PATHS) do
      if sub(path, -#p) == p then
        op = name
        break
      end
    end
  end
  local raw = type(request.body) == "string" and request.body or nil
  local call = {
    op = op, method = request.method or "GET", url = url, bare_url = bare, path = path,
    headers = type(request.headers) == "table" and request.headers or {}, raw = raw or "",
  }
  local fault = take_fault(self, op)
  local log = self.requests
  log[#log + 1] = {
    op = op or "unknown", method = call.method, url = url, headers = copy(call.headers),
    body = decode(raw), raw_body = raw, fault = fault and fault.name, time = self:now(),
    timeout = request.timeout, connect_timeout = request.connect_timeout, max_body = request.max_body,
  }
  if fault then
    local kind = fault.kind
    if kind == "refused" then
      return nil, terr("network", false, "connection refused (injected fault)")
    elseif kind == "status" then
      local headers = { ["content-type"] = fault.body and JSON_CT or HTML_CT, ["retry-after"] = fault.retry_after }
      -- names as the test wrote them (a transport need not lower-case them); a given one replaces our default
      for k, v in pairs(fault.headers or {}) do
        headers[lower(k)] = nil
        headers[k] = v
      end
      return respond(self, request, fault.status, headers, fault.body or rules.status_page(fault.status))
    elseif kind == "custom" then
      -- the test's own answer; serve() gives the provider's real one (and does what it does: places a dial)
      local served = {}
      local function serve_it()
        local status, headers, body, deliver = serve(self, call, nil)
        local res, err = respond(self, request, status, headers, body, deliver)
        if res then
          served[res] = true
        end
        return res, err
      end
      local ok, res, err = pcall(fault.fn, request, serve_it)
      if not ok then
        return nil, terr("network", true, "the fault function raised an error: " .. tostring(res))
      end
      if request.sink and type(res) == "table" and not served[res] and type(res.status) == "number"
        and type(res.body) == "string" then
        -- an answer built by the test reaches a sink as a real transport's would: in chunks, body ""
        local headers = {}
        for k, v in pairs(type(res.headers) == "table" and res.headers or {}) do
          headers[k] = v
        end
        return respond(self, request, res.status, headers, res.body)
      end
      return res, err
    elseif kind == "bad_json" then
      return respond(self, request, 200, { ["content-type"] = HTML_CT }, rules.BAD_JSON_BODY)
    elseif kind == "api_error" then
      return respond(self, request, 200, { ["content-type"] = JSON_CT }, rules.err_body(fault.message))
    elseif kind == "no_meta" then
      return respond(self, request, 200, { ["content-type"] = JSON_CT }, rules.NO_META_BODY)
    elseif kind == "wrong_data" then
      return respond(self, request, 200, { ["content-type"] = JSON_CT }, rules.wrong_data_body(op))
    end
  end
  local status, headers, body, deliver = serve(self, call, fault)
  if fault and fault.kind == "truncated" then
    body = rules.truncate(body)
    headers["content-length"] = tostring(#body)
  end
  if fault and fault.kind == "timeout" then
    return nil, terr("timeout", true, "the request timed out after it was sent (injected fault)")
  elseif fault and fault.kind == "reset_after_send" then
    return nil, terr("network", true, "connection reset by peer after the request was sent (injected fault)")
  end
  return respond(self, request, status, headers, body, deliver)
end

--------------------------------------------------------------------------
-- the provider object
--------------------------------------------------------------------------

local function customer(self, ud, fname)
  ud = ud == nil and self._opts.user_data or ud
  local c = self._customers[ud]
  if not c then
    misuse(fname, "unknown user_data " .. tostring(ud) .. " (add it with provider:add_customer)", 1)
  end
  return c
end

local function check_phone(fname, seat, phone)
  if type(seat) ~= "string" or seat == "" then
    misuse(fname, "a seat must be a non-empty string", 1)
  end
  if type(phone) ~= "string" or not rules.valid_phone(phone) then
    misuse(fname, "the phone of seat " .. seat .. " must be in the provider's form, such as \"+8613500000002\"", 1)
  end
end

local function init_state(self)
  local o = self._opts
  self._customers = {}
  self._recs = {}
  self._by_url = {}
  self._faults = {}
  self._last_key = "0"
  self._pending = {}
  self._seq = 0
  self._offset = 0
  self.dials = 0
  clear(self.requests)
  clear(self.slept)
  self._customers[o.user_data] = { balance = o.balance, seats = {} }
  for seat, phone in pairs(o.seats or {}) do
    self._customers[o.user_data].seats[seat] = phone
  end
end

--- mock.new{ options } -> provider (raises on a bad option)
function _M.new(o)
  if o == nil then
    o = {}
  end
  if type(o) ~= "table" then
    misuse("new", "options table expected, got " .. type(o))
  end
  local opts = {}
  for k, v in pairs(o) do
    if not KNOWN_OPTIONS[k] then
      misuse("new", "unknown option '" .. tostring(k) .. "'")
    end
    opts[k] = v
  end
  for k, v in pairs(DEFAULTS) do
    if opts[k] == nil then
      opts[k] = v
    end
  end
  if type(opts.user_data) ~= "string" or opts.user_data == "" then
    misuse("new", "user_data must be a non-empty string")
  end
  if type(opts.balance) ~= "number" then
    misuse("new", "balance must be a number")
  end
  if opts.secret ~= nil and (type(opts.secret) ~= "string" or opts.secret == "") then
    misuse("new", "secret must be a non-empty string")
  end
  if opts.seats ~= nil then
    if type(opts.seats) ~= "table" then
      misuse("new", "seats must be a table { [seat] = phone }")
    end
    for seat, phone in pairs(opts.seats) do
      check_phone("new", seat, phone)
    end
  end
  if opts.clock ~= nil and type(opts.clock) ~= "function" then
    misuse("new", "clock must be a function returning Unix seconds")
  end
  if type(opts.recorded) ~= "boolean" then
    misuse("new", "recorded must be a boolean")
  end
  if opts.call_duration ~= nil and not is_whole(opts.call_duration, 1) then
    misuse("new", "call_duration must be a positive whole number of seconds")
  end
  if opts.ids ~= "at_dial" and opts.ids ~= "at_hangup" then
    misuse("new", "ids must be \"at_dial\" or \"at_hangup\"")
  end
  if not is_whole(opts.listing_delay, 0) then
    misuse("new", "listing_delay must be a whole number of seconds")
  end
  if not is_whole(opts.recording_size, 0) or not is_whole(opts.chunk_size, 1) then
    misuse("new", "recording_size and chunk_size must be whole numbers of bytes (chunk_size at least 1)")
  end
  if type(opts.recording_base) ~= "string" or not match(opts.recording_base, "^https?://[^/%s]+") then
    misuse("new", "recording_base must be an http:// or https:// URL")
  end
  opts.recording_base = gsub(opts.recording_base, "/+$", "")
  opts.clock = opts.clock or os_time

  local self = setmetatable({ requests = {}, slept = {}, _opts = opts }, mt)
  self._auth = opts.secret and base64(opts.secret)
  self._store = new_store(self)
  init_state(self)
  -- closures, so that they can be passed around as plain functions
  self.transport = function(request)
    local ok, res, err = pcall(handle, self, request)
    if not ok then
      return nil, terr("network", true, "internal error: " .. tostring(res))
    end
    return res, err
  end
  self.sleep = function(seconds)
    self.slept[#self.slept + 1] = seconds
    if type(seconds) == "number" and seconds > 0 then
      self._offset = self._offset + seconds
    end
  end
  return self
end

--- provider:now() -> the provider's clock, Unix seconds
function mt:now()
  return floor(self._opts.clock() + self._offset)
end

--- provider:advance(seconds): move the provider's clock forward (recordings expire, windows move)
function mt:advance(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds then
    misuse("advance", "seconds must be a number")
  end
  self._offset = self._offset + seconds
  return self
end

--- provider:reset(): back to the state right after new{} (records, seats, balances, faults, log, clock)
function mt:reset()
  init_state(self)
  return self
end

--- provider:fail(op, fault [, times]) -> provider
-- op: "bind_seat" | "dial" | "balance" | "records_page" | "download"
-- fault: an HTTP status (429 carries Retry-After: 1), { status =, retry_after = } (false: no header),
--   "timeout" / "reset_after_send" (the request is served, a dial IS placed, but the caller gets a
--   timeout / network error with sent = true), "refused" (nothing reaches the provider, sent = false),
--   "bad_json" (200 with an HTML page), "api_error" or { api_error = message } (meta.success false),
--   "no_meta" (200, a JSON object without the envelope), "wrong_data" (meta.success true, data of the
--   wrong type), "truncated" (the answer cut to half, Content-Length saying so), "stuck_ids" (records_page:
--   a full page whose ids do not pass maxId), "cut" (download: fewer bytes than Content-Length). Status,
--   bad_json, api_error, no_meta and wrong_data answer without serving the request. The names are the
--   simulator's too (POST /_sim/fault {kind =}).
--   Any other answer: { status =, body =, headers = } (that exact response, header names as written), or
--   function(request, serve) -> response | nil, err, whose return is the answer; serve() returns the
--   provider's real answer (serving the request, so a dial is placed), to pass on, change or drop.
-- times: how many requests in a row get it (default 1; math.huge: all). Faults of one op queue up in order.
function mt:fail(op, fault, times)
  if not OPS[op] then
    misuse("fail", "op must be \"bind_seat\", \"dial\", \"balance\", \"records_page\" or \"download\", got "
      .. tostring(op))
  end
  if times == nil then
    times = 1
  end
  if not (times == huge or is_whole(times, 1)) then
    misuse("fail", "times must be a positive whole number or math.huge")
  end
  local f
  if type(fault) == "number" or (type(fault) == "table" and fault.status ~= nil) then
    local status = type(fault) == "number" and fault or fault.status
    if not is_whole(status, 100) or status > 599 then
      misuse("fail", "an HTTP status must be a whole number from 100 to 599")
    end
    local ra = status == 429 and "1" or nil
    f = { kind = "status", status = status, name = tostring(status) }
    if type(fault) == "table" then
      if fault.retry_after ~= nil then
        ra = fault.retry_after and tostring(fault.retry_after) or nil
      end
      if (fault.body ~= nil and type(fault.body) ~= "string")
        or (fault.headers ~= nil and type(fault.headers) ~= "table") then
        misuse("fail", "a status fault's body must be a string and its headers a table")
      end
      f.body, f.headers = fault.body, fault.headers
    end
    f.retry_after = ra
  elseif type(fault) == "function" then
    f = { kind = "custom", fn = fault, name = "function" }
  elseif type(fault) == "table" and fault.api_error ~= nil then
    f = { kind = "api_error", message = tostring(fault.api_error) }
  elseif type(fault) == "string" and FAULTS[fault] ~= nil then
    f = { kind = fault, message = rules.MSG.busy }
  else
    misuse("fail", "unknown fault " .. tostring(fault) .. " (a status number, \"timeout\", \"reset_after_send\", "
      .. "\"refused\", \"bad_json\", \"truncated\", \"no_meta\", \"wrong_data\", \"api_error\", \"stuck_ids\", "
      .. "\"cut\")")
  end
  local only = FAULTS[f.kind]
  if only and not only[op] then
    misuse("fail", "fault \"" .. f.kind .. "\" does not apply to " .. op)
  end
  f.name = f.name or f.kind
  f.left = times
  local q = self._faults[op]
  if not q then
    q = {}
    self._faults[op] = q
  end
  q[#q + 1] = f
  return self
end

--- provider:clear_faults([op]): drop the queued faults (of one op, or all)
function mt:clear_faults(op)
  if op == nil then
    clear(self._faults)
  else
    self._faults[op] = nil
  end
  return self
end

--- provider:pending_faults([op]) -> how many faulty answers are still queued
function mt:pending_faults(op)
  local n = 0
  for name, q in pairs(self._faults) do
    if op == nil or op == name then
      for _, f in ipairs(q) do
        n = n + f.left
      end
    end
  end
  return n
end

--- provider:seed_records(n [, opts]) or provider:seed_records{ record, ... } -> the new records (copies)
-- n records: ids after the last one, callEndTime spread evenly over [opts.start_time, opts.end_time]
--   (Unix seconds or "yyyy-MM-dd HH:mm:ss" UTC+8; default the 24 hours before now), opts.recorded
--   (true, false or function(i) -> boolean; default true), opts.user_data (default the known customer),
--   opts.recording_size (bytes of these records' recordings; default new{}'s).
-- a list: each record's given fields are kept (id, if given, must be above the last one; it may be a
--   string of digits past 2^53; callEndTime may be Unix seconds), the rest filled in;
--   recordFileDownloadUrl = false leaves a recorded call without a URL.
-- Either form: opts.listing_delay (these records are listed that many seconds after their callEndTime;
--   default new{}'s). With ids = "at_hangup" a record gets its id once it is listed: the copies returned
--   of records not listed yet have no id (find them later by sessionId), and an id cannot be given.
function mt:seed_records(what, opts)
  local out = {}
  opts = opts or {}
  if type(opts) ~= "table" then
    misuse("seed_records", "opts must be a table")
  end
  local delay = opts.listing_delay
  if delay ~= nil and not is_whole(delay, 0) then
    misuse("seed_records", "listing_delay must be a whole number of seconds")
  end
  local hangup = self._opts.ids == "at_hangup"
  settle(self)
  if type(what) == "number" then
    if not is_whole(what, 0) then
      misuse("seed_records", "the count must be a whole number")
    end
    local now = self:now()
    local t0 = opts.start_time == nil and now - 86400 or to_epoch(opts.start_time)
    local t1 = opts.end_time == nil and now - 60 or to_epoch(opts.end_time)
    if not t0 or not t1 or t1 < t0 then
      misuse("seed_records", "start_time and end_time must be Unix seconds or \"yyyy-MM-dd HH:mm:ss\", start first")
    end
    local ud = opts.user_data or self._opts.user_data
    if not self._customers[ud] then
      self:add_customer(ud)
    end
    local size = opts.recording_size
    if size ~= nil and not is_whole(size, 0) then
      misuse("seed_records", "recording_size must be a whole number of bytes")
    end
    local recorded = opts.recorded
    if recorded == nil then
      recorded = true
    end
    for i = 1, what do
      local key = new_key(self)
      local t_end = what == 1 and t0 or t0 + floor((i - 1) * (t1 - t0) / (what - 1))
      local rec_on = recorded
      if type(recorded) == "function" then
        rec_on = recorded(i)
      end
      local dur = rules.seed_duration(key_small(key))
      local sid = session_id(key, hangup and "hangup-seed:" or "seed:", hangup)
      local rec = make_record(key, sid, ud, t_end, dur, rec_on)
      out[i] = place(self, { key = key, rec = rec, t_end = t_end, ud = ud, size = size, delay = delay }).rec
    end
    settle(self)
    for i = 1, #out do
      out[i] = copy(out[i])
    end
    return out
  end
  if type(what) ~= "table" then
    misuse("seed_records", "a count or a list of records expected, got " .. type(what))
  end
  for i, given in ipairs(what) do
    if type(given) ~= "table" then
      misuse("seed_records", "record #" .. i .. " is not a table")
    end
    local key
    if given.id ~= nil and hangup then
      misuse("seed_records", "record #" .. i .. ": with ids = \"at_hangup\" the provider gives the id")
    elseif given.id ~= nil then
      key = id_key(given.id)
      if not key or not key_less(self._last_key, key) then
        misuse("seed_records", "record #" .. i .. ": id must be a whole number above the last id "
          .. self._last_key)
      end
    else
      key = new_key(self)
    end
    local t_end = self:now()
    if given.callEndTime ~= nil then
      t_end = to_epoch(given.callEndTime)
      if not t_end then
        misuse("seed_records", "record #" .. i .. ": callEndTime must be Unix seconds or \"yyyy-MM-dd HH:mm:ss\"")
      end
    end
    local ud = given.userData or self._opts.user_data
    if not self._customers[ud] then
      self:add_customer(ud)
    end
    local dur = tonumber(given.duration) or rules.seed_duration(key_small(key))
    local rec = make_record(key, given.sessionId or session_id(key, hangup and "hangup-seed:" or "seed:", hangup), ud,
                            t_end, dur, given.recordFlag == nil or given.recordFlag == "1")
    for k, v in pairs(given) do
      if k ~= "id" and k ~= "callEndTime" then
        rec[k] = v
      end
    end
    out[i] = place(self, { key = key, rec = rec, t_end = t_end, ud = ud, delay = delay }).rec
  end
  settle(self)
  for i = 1, #out do
    out[i] = copy(out[i])
  end
  return out
end

--- provider:records([user_data]) -> copies of the records, by id (all customers' when user_data is nil)
function mt:records(ud)
  settle(self)
  local out = {}
  for _, e in ipairs(self._recs) do
    if ud == nil or e.ud == ud then
      out[#out + 1] = copy(e.rec)
    end
  end
  return out
end

--- provider:recording(record | url | sessionId) -> the bytes a download of it returns, or nil
function mt:recording(what)
  local url = what
  if type(what) == "table" then
    url = what.recordFileDownloadUrl
  elseif type(what) == "string" and not find(what, "://", 1, true) then
    url = recording_url(self, what)
  end
  settle(self)
  local entry = type(url) == "string" and self._by_url[match(url, "^[^?#]*")]
  if not entry then
    return nil
  end
  return recording_bytes(entry, entry.size or self._opts.recording_size)
end

--- provider:add_customer(user_data [, balance]): another known customer (default balance: new{}'s)
function mt:add_customer(ud, balance)
  if type(ud) ~= "string" or ud == "" then
    misuse("add_customer", "user_data must be a non-empty string")
  end
  if balance ~= nil and type(balance) ~= "number" then
    misuse("add_customer", "balance must be a number")
  end
  local c = self._customers[ud]
  if not c then
    c = { balance = self._opts.balance, seats = {} }
    self._customers[ud] = c
  end
  if balance ~= nil then
    c.balance = balance
  end
  return self
end

--- provider:balance([user_data]) -> the remaining talk time
function mt:balance(ud)
  return customer(self, ud, "balance").balance
end

--- provider:set_balance(n [, user_data])
function mt:set_balance(n, ud)
  if type(n) ~= "number" then
    misuse("set_balance", "balance must be a number")
  end
  customer(self, ud, "set_balance").balance = n
  return self
end

--- provider:bind(seat, phone [, user_data]): bind a seat without a request (phone as "+86...")
function mt:bind(seat, phone, ud)
  check_phone("bind", seat, phone)
  customer(self, ud, "bind").seats[seat] = phone
  return self
end

--- provider:bound_phone(seat [, user_data]) -> the phone bound to the seat, or nil
function mt:bound_phone(seat, ud)
  return customer(self, ud, "bound_phone").seats[seat]
end

--- provider:count([op]) -> how many requests (of that op) the provider has seen
function mt:count(op)
  if op == nil then
    return #self.requests
  end
  local n = 0
  for _, r in ipairs(self.requests) do
    if r.op == op then
      n = n + 1
    end
  end
  return n
end

--- provider:last_request([op]) -> the newest logged request (of that op), or nil
function mt:last_request(op)
  local log = self.requests
  for i = #log, 1, -1 do
    if op == nil or log[i].op == op then
      return log[i]
    end
  end
  return nil
end

function mt.__tostring(self)
  return format("clicktocall.mock (%d records, %d requests)", #self._recs, #self.requests)
end

-- for specs and tools: the provider's clock format and the record page size
_M.format_time = fmt_time
_M.parse_time = parse_time
_M.PAGE_SIZE = PAGE
_M.null = json.null -- a record field seeded with it is sent as JSON null
_M.RECORDING_TTL = rules.RECORDING_TTL

return _M
