-- One table of provider scenarios, run through clicktocall.mock (its transport function) and through the
-- simulator (real libcurl, a fresh connection per request), with the answers compared: status, the decoded
-- body, Content-Type and Retry-After. So the two cannot drift apart again.
--
-- What legitimately differs is normalized, and only that:
--   - a sessionId's UUID part (the mock derives it from a seed, the simulator from md5): checked for its form,
--     then written "<uuid>"; its number (300000000 + id) is compared;
--   - a recording's URL (the mock's host vs the simulator's /recordings/): checked to end in its own
--     "<sessionId>.wav"; a 404/410 page's path: only its last segment; its timestamp: checked to parse;
--   - the times of a record made now (a dial, a stuck_ids page): written relative to its callEndTime (the two
--     backends may place them in different seconds);
--   - a recording's bytes (generated differently): only the size and the RIFF/WAVE marks.
-- Ids are the same: the mock is started with a hidden record at the simulator's last id (the simulator's
-- ids keep growing across resets), so the fields derived from an id match too.
local sim = require "spec.helpers.sim"
local mock = require "clicktocall.mock"
local core = require "clicktocall.core"
local cjson = require("cjson").new()

local UD = sim.USER_DATA
local AUTH = core.base64(sim.SECRET)
local PATH = { bind_seat = "/management/add/setingphone", dial = "/rest/voiceCall/api",
               balance = "/management/customer/isallow", records_page = "/call/record/voice" }
local WINDOW_START, WINDOW_END = "2000-01-01 00:00:00", "2099-12-31 23:59:59"
local DUR = 30            -- every dialled call talks this long (both backends), so balances compare
local WAV = 8044          -- the simulator's default recording; the mock is told this size
local LAST = {}           -- in a maxId: the last id of the page answered before
local NONE = {}           -- in page{}: leave the field out
local NOW = os.time()
local DAY = 86400

-- the four calls' good bodies
local BIND = { userData = UD, setingNbr = "PP1", userPhone = "+8613500000002" }
local DIAL = { userData = UD, setingNbr = "PP1", callerNbr = "+8613500000002", calleeNbr = "+8613918000010" }
local BAL = { userData = UD }
local function page(over)
  local b = { userData = UD, starTime = WINDOW_START, endTime = WINDOW_END, maxId = 0 }
  for k, v in pairs(over or {}) do
    if v == NONE then b[k] = nil else b[k] = v end
  end
  return b
end
local function with(t, k, v)
  local c = {}
  for a, b in pairs(t) do c[a] = b end
  c[k] = v
  return c
end

local function times(n, from, step)
  local out = {}
  for i = 1, n do out[i] = from + (i - 1) * step end
  return out
end

-- Steps: { "call", op, body (a table, or the raw text), auth = (default the right one; false: none),
-- method = }, { "download", i } (the i-th record of the last page), { "get", path },
-- { "seed", times (Unix seconds, or function(now) -> them, for times near the moment the step runs), opts },
-- { "balance", n }, { "advance", seconds }, { "fault", op, kind, extra }
local SCENARIOS = {
  { "four good calls, then the dial's record and its recording", {
    { "call", "bind_seat", BIND }, { "call", "balance", BAL }, { "call", "dial", DIAL },
    { "call", "balance", BAL }, { "call", "records_page", page() }, { "download", 1 },
  } },
  { "a dial without Authorization is accepted", {
    { "call", "bind_seat", BIND }, { "call", "dial", DIAL, auth = false },
  } },
  { "rebinding a seat replaces its phone", {
    { "call", "bind_seat", BIND }, { "call", "bind_seat", with(BIND, "userPhone", "+8613500000007") },
    { "call", "dial", DIAL }, { "call", "dial", with(DIAL, "callerNbr", "+8613500000007") },
  } },
  { "refusals: Authorization", {
    { "call", "bind_seat", BIND, auth = false }, { "call", "bind_seat", BIND, auth = "d3Jvbmc=" },
    { "call", "balance", BAL, auth = false }, { "call", "records_page", page(), auth = "bad" },
    { "call", "bind_seat", BIND }, { "call", "dial", DIAL, auth = "bad" },
  } },
  { "refusals: the body", {
    { "call", "balance", "not json" }, { "call", "balance", "[1,2]" }, { "call", "balance", "" },
    { "call", "bind_seat", '{"userData":5,"setingNbr":{},"userPhone":1e999}' },
    { "call", "bind_seat", '{"userData":null,"setingNbr":"PP1","userPhone":"+8613500000002"}' },
    { "call", "balance", "{}" }, { "call", "balance", { userData = "" } },
  } },
  { "refusals: missing and invalid fields", {
    { "call", "bind_seat", with(BIND, "userPhone", nil) },
    { "call", "bind_seat", with(BIND, "userPhone", "13500000002") },
    { "call", "bind_seat", with(BIND, "userPhone", "+86135000000021234567890") },
    { "call", "bind_seat", BIND }, { "call", "dial", with(DIAL, "calleeNbr", "13918000010") },
    { "call", "dial", with(DIAL, "setingNbr", nil) }, { "call", "dial", with(DIAL, "callerNbr", 8613500000002) },
    { "call", "records_page", page { maxId = "abc" } }, { "call", "records_page", page { maxId = true } },
    { "call", "records_page", page { starTime = "2024-13-01 00:00:00" } },
    { "call", "records_page", page { endTime = "2024-02-30 00:00:00" } },
    { "call", "records_page", page { starTime = "1899-12-31 23:59:59" } },
    { "call", "records_page", page { endTime = NONE } },
  } },
  { "refusals: unknown customer, unbound seat, wrong caller, no balance", {
    { "call", "bind_seat", with(BIND, "userData", "nobody") }, { "call", "balance", { userData = "nobody" } },
    { "call", "records_page", page { userData = "nobody" } }, { "call", "dial", with(DIAL, "userData", "nobody") },
    { "call", "dial", DIAL }, { "call", "bind_seat", BIND },
    { "call", "dial", with(DIAL, "callerNbr", "+8613500000003") },
    { "balance", 0 }, { "call", "dial", DIAL }, { "call", "balance", BAL }, { "balance", 1 }, { "call", "dial", DIAL },
    { "call", "balance", BAL },
  } },
  { "other methods and paths", {
    { "call", "balance", BAL, method = "GET" }, { "get", "/no/such/path" },
  } },
  { "paging: 250 records by maxId, a window, and cursors given as strings", {
    { "seed", times(250, NOW - 2 * DAY, 600) },
    { "call", "records_page", page() }, { "call", "records_page", page { maxId = LAST } },
    { "call", "records_page", page { maxId = LAST } }, { "call", "records_page", page { maxId = LAST } },
    { "call", "records_page", page { starTime = os.date("!%Y-%m-%d %H:%M:%S", NOW - DAY + 8 * 3600),
                                     endTime = os.date("!%Y-%m-%d %H:%M:%S", NOW - DAY + 3 * 3600 + 8 * 3600) } },
    { "call", "records_page", page { maxId = -5 } }, { "call", "records_page", page { maxId = 1.5 } },
    { "call", "records_page", page { starTime = WINDOW_END, endTime = WINDOW_START } },
  } },
  { "paging past 2^53", {
    { "seed", times(3, NOW - DAY, 60) },
    { "call", "records_page", '{"userData":"' .. UD .. '","starTime":"' .. WINDOW_START .. '","endTime":"'
        .. WINDOW_END .. '","maxId":9007199254740993}' },
    { "call", "records_page", page { maxId = "9007199254740992" } },
    { "call", "records_page", page { maxId = 1e300 } },
    { "call", "records_page", page { maxId = "9223372036854775807" } },
  } },
  { "recordings: 404, then 410 seven days after the call", {
    { "seed", function(now) return { now - 7 * DAY + 120, now - 60 } end }, { "call", "records_page", page() },
    { "download", 1 }, { "download", 2 },
    { "get", "/recordings/00000000-0000-4000-a000-000000000000_300000001.wav" },
    { "advance", 240 }, { "download", 1 }, { "download", 2 },
  } },
  { "listing_delay: a record is listed once its callEndTime + delay has come", {
    { "seed", function(now) return { now - 100, now - 50 } end, { listing_delay = 80 } },
    { "call", "records_page", page() },
    { "advance", 40 }, { "call", "records_page", page() },
  } },
  { "faults: status, bad_json, truncated, no_meta, wrong_data, api_error", {
    { "fault", "balance", "status", { status = 503, retry_after = 7 } }, { "call", "balance", BAL },
    { "fault", "balance", "bad_json" }, { "call", "balance", BAL },
    { "fault", "balance", "truncated" }, { "call", "balance", BAL },
    { "fault", "balance", "no_meta" }, { "call", "balance", BAL },
    { "fault", "records_page", "wrong_data" }, { "call", "records_page", page() },
    { "fault", "dial", "wrong_data" }, { "call", "dial", DIAL },
    { "fault", "bind_seat", "wrong_data" }, { "call", "bind_seat", BIND },
    { "fault", "balance", "wrong_data" }, { "call", "balance", BAL },
    { "fault", "balance", "api_error", { message = "系统维护中" } }, { "call", "balance", BAL },
    { "call", "balance", BAL },
  } },
  { "faults: stuck_ids", {
    { "seed", times(5, NOW - DAY, 60) },
    { "fault", "records_page", "stuck_ids" }, { "call", "records_page", page { maxId = 150 } },
    { "fault", "records_page", "stuck_ids" }, { "call", "records_page", page { maxId = 7 } },
    { "call", "records_page", page() },
  } },
  { "faults: reset_after_send places the dial; cut sends half the recording", {
    { "call", "bind_seat", BIND }, { "fault", "dial", "reset_after_send" }, { "call", "dial", DIAL },
    { "call", "records_page", page() }, { "call", "balance", BAL },
    { "fault", "download", "cut" }, { "download", 1 }, { "download", 1 },
    { "fault", "balance", "reset_after_send" }, { "call", "balance", BAL },
  } },
  { "ids at_hangup: a record gets its id when it is listed", ids = "at_hangup", {
    { "call", "bind_seat", BIND }, { "call", "dial", DIAL }, { "advance", 5 },
    { "call", "dial", with(DIAL, "calleeNbr", "+8613918000011") },
    { "call", "records_page", page() }, { "advance", DUR + 20 }, { "call", "records_page", page() },
  } },
  { "ids at_hangup with a listing delay", ids = "at_hangup", listing_delay = 60, {
    { "call", "bind_seat", BIND }, { "call", "dial", DIAL }, { "advance", DUR + 20 },
    { "call", "records_page", page() }, { "advance", 60 }, { "call", "records_page", page() },
  } },
  { "ids at_dial with a listing delay", listing_delay = 60, {
    { "call", "bind_seat", BIND }, { "call", "dial", DIAL }, { "advance", DUR + 20 },
    { "call", "records_page", page() }, { "advance", 60 }, { "call", "records_page", page() },
  } },
}

--------------------------------------------------------------------------
-- the two backends
--------------------------------------------------------------------------

local function encode_body(body)
  if type(body) == "string" then return body end
  return cjson.encode(body)
end

local function headers_for(auth)
  local h = { ["Content-Type"] = "application/json" }
  if auth ~= false then h.Authorization = auth or AUTH end
  return h
end

-- the mock: a new provider per scenario, with the simulator's last id as a hidden record
local function mock_backend(sc, last_id)
  local p = mock.new { user_data = UD, secret = sim.SECRET, balance = 6152, call_duration = DUR,
                       recording_size = WAV, ids = sc.ids, listing_delay = sc.listing_delay }
  if last_id > 0 and sc.ids ~= "at_hangup" then
    p:seed_records({ { id = last_id, userData = "conformance-hidden", callEndTime = 0 } })
  end
  local b = { name = "mock", provider = p }
  function b.send(req) return p.transport(req) end
  function b.url(path) return "http://mock" .. path end
  function b.recording_url(path) return "http://mock-recordings" .. path:gsub("^/recordings", "") end
  function b.seed(ts, opts)
    local list = {}
    for i, t in ipairs(ts) do list[i] = { callEndTime = t } end
    p:seed_records(list, opts)
  end
  function b.balance(n) p:set_balance(n) end
  function b.advance(s) p:advance(s) end
  function b.fault(op, kind, extra)
    if kind == "status" then
      p:fail(op, { status = extra.status, retry_after = extra.retry_after })
    elseif kind == "api_error" then
      p:fail(op, { api_error = extra.message })
    else
      p:fail(op, kind)
    end
  end
  return b
end

-- the simulator: reset, options as the scenario asks
local function sim_backend(s, sc)
  s:reset()
  s:options { ids = sc.ids or "at_dial", listing_delay = sc.listing_delay or 0, dial_duration = DUR,
              recording_bytes = cjson.null }
  s:post("/_sim/clock", { offset_seconds = 0 })
  local offset = 0
  local b = { name = "simulator", s = s }
  function b.send(req)
    -- a fresh connection each time: libcurl sends again on a new connection when a reused one is closed
    -- without an answer, which would hide reset_after_send
    local t = core.curl_transport()
    local res, err = t:perform(req)
    t:close()
    return res, err
  end
  function b.url(path) return s.base_url .. path end
  function b.recording_url(path) return s.base_url .. path end
  function b.seed(ts, opts)
    s:seed { times = ts, recorded = true, listing_delay = opts and opts.listing_delay }
  end
  function b.balance(n) s:post("/_sim/balance", { balance = n }) end
  function b.advance(sec)
    offset = offset + sec
    s:post("/_sim/clock", { offset_seconds = offset })
  end
  function b.fault(op, kind, extra)
    local f = { path = op == "download" and "/recordings/*" or PATH[op], kind = kind }
    for k, v in pairs(extra or {}) do f[k] = v end
    s:fault(f)
  end
  return b
end

--------------------------------------------------------------------------
-- normalizing an answer
--------------------------------------------------------------------------

local function header(res, name)
  for k, v in pairs(res.headers or {}) do
    if k:lower() == name then return v end
  end
end

local SID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-a%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x_(%d+)$"

local function norm_sid(sid)
  local n = type(sid) == "string" and sid:match(SID)
  assert(n, "not a sessionId: " .. tostring(sid))
  return "<uuid>_" .. n
end

local function parse_time(s)
  return assert(mock.parse_time(s), "not a provider time: " .. tostring(s))
end

local function norm_record(r)
  local out = {}
  for k, v in pairs(r) do out[k] = v end
  out.sessionId = norm_sid(r.sessionId)
  if r.recordFileDownloadUrl ~= nil then
    local tail = "/" .. r.sessionId .. ".wav"
    assert(r.recordFileDownloadUrl:sub(-#tail) == tail, "recording URL " .. r.recordFileDownloadUrl)
    out.recordFileDownloadUrl = "<recordings>/" .. out.sessionId .. ".wav"
  end
  local t_end = parse_time(r.callEndTime)
  if math.abs(t_end - os.time()) < DAY then
    -- made now: its times relative to its end
    out.callEndTime = "<end>"
    out.callOutAnswerTime = "<end - " .. (t_end - parse_time(r.callOutAnswerTime)) .. ">"
    out.fwdAnswerTime = "<end - " .. (t_end - parse_time(r.fwdAnswerTime)) .. ">"
  end
  return out
end

local function norm_json(v)
  if type(v) ~= "table" then return v end
  if type(v.timestamp) == "string" then
    parse_time(v.timestamp)
    v.timestamp = "<now>"
    local name = v.path and v.path:match("[^/]*$")
    local sid = name and name:match("^(.*)%.wav$")
    v.path = sid and sid:match(SID) and norm_sid(sid) .. ".wav" or name
  end
  if type(v.data) == "string" and v.data:match(SID) then
    v.data = norm_sid(v.data)
  elseif type(v.data) == "table" then
    for i, r in ipairs(v.data) do v.data[i] = norm_record(r) end
  end
  return v
end

-- -> the comparable outcome, and the last page's records (raw) when it was one
local function outcome(res, err)
  if not res then
    local cut = type(err) == "table" and tostring(err.message):find("remaining", 1, true) ~= nil
    if cut then return { cut_short = true } end
    return { error = type(err) == "table" and err.kind or tostring(err), sent = type(err) == "table" and err.sent }
  end
  local o = { status = res.status, content_type = header(res, "content-type"),
              retry_after = header(res, "retry-after") }
  local len = tonumber(header(res, "content-length"))
  if len and #res.body < len then return { cut_short = true } end
  if (o.content_type or ""):find("audio/wav", 1, true) then
    o.bytes = #res.body
    o.marks = res.body:sub(1, 4) .. res.body:sub(9, 12)
    return o
  end
  local ok, v = pcall(cjson.decode, res.body)
  if ok and type(v) == "table" then
    local records
    if type(v.data) == "table" then
      records = {}
      for i, r in ipairs(v.data) do records[i] = r end -- as answered: norm_json replaces the entries
    end
    o.body = norm_json(v)
    return o, records
  end
  o.text = res.body
  return o
end

-- runs a scenario's steps on one backend -> the list of outcomes
local function run(b, steps)
  local out, last_page = {}, {}
  for i, st in ipairs(steps) do
    local kind = st[1]
    local o
    if kind == "call" then
      local body = st[3]
      if type(body) == "table" and body.maxId == LAST then
        body = with(body, "maxId", last_page[#last_page] and last_page[#last_page].id or 0)
      end
      local records
      o, records = outcome(b.send { method = st.method or "POST", url = b.url(PATH[st[2]]), timeout = 10,
        headers = headers_for(st.auth), body = st.method ~= "GET" and encode_body(body) or nil })
      if records and st[2] == "records_page" then last_page = records end
    elseif kind == "download" then
      local rec = last_page[st[2]]
      assert(rec and rec.recordFileDownloadUrl, b.name .. ": step " .. i .. ": no recording to download")
      o = outcome(b.send { method = "GET", url = rec.recordFileDownloadUrl, headers = {}, timeout = 10 })
    elseif kind == "get" then
      local url = st[2]:find("^/recordings/") and b.recording_url(st[2]) or b.url(st[2])
      o = outcome(b.send { method = "GET", url = url, headers = {}, timeout = 10 })
    elseif kind == "seed" then
      b.seed(type(st[2]) == "function" and st[2](os.time()) or st[2], st[3])
    elseif kind == "balance" then
      b.balance(st[2])
    elseif kind == "advance" then
      b.advance(st[2])
    elseif kind == "fault" then
      b.fault(st[2], st[3], st[4])
    end
    out[i] = o or kind
  end
  return out
end

-- the first difference, as a sentence, or nil
local function differ(a, b, path)
  path = path or ""
  if type(a) ~= type(b) then
    return path .. ": " .. cjson.encode(a) .. " vs " .. cjson.encode(b)
  end
  if type(a) ~= "table" then
    if a ~= b then return path .. ": " .. tostring(a) .. " vs " .. tostring(b) end
    return nil
  end
  local keys = {}
  for k in pairs(a) do keys[k] = true end
  for k in pairs(b) do keys[k] = true end
  for k in pairs(keys) do
    local d = differ(a[k], b[k], path .. "." .. tostring(k))
    if d then return d end
  end
  return nil
end

local function last_id(s)
  return s:get("/_sim/state").last_id
end

describe("the mock and the simulator answer alike #integration", function()
  local s

  setup(function()
    s = assert(sim.start { workers = 1 })
  end)

  teardown(function()
    if s then s:stop() end
  end)

  for _, sc in ipairs(SCENARIOS) do
    it(sc[1], function()
      local steps = sc[2]
      -- at_hangup numbers records from the simulator's counters: a fresh simulator starts them both at 0
      local here = s
      if sc.ids == "at_hangup" then here = assert(sim.start { workers = 1 }) end
      local ok, err = pcall(function()
        local b_sim = sim_backend(here, sc)
        local b_mock = mock_backend(sc, last_id(here))
        local got_sim = run(b_sim, steps)
        local got_mock = run(b_mock, steps)
        for i = 1, #steps do
          local d = differ(got_mock[i], got_sim[i])
          assert(d == nil, ("step %d (%s %s): mock vs simulator differ at %s\nmock: %s\nsimulator: %s"):format(
            i, steps[i][1], tostring(steps[i][2]), tostring(d), cjson.encode(got_mock[i]), cjson.encode(got_sim[i])))
        end
      end)
      if here ~= s then here:stop() end
      assert(ok, err)
    end)
  end

  it("notices one changed message", function()
    local sc
    for _, x in ipairs(SCENARIOS) do
      if x[1]:find("no balance", 1, true) then sc = x end
    end
    local b_sim = sim_backend(s, sc)
    local b_mock = mock_backend(sc, last_id(s))
    local send = b_mock.send
    b_mock.send = function(req)
      local res, err = send(req)
      if res then res.body = res.body:gsub("balance used up", "balance is used up") end
      return res, err
    end
    local got_sim, got_mock = run(b_sim, sc[2]), run(b_mock, sc[2])
    local found
    for i = 1, #sc[2] do found = found or differ(got_mock[i], got_sim[i]) end
    assert.matches("balance is used up", found)
  end)
end)
