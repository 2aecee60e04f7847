-- clicktocall.mock, driven through the real client: the provider's rules, paging, recordings, faults, the log.
local clicktocall = require "clicktocall"
local mock = require "clicktocall.mock"
local core = require "clicktocall.core"

local UD = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"
local T = 1700000000 -- 2023-11-15 06:13:20 in UTC+8
local SEAT, AGENT, CUSTOMER = "PP7568032251", "+8613500000002", "+8613918000010"
local DAY_BEFORE = { start_time = T - 86400, end_time = T }

local function clock()
  return T
end

local function provider(extra)
  local o = { user_data = UD, secret = "TEST", balance = 6152, clock = clock, seats = { [SEAT] = AGENT } }
  for k, v in pairs(extra or {}) do
    o[k] = v
  end
  local p = mock.new(o) -- not a tail call: on 5.1 a misuse error would then carry no position
  return p
end

local function client_of(p, extra)
  local o = { base_url = "http://mock", app_secret = "TEST", user_data = UD, transport = p.transport,
              sleep = p.sleep }
  for k, v in pairs(extra or {}) do
    o[k] = v
  end
  return assert(clicktocall.new(o))
end

local function dial(c)
  return c:dial { seat = SEAT, caller = AGENT, callee = CUSTOMER }
end

local function all(c, window)
  local out = {}
  for rec in c:records(window) do
    out[#out + 1] = rec
  end
  return out
end

local read_file = require("spec.helpers.util").read_file

local function sha256_hex(s)
  local h = core.sha256()
  h:update(s)
  return h:hex()
end

-- fn raises the mock's own misuse error (not some other failure), pointing at the caller
local function raises(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  assert.matches("mock_spec%.lua:%d+: clicktocall%.mock: ", tostring(err))
end

local tmp_paths = {}
local function tmp_path()
  local p = os.tmpname()
  os.remove(p)
  p = p .. ".wav"
  tmp_paths[#tmp_paths + 1] = p
  return p
end

-- a raw API request, as a transport receives it
local function raw(p, path, body, headers)
  return p.transport { method = "POST", url = "http://mock" .. path, body = body,
                       headers = headers or { Authorization = "VEVTVA==" } }
end

local function message_of(res)
  return require("cjson").new().decode(res.body).meta.message
end

describe("clicktocall.mock", function()
  after_each(function()
    for _, p in ipairs(tmp_paths) do
      os.remove(p)
    end
    tmp_paths = {}
  end)

  it("needs neither lua-cjson nor the C core: its rules and JSON are pure Lua", function()
    local names = { "clicktocall.core", "cjson", "cjson.safe", "clicktocall.mock", "clicktocall.provider_rules",
                    "clicktocall.json" }
    local saved = {}
    for _, name in ipairs(names) do
      saved[name] = { package.loaded[name], package.preload[name] }
      package.loaded[name] = nil
      if not name:find("^clicktocall%.[mpj]") then -- those three load afresh, the others cannot load
        package.preload[name] = function() error("not here: " .. name) end
      end
    end
    local ok, res = pcall(function()
      local m = require "clicktocall.mock"
      local p = m.new { user_data = UD, secret = "TEST" }
      return p.transport { method = "POST", url = "http://mock/management/customer/isallow",
                           headers = { Authorization = "VEVTVA==" }, body = '{"userData":"' .. UD .. '"}' }
    end)
    for _, name in ipairs(names) do
      package.loaded[name], package.preload[name] = saved[name][1], saved[name][2]
    end
    assert(ok, res)
    assert.equal('{"meta":{"success":true,"message":"ok"},"data":6152}', res.body)
  end)

  describe("the four calls", function()
    it("answers balance, bind_seat, dial and records_page with the provider's data", function()
      local p = provider()
      local c = client_of(p)
      assert.equal(6152, c:balance())
      assert.is_true(c:bind_seat { seat = "PP7568032252", phone = "13500000003" })
      assert.equal("+8613500000003", p:bound_phone("PP7568032252"))
      local sid = assert(dial(c))
      assert.matches("^%x+%-%x+%-4%x+%-a%x+%-%x+_%d+$", sid)
      local recs, nxt = c:records_page { start_time = T - 60, end_time = T + 3600 }
      assert.equal(1, #recs)
      assert.is_nil(nxt)
      assert.equal(sid, recs[1].sessionId)
    end)

    it("takes each dial's talk time off the balance", function()
      local p = provider { balance = 100, call_duration = 30 }
      local c = client_of(p)
      assert(dial(c))
      assert.equal(70, c:balance())
      assert(dial(c))
      assert.equal(40, c:balance())
      assert.equal(40, p:balance())
      assert.equal(2, p.dials)
    end)

    it("refuses a dial once the balance is used up, with the provider's message", function()
      local p = provider { balance = 20, call_duration = 30 }
      local c = client_of(p)
      assert(dial(c))
      assert.equal(0, c:balance())
      local sid, err = dial(c)
      assert.is_nil(sid)
      assert.equal("api", err.kind)
      assert.equal("余额不足，无法呼叫 (balance used up)", err.message)
      assert.equal(1, p.dials)
    end)

    it("records a dial as the provider does: the numbers, the seat, the times, the recording", function()
      local p = provider { call_duration = 42 }
      local c = client_of(p)
      local sid = assert(dial(c))
      local rec = all(c, { start_time = T, end_time = T + 3600 })[1]
      assert.same({
        id = 1, sessionId = sid, userData = UD, setingNbr = SEAT, direction = "0",
        callerNum = AGENT, calleeNum = CUSTOMER,
        callOutAnswerTime = "2023-11-15 06:13:23", fwdAnswerTime = "2023-11-15 06:13:28",
        callEndTime = "2023-11-15 06:14:10", duration = "42", callmin = 1, recordFlag = "1",
        recordFileDownloadUrl = "http://mock-recordings/" .. sid .. ".wav",
      }, rec)
      assert.same(rec, p:records()[1])
    end)

    it("does not record dialled calls when recorded = false", function()
      local p = provider { recorded = false }
      local c = client_of(p)
      assert(dial(c))
      local rec = p:records()[1]
      assert.equal("0", rec.recordFlag)
      assert.is_nil(rec.recordFileDownloadUrl)
    end)

    it("refuses a dial from a seat that is not bound, or with another caller than the bound one", function()
      local p = provider()
      local c = client_of(p)
      local _, err = c:dial { seat = "PP1", caller = AGENT, callee = CUSTOMER }
      assert.equal("api", err.kind)
      assert.equal("座席未绑定主叫号码 (seat PP1 is not bound)", err.message)
      _, err = c:dial { seat = SEAT, caller = "13500000009", callee = CUSTOMER }
      assert.equal("主叫号码与座席绑定号码不一致 (callerNbr is not the seat's bound phone)", err.message)
      assert.equal(0, p.dials)
      assert.same({}, p:records())
    end)

    it("binds through bind_seat, after which the seat dials with the new phone", function()
      local p = provider()
      local c = client_of(p)
      assert.is_true(c:bind_seat { seat = SEAT, phone = "0755-28000123" })
      assert.equal("+8675528000123", p:bound_phone(SEAT))
      assert.is_nil((dial(c)))
      assert(c:dial { seat = SEAT, caller = "0755-28000123", callee = CUSTOMER })
    end)

    it("checks the fields and formats the client cannot get wrong, with the provider's messages", function()
      local p = provider()
      assert.equal("绑定号码格式错误，应为国家码+号码，如+8613500000002 (bad userPhone format)",
        message_of(raw(p, "/management/add/setingphone", '{"userData":"' .. UD
          .. '","setingNbr":"PP1","userPhone":"13500000002"}')))
      assert.equal("被叫号码格式错误 (bad calleeNbr format)",
        message_of(raw(p, "/rest/voiceCall/api", '{"userData":"' .. UD .. '","setingNbr":"' .. SEAT
          .. '","callerNbr":"' .. AGENT .. '","calleeNbr":"139"}')))
      assert.equal("setingNbr 不能为空 (setingNbr is required)",
        message_of(raw(p, "/management/add/setingphone", '{"userData":"' .. UD .. '","userPhone":"+8613500000002"}')))
      assert.equal("userData 必须为字符串 (userData must be a string)",
        message_of(raw(p, "/management/customer/isallow", '{"userData":5}')))
      assert.equal("请求参数格式错误，需为JSON对象 (request body must be a JSON object)",
        message_of(raw(p, "/management/customer/isallow", "[1]")))
      assert.equal("starTime 格式错误，应为 yyyy-MM-dd HH:mm:ss (bad starTime)",
        message_of(raw(p, "/call/record/voice", '{"userData":"' .. UD
          .. '","starTime":"2023-02-30 00:00:00","endTime":"2023-03-01 00:00:00"}')))
      assert.equal("maxId 必须为整数 (maxId must be an integer)",
        message_of(raw(p, "/call/record/voice", '{"userData":"' .. UD
          .. '","maxId":"x","starTime":"2023-03-01 00:00:00","endTime":"2023-03-01 00:00:00"}')))
    end)

    it("refuses an unknown userData on every call", function()
      local p = provider()
      local c = client_of(p, { user_data = "someone-else" })
      local calls = {
        function() return c:balance() end,
        function() return c:bind_seat { seat = SEAT, phone = AGENT } end,
        function() return dial(c) end,
        function() return c:records_page(DAY_BEFORE) end,
      }
      for _, f in ipairs(calls) do
        local v, err = f()
        assert.is_nil(v)
        assert.equal("api", err.kind)
        assert.equal("客户标识不存在 (unknown userData)", err.message)
      end
      p:add_customer("someone-else", 77)
      assert.equal(77, c:balance())
    end)

    it("answers 404 for an unknown path and 405 for a GET on an API path", function()
      local p = provider()
      local res = assert(p.transport { method = "POST", url = "http://mock/nowhere", headers = {}, body = "{}" })
      assert.equal(404, res.status)
      res = assert(p.transport { method = "GET", url = "http://mock/management/customer/isallow", headers = {} })
      assert.equal(405, res.status)
      assert.equal("unknown", p.requests[1].op)
      assert.equal("balance", p.requests[2].op)
    end)

    it("serves a base URL with a path prefix", function()
      local p = provider()
      local c = client_of(p, { base_url = "https://gw.example.com/ctc/v1/" })
      assert.equal(6152, c:balance())
      assert.equal("https://gw.example.com/ctc/v1/management/customer/isallow", p.requests[1].url)
    end)
  end)

  describe("Authorization", function()
    it("refuses a wrong secret on every call with the provider's message", function()
      local p = provider()
      local c = client_of(p, { app_secret = "WRONG" })
      local calls = {
        function() return c:balance() end,
        function() return c:bind_seat { seat = SEAT, phone = AGENT } end,
        function() return dial(c) end,
        function() return c:records_page(DAY_BEFORE) end,
      }
      for _, f in ipairs(calls) do
        local v, err = f()
        assert.is_nil(v)
        assert.equal("api", err.kind)
        assert.equal("Authorization 验证失败 (wrong Authorization)", err.message)
      end
      assert.equal(0, p.dials)
    end)

    it("wants the header on every call but the dial (as the provider's document has it)", function()
      local p = provider()
      assert.equal("Authorization 不能为空 (missing Authorization header)",
        message_of(raw(p, "/management/customer/isallow", '{"userData":"' .. UD .. '"}', {})))
      local res = raw(p, "/rest/voiceCall/api", '{"userData":"' .. UD .. '","setingNbr":"' .. SEAT
        .. '","callerNbr":"' .. AGENT .. '","calleeNbr":"' .. CUSTOMER .. '"}', {})
      assert.equal("ok", message_of(res))
      assert.equal(1, p.dials)
    end)

    it("checks nothing without a secret", function()
      local p = mock.new { user_data = UD }
      local c = client_of(p, { app_secret = "anything" })
      assert.equal(6152, c:balance())
    end)
  end)

  describe("records numbered at dial or at hang-up, listed late", function()
    local function ids_of(c, window)
      local out = {}
      for rec in c:records(window or { start_time = T - 86400, end_time = T + 86400 }) do
        out[#out + 1] = rec.callEndTime
      end
      return out
    end

    it("refuses a bad ids or listing_delay, and an id given with at_hangup", function()
      raises(function() provider { ids = "later" } end)
      raises(function() provider { listing_delay = -1 } end)
      raises(function() provider { listing_delay = 1.5 } end)
      raises(function() provider():seed_records(1, { listing_delay = "1h" }) end)
      raises(function() provider { ids = "at_hangup" }:seed_records { { id = 5, callEndTime = T - 10 } } end)
    end)

    it("at_dial (default): a long call dialled first keeps the lowest id; at_hangup: numbered once it ended, "
       .. "in end order, without an id until then", function()
      for _, mode in ipairs { "at_dial", "at_hangup" } do
        local p = provider { ids = mode }
        local c = client_of(p)
        p._opts.call_duration = 600 -- (new{}'s call_duration, changed between two dials: the spec's shortcut)
        local long = assert(c:dial { seat = SEAT, caller = "13500000002", callee = "13918000010" })
        p._opts.call_duration = 10
        local short = assert(c:dial { seat = SEAT, caller = "13500000002", callee = "13918000011" })
        local recs = p:records()
        if mode == "at_dial" then
          assert.same({ long, short }, { recs[1].sessionId, recs[2].sessionId })
          assert.same({ 1, 2 }, { recs[1].id, recs[2].id })
        else
          assert.same({}, recs)
          p:advance(30)
          assert.same({ short }, { p:records()[1].sessionId })
          p:advance(600)
          recs = p:records()
          assert.same({ short, long }, { recs[1].sessionId, recs[2].sessionId })
          assert.same({ 1, 2 }, { recs[1].id, recs[2].id })
        end
      end
    end)

    it("listing_delay: a record is listed only that long after its end (new{}'s, or a seed's own)", function()
      local p = provider { listing_delay = 60 }
      local c = client_of(p)
      p:seed_records { { callEndTime = T - 100 }, { callEndTime = T - 30 } }
      local late = p:seed_records({ { callEndTime = T - 200 } }, { listing_delay = 3000 })
      assert.equal(3, late[1].id) -- at_dial: the id at once, listed later
      assert.same({ mock.format_time(T - 100) }, ids_of(c))
      p:advance(30)
      assert.same({ mock.format_time(T - 100), mock.format_time(T - 30) }, ids_of(c))
      p:advance(2800)
      assert.equal(3, #ids_of(c))
      -- at_hangup: a seeded record gets its id when it is listed; the copy returned has none until then
      p = provider { ids = "at_hangup" }
      local waiting = p:seed_records({ { callEndTime = T - 10 } }, { listing_delay = 600 })
      assert.is_nil(waiting[1].id)
      local now = p:seed_records { { callEndTime = T - 5 } }
      assert.equal(1, now[1].id)
      p:advance(600)
      assert.equal(2, p:records()[2].id)
      assert.equal(waiting[1].sessionId, p:records()[2].sessionId)
    end)
  end)

  describe("records", function()
    it("pages 250 seeded records 100 at a time with the iterator: every id once, in order", function()
      local p = provider()
      local seeded = p:seed_records(250)
      assert.equal(250, #seeded)
      local c = client_of(p)
      local recs = all(c, DAY_BEFORE)
      assert.equal(250, #recs)
      for i, rec in ipairs(recs) do
        assert.equal(i, rec.id)
        assert.equal(seeded[i].sessionId, rec.sessionId)
      end
      assert.equal(3, p:count("records_page"))
      assert.equal(0, p.requests[1].body.maxId)
      assert.equal(100, p.requests[2].body.maxId)
      assert.equal(200, p.requests[3].body.maxId)
      assert.equal(UD, p.requests[3].body.userData)
      assert.equal("2023-11-14 06:13:20", p.requests[3].body.starTime)
    end)

    it("asks for one more, empty, page when the last page is full", function()
      local p = provider()
      p:seed_records(200)
      local c = client_of(p)
      assert.equal(200, #all(c, DAY_BEFORE))
      assert.equal(3, p:count("records_page"))
    end)

    it("spreads seeded records over the window, all with the provider's fields", function()
      local p = provider()
      local recs = p:seed_records(3, { start_time = "2023-11-01 00:00:00", end_time = "2023-11-01 00:10:00",
                                      recorded = function(i) return i ~= 2 end })
      assert.equal("2023-11-01 00:00:00", recs[1].callEndTime)
      assert.equal("2023-11-01 00:05:00", recs[2].callEndTime)
      assert.equal("2023-11-01 00:10:00", recs[3].callEndTime)
      assert.same({ "1", "0", "1" }, { recs[1].recordFlag, recs[2].recordFlag, recs[3].recordFlag })
      assert.is_nil(recs[2].recordFileDownloadUrl)
      for _, rec in ipairs(recs) do
        for _, f in ipairs { "id", "sessionId", "userData", "setingNbr", "direction", "callerNum", "calleeNum",
                             "callEndTime", "callOutAnswerTime", "fwdAnswerTime", "recordFlag", "duration",
                             "callmin" } do
          assert.is_not_nil(rec[f], f)
        end
        assert.equal("string", type(rec.duration))
        assert.equal(math.ceil(tonumber(rec.duration) / 60), rec.callmin)
      end
    end)

    it("keeps to the window and to the customer", function()
      local p = provider()
      p:seed_records(10, { start_time = T - 7200, end_time = T - 3600 })   -- ids 1..10
      p:seed_records(5, { start_time = T - 600, end_time = T - 60 })       -- ids 11..15
      p:seed_records(4, { start_time = T - 600, end_time = T - 60, user_data = "other" })
      local c = client_of(p)
      local recs = all(c, { start_time = T - 600, end_time = T })
      assert.equal(5, #recs)
      assert.equal(11, recs[1].id)
      assert.equal(4, #all(client_of(p, { user_data = "other" }), { start_time = T - 600, end_time = T }))
      assert.equal(19, #p:records())
      assert.equal(4, #p:records("other"))
    end)

    it("seeds a list, keeping the given fields and filling in the rest", function()
      local p = provider()
      local recs = p:seed_records {
        { id = 500, sessionId = "../evil name", callEndTime = "2023-11-15 00:00:00", calleeNum = "+8613900000000" },
        { callEndTime = T - 10, recordFlag = "0", recordFileDownloadUrl = "http://elsewhere/x.mp3" },
        { extra = 'kept "quoted" \\ a/b', fwdAnswerTime = mock.null, tags = { "x", "y" } },
      }
      assert.same({ 500, 501, 502 }, { recs[1].id, recs[2].id, recs[3].id })
      assert.equal("http://mock-recordings/..%2Fevil%20name.wav", recs[1].recordFileDownloadUrl)
      assert.equal("+8613900000000", recs[1].calleeNum)
      assert.equal("2023-11-15 06:13:10", recs[2].callEndTime)
      assert.equal("http://elsewhere/x.mp3", recs[2].recordFileDownloadUrl)
      local got = all(client_of(p), DAY_BEFORE)
      assert.equal(3, #got)
      assert.equal('kept "quoted" \\ a/b', got[3].extra)
      assert.is_nil(got[3].fwdAnswerTime) -- sent as null, which the client drops
      local page = raw(p, "/call/record/voice", '{"maxId":501,"starTime":"2023-11-14 00:00:00",'
        .. '"endTime":"2023-11-16 00:00:00","userData":"' .. UD .. '"}')
      assert.matches('"fwdAnswerTime":null', page.body, 1, true)
      assert.same({ "x", "y" }, got[3].tags)
      raises(function() p:seed_records { { id = 400 } } end)
    end)

    it("keeps ids past 2^53 exact (strings on Lua 5.1 and LuaJIT, as the client gives them)", function()
      local p = provider()
      p:seed_records { { id = "9007199254740993" }, { id = "9007199254740995" } }
      p:seed_records(1)
      local c = client_of(p)
      local ids = {}
      for _, rec in ipairs(all(c, DAY_BEFORE)) do
        ids[#ids + 1] = type(rec.id) == "string" and rec.id or string.format("%d", rec.id)
      end
      assert.same({ "9007199254740993", "9007199254740995", "9007199254740996" }, ids)
      local recs = c:records_page { start_time = T - 86400, end_time = T, max_id = "9007199254740993" }
      assert.equal(2, #recs)
      -- the mock's own view of a record holds the id in the same form
      local mine = p:records()[2].id
      assert.equal("9007199254740995", type(mine) == "string" and mine or string.format("%d", mine))
    end)

    it("gives the same records and session ids on every run (a fixed clock makes it deterministic)", function()
      local a, b = provider(), provider()
      assert.same(a:seed_records(5), b:seed_records(5))
      local ca, cb = client_of(a), client_of(b)
      assert.equal(dial(ca), dial(cb))
    end)
  end)

  describe("faults", function()
    it("a status: answers it instead of serving the request; the client retries an idempotent call", function()
      local p = provider()
      p:fail("balance", 500, 2)
      local c = client_of(p)
      assert.equal(6152, c:balance())
      assert.equal(3, p:count("balance"))
      assert.same({ "500", "500" }, { p.requests[1].fault, p.requests[2].fault })
      assert.is_nil(p.requests[3].fault)
      assert.equal(0, p:pending_faults())
    end)

    it("a status with times beyond the retries: the client gives up with kind http", function()
      local p = provider()
      p:fail("records_page", 503, math.huge)
      local c = client_of(p, { retries = 1 })
      local recs, err = c:records_page(DAY_BEFORE)
      assert.is_nil(recs)
      assert.equal("http", err.kind)
      assert.equal(503, err.status)
      assert.equal(2, p:count("records_page"))
      assert.equal(math.huge, p:pending_faults("records_page"))
      p:clear_faults("records_page")
      assert(c:records_page(DAY_BEFORE))
    end)

    it("429 carries Retry-After: 1, which the client honours", function()
      local p = provider()
      p:fail("balance", 429)
      local c = client_of(p)
      local t0 = p:now()
      assert.equal(6152, c:balance())
      assert.same({ 1 }, p.slept)
      assert.equal(t0 + 1, p:now()) -- provider.sleep moves the provider's clock
      p:fail("balance", { status = 429, retry_after = 3600 })
      local _, err = c:balance()
      assert.equal(3600, err.retry_after)
      local res = p.transport { method = "POST", url = "http://mock/management/customer/isallow", headers = {},
                                body = "{}" }
      assert.equal(200, res.status)
      p:fail("balance", { status = 429, retry_after = false })
      res = p.transport { method = "POST", url = "http://mock/management/customer/isallow", headers = {},
                          body = "{}" }
      assert.equal(429, res.status)
      assert.is_nil(res.headers["retry-after"])
    end)

    it("a status on a dial: no call is placed and the client does not retry it", function()
      local p = provider()
      p:fail("dial", 502)
      local c = client_of(p)
      local sid, err = dial(c)
      assert.is_nil(sid)
      assert.equal("http", err.kind)
      assert.equal(0, p.dials)
      assert.equal(1, p:count("dial"))
    end)

    it("timeout: the dial is placed, the caller gets kind timeout with sent = true, and no retry", function()
      local p = provider()
      p:fail("dial", "timeout")
      local c = client_of(p)
      local sid, err = dial(c)
      assert.is_nil(sid)
      assert.equal("timeout", err.kind)
      assert.is_true(err.sent)
      assert.equal(1, p.dials)
      assert.equal(1, #p:records())
      assert.equal(1, p:count("dial"))
    end)

    it("reset_after_send: the dial is placed, the caller gets kind network with sent = true", function()
      local p = provider()
      p:fail("dial", "reset_after_send")
      local c = client_of(p)
      local sid, err = dial(c)
      assert.is_nil(sid)
      assert.equal("network", err.kind)
      assert.is_true(err.sent)
      assert.equal(1, p.dials)
      assert.equal(1, p:count("dial"))
    end)

    it("refused: nothing reaches the provider (sent = false), so even a dial is tried again", function()
      local p = provider()
      p:fail("dial", "refused")
      local c = client_of(p)
      assert(dial(c))
      assert.equal(2, p:count("dial"))
      assert.equal(1, p.dials)
    end)

    it("a transport error looks like a real transport's: kind, message, sent", function()
      local p = provider()
      p:fail("balance", "timeout"):fail("balance", "reset_after_send"):fail("balance", "refused")
      local req = { method = "POST", url = "http://mock/management/customer/isallow", headers = {}, body = "{}" }
      local kinds = {}
      for i = 1, 3 do
        local res, err = p.transport(req)
        assert.is_nil(res)
        assert.equal("string", type(err.message))
        kinds[i] = err.kind .. ":" .. tostring(err.sent)
      end
      assert.same({ "timeout:true", "network:true", "network:false" }, kinds)
    end)

    it("bad_json: the client gets kind protocol", function()
      local p = provider()
      p:fail("bind_seat", "bad_json")
      local c = client_of(p)
      local ok, err = c:bind_seat { seat = SEAT, phone = AGENT }
      assert.is_nil(ok)
      assert.equal("protocol", err.kind)
    end)

    it("api_error: meta.success false with a message (the provider's busy text by default)", function()
      local p = provider()
      p:fail("balance", "api_error"):fail("balance", { api_error = "账户已冻结" })
      local c = client_of(p)
      local _, err = c:balance()
      assert.equal("api", err.kind)
      assert.equal("系统繁忙，请稍后再试", err.message)
      _, err = c:balance()
      assert.equal("账户已冻结", err.message)
      assert.equal(6152, c:balance())
    end)

    it("stuck_ids: a full page that does not advance is the client's protocol error", function()
      local p = provider()
      p:seed_records(150)
      p:fail("records_page", "stuck_ids")
      local c = client_of(p)
      local ok, err = pcall(all, c, DAY_BEFORE)
      assert.is_false(ok)
      assert.equal("protocol", err.kind)
      assert.equal(1, p:count("records_page"))
      -- once used up, paging works again
      assert.equal(150, #all(c, DAY_BEFORE))
    end)

    it("truncated, no_meta, wrong_data: the simulator's faults by the same names, each a protocol error", function()
      local p = provider()
      p:fail("balance", "truncated"):fail("balance", "no_meta"):fail("balance", "wrong_data")
      local req = { method = "POST", url = "http://mock/management/customer/isallow",
                    headers = { Authorization = core.base64("TEST") },
                    body = '{"userData":"' .. UD .. '"}' }
      local res = p.transport(req)
      assert.equal('{"meta":{"success":true,"m', res.body)
      assert.equal(tostring(#res.body), res.headers["content-length"])
      assert.equal('{"success":true,"data":"ok","timestamp":1700000000000}', p.transport(req).body)
      assert.equal('{"meta":{"success":true,"message":"ok"},"data":"6152"}', p.transport(req).body)
      local c = client_of(p, { retries = 0 })
      for _, kind in ipairs { "truncated", "no_meta", "wrong_data" } do
        p:fail("records_page", kind)
        local _, err = c:records_page(DAY_BEFORE)
        assert.equal("protocol", err.kind, kind)
      end
      raises(function() p:fail("download", "no_meta") end)
    end)

    it("queues faults of one op in order, and leaves other ops alone", function()
      local p = provider()
      p:fail("balance", 500):fail("balance", "bad_json")
      local req = { method = "POST", url = "http://mock/management/customer/isallow", headers = {},
                    body = '{"userData":"' .. UD .. '"}' }
      assert.equal(500, p.transport(req).status)
      local c = client_of(p, { retries = 0 })
      assert.same({}, (c:records_page(DAY_BEFORE)))
      local _, err = c:balance()
      assert.equal("protocol", err.kind)
      assert.equal(6152, c:balance())
      assert.same({ "500", "bad_json" }, { p.requests[1].fault, p.requests[3].fault })
    end)

    it("a canned response: exactly that status, body and headers", function()
      local p = provider()
      p:fail("balance", { status = 200, body = '{"data":5}' })
       :fail("balance", { status = 503, body = "busy", headers = { ["Retry-After"] = "2" } })
      local c = client_of(p)
      local _, err = c:balance()
      assert.equal("protocol", err.kind)
      assert.matches("meta", err.message, 1, true)
      assert.equal(6152, c:balance())                      -- after the 503 and its Retry-After
      assert.same({ 2 }, p.slept)
      assert.equal("503", p.requests[2].fault)
    end)

    it("a canned response keeps its header names as written (a transport need not lower-case them)", function()
      local p = provider()
      p:fail("balance", { status = 503, body = "busy", headers = { ["Content-Type"] = "text/plain", ["X-Trace"] = "7",
                                                                  ["Content-Length"] = "4" } })
      p:fail("balance", { status = 429, headers = { ["Retry-After"] = "3" } })
      local req = { method = "POST", url = "http://mock/management/customer/isallow", headers = {}, body = "{}" }
      local res = assert(p.transport(req))
      assert.same({ ["Content-Type"] = "text/plain", ["X-Trace"] = "7", ["Content-Length"] = "4" }, res.headers)
      res = assert(p.transport(req))
      assert.equal("3", res.headers["Retry-After"])     -- the given one replaces the default Retry-After: 1
      assert.is_nil(res.headers["retry-after"])
      assert.equal(tostring(#res.body), res.headers["content-length"])
    end)

    it("a function: its answer is the answer, and serve() gives the provider's own", function()
      local p = provider()
      local seen
      p:fail("dial", function(request, serve)
        seen = request.url
        local res = serve()
        res.body = res.body:sub(1, 20)                    -- the call is placed, the answer comes back cut
        return res
      end)
      p:fail("dial", function() return nil, { kind = "network", message = "no route", sent = false } end)
      local c = client_of(p)
      local sid, err = dial(c)
      assert.is_nil(sid)
      assert.equal("protocol", err.kind)
      assert.equal("http://mock/rest/voiceCall/api", seen)
      assert.equal(1, p.dials)
      assert(dial(c))                                      -- refused first (sent = false), so tried again
      assert.equal(2, p.dials)
      assert.equal(3, p:count("dial"))
      assert.same({ "function", "function" }, { p.requests[1].fault, p.requests[2].fault })
      p:fail("balance", function() error("oops") end)
      local _, berr = client_of(p, { retries = 0 }):balance()
      assert.equal("network", berr.kind)
      assert.matches("oops", berr.message, 1, true)
    end)

    it("raises on a fault, op or count that does not exist, so a typo cannot pass a test", function()
      local p = provider()
      raises(function() p:fail("dail", 500) end)
      raises(function() p:fail("dial", "timout") end)
      raises(function() p:fail("dial", 500, 0) end)
      raises(function() p:fail("dial", 99) end)
      raises(function() p:fail("balance", "stuck_ids") end)
      raises(function() p:fail("dial", "cut") end)
      raises(function() p:fail("download", "bad_json") end)
      raises(function() mock.new { balanse = 1 } end)
      raises(function() mock.new { seats = { PP1 = "13500000002" } } end)
    end)
  end)

  describe("the request log", function()
    it("holds every request with its op, URL, headers and decoded body", function()
      local p = provider()
      local c = client_of(p)
      assert(dial(c))
      c:records_page { start_time = T - 60, end_time = T, max_id = 7 }
      local r = p.requests[1]
      assert.equal("dial", r.op)
      assert.equal("POST", r.method)
      assert.equal("http://mock/rest/voiceCall/api", r.url)
      assert.equal("VEVTVA==", r.headers.Authorization)
      assert.same({ callerNbr = AGENT, calleeNbr = CUSTOMER, userData = UD, setingNbr = SEAT }, r.body)
      assert.equal("string", type(r.raw_body))
      r = p:last_request("records_page")
      assert.same({ maxId = 7, starTime = "2023-11-15 06:12:20", endTime = "2023-11-15 06:13:20", userData = UD },
                  r.body)
      if math.type then
        assert.equal("integer", math.type(r.body.maxId))
      end
      assert.equal(2, p:count())
      assert.equal(1, p:count("dial"))
      assert.equal(r, p:last_request())
    end)

    it("keeps the client's limits of each request: timeout, connect_timeout, max_body", function()
      local p = provider()
      local c = client_of(p, { timeout = 7, connect_timeout = 2, max_body = 123456 })
      assert(c:balance())
      local r = p:last_request("balance")
      assert.equal(7, r.timeout)
      assert.equal(2, r.connect_timeout)
      assert.equal(123456, r.max_body)
    end)
  end)

  describe("recordings", function()
    local function recorded(p, n)
      return p:seed_records(n or 1, { start_time = T - 3600, end_time = T - 3600 })
    end

    it("download_recording writes the recording's bytes (through the sink, in chunks)", function()
      local p = provider { recording_size = 40000 }
      local rec = recorded(p)[1]
      local c = client_of(p)
      local path = tmp_path()
      local ok, info = c:download_recording(rec, path)
      assert.is_true(ok)
      local want = p:recording(rec)
      assert.equal(40000, #want)
      assert.equal("RIFF", want:sub(1, 4))
      assert.equal(want, read_file(path))
      assert.equal(40000, info.bytes)
      assert.equal(sha256_hex(want), info.sha256)
      local r = p:last_request("download")
      assert.equal("GET", r.method)
      assert.is_nil(r.headers.Authorization)
      assert.equal(want, p:recording(rec.sessionId))
      assert.equal(want, p:recording(rec.recordFileDownloadUrl))
    end)

    it("hands the body to request.sink in chunks of chunk_size, and keeps response.body empty", function()
      local p = provider { recording_size = 40000, chunk_size = 16384 }
      local rec = recorded(p)[1]
      local sizes, parts = {}, {}
      local res = assert(p.transport { method = "GET", url = rec.recordFileDownloadUrl, headers = {},
                                       sink = function(chunk)
                                         sizes[#sizes + 1] = #chunk
                                         parts[#parts + 1] = chunk
                                         return true
                                       end })
      assert.equal(200, res.status)
      assert.equal("", res.body)
      assert.equal("40000", res.headers["content-length"])
      assert.same({ 16384, 16384, 7232 }, sizes)
      assert.equal(p:recording(rec), table.concat(parts))
    end)

    it("streams an answer a fault function built to the sink, as it does its own", function()
      local p = provider { chunk_size = 4 }
      local rec = recorded(p)[1]
      p:fail("download", function() return { status = 200, headers = { ["X-Test"] = "1" }, body = "0123456789" } end)
      local parts = {}
      local res = assert(p.transport { method = "GET", url = rec.recordFileDownloadUrl, headers = {},
                                       sink = function(chunk) parts[#parts + 1] = chunk return true end })
      assert.equal("", res.body)
      assert.same({ "0123", "4567", "89" }, parts)
      assert.equal("1", res.headers["X-Test"])
      assert.equal("10", res.headers["content-length"])
      -- serve()'s own answer is not streamed twice
      parts = {}
      p:fail("download", function(_, serve) return serve() end)
      assert(p.transport { method = "GET", url = rec.recordFileDownloadUrl, headers = {},
                           sink = function(chunk) parts[#parts + 1] = chunk return true end })
      assert.equal(p:recording(rec), table.concat(parts))
    end)

    it("returns the body whole without a sink", function()
      local p = provider { recording_size = 1000 }
      local rec = recorded(p)[1]
      local res = assert(p.transport { method = "GET", url = rec.recordFileDownloadUrl, headers = {} })
      assert.equal(200, res.status)
      assert.equal("audio/wav", res.headers["content-type"])
      assert.equal(p:recording(rec), res.body)
    end)

    it("gives each recording its own bytes, of the size asked for", function()
      local p = provider()
      local recs = recorded(p, 2)
      assert.are_not.equal(p:recording(recs[1]), p:recording(recs[2]))
      assert.equal(32768, #p:recording(recs[1]))
      local big = p:seed_records(1, { recording_size = 100000 })[1]
      assert.equal(100000, #p:recording(big))
      local path = tmp_path()
      local _, info = client_of(p):download_recording(big, path)
      assert.equal(100000, info.bytes)
    end)

    it("fails with the sink's error as kind protocol, sent = true", function()
      local p = provider()
      local rec = recorded(p)[1]
      local res, err = p.transport { method = "GET", url = rec.recordFileDownloadUrl, headers = {},
                                     sink = function() return nil, "disk full" end }
      assert.is_nil(res)
      assert.equal("protocol", err.kind)
      assert.is_true(err.sent)
      assert.matches("disk full", err.message, 1, true)
      res, err = p.transport { method = "GET", url = rec.recordFileDownloadUrl, headers = {},
                               sink = function() error("boom") end }
      assert.is_nil(res)
      assert.equal("protocol", err.kind)
      assert.matches("boom", err.message, 1, true)
      res, err = p.transport { method = "GET", url = rec.recordFileDownloadUrl, headers = {},
                               sink = function() return nil, { kind = "timeout", message = "slow disk" } end }
      assert.is_nil(res)
      assert.equal("timeout", err.kind)
    end)

    it("answers 404 for an unknown recording and for a call that was not recorded", function()
      local p = provider()
      local c = client_of(p)
      local path = tmp_path()
      local ok, err = c:download_recording("http://mock-recordings/nope.wav", path)
      assert.is_nil(ok)
      assert.equal("http", err.kind)
      assert.equal(404, err.status)
      assert.is_nil(read_file(path))
      local rec = p:seed_records { { recordFlag = "0", recordFileDownloadUrl = "http://mock-recordings/r0.wav" } }[1]
      ok, err = c:download_recording(rec.recordFileDownloadUrl, path)
      assert.is_nil(ok)
      assert.equal(404, err.status)
    end)

    it("answers 410 once 7 days have passed since callEndTime (provider clock)", function()
      local p = provider()
      local rec = recorded(p)[1]            -- ended at T - 3600
      local c = client_of(p)
      p:advance(7 * 86400 - 3600)           -- exactly 7 days after the end: still there
      assert.is_true((c:download_recording(rec, tmp_path())))
      p:advance(1)
      local path = tmp_path()
      local ok, err = c:download_recording(rec, path)
      assert.is_nil(ok)
      assert.equal("http", err.kind)
      assert.equal(410, err.status)
      assert.is_nil(read_file(path))
    end)

    it("cut: fewer bytes than Content-Length fail the download and leave no file", function()
      local p = provider()
      local rec = recorded(p)[1]
      p:fail("download", "cut", math.huge)
      local c = client_of(p, { retries = 1 })
      local path = tmp_path()
      local ok, err = c:download_recording(rec, path)
      assert.is_nil(ok)
      assert.equal("network", err.kind)
      assert.matches("cut short", err.message, 1, true)
      assert.is_nil(read_file(path))
      assert.equal(2, p:count("download"))
    end)

    it("a canned redirect on a download is followed by the client", function()
      local p = provider()
      local rec = recorded(p)[1]
      p:fail("download", { status = 302, headers = { Location = rec.recordFileDownloadUrl .. "?again=1" } })
      local c = client_of(p)
      local path = tmp_path()
      assert.is_true((c:download_recording(rec, path)))
      assert.equal(p:recording(rec), read_file(path))
      assert.equal(rec.recordFileDownloadUrl .. "?again=1", p:last_request("download").url)
    end)

    it("a status fault on a download is retried by the client", function()
      local p = provider()
      local rec = recorded(p)[1]
      p:fail("download", 500)
      local c = client_of(p)
      local path = tmp_path()
      assert.is_true((c:download_recording(rec, path)))
      assert.equal(p:recording(rec), read_file(path))
      assert.equal(2, p:count("download"))
    end)
  end)

  describe("the provider object", function()
    it("reset() goes back to the state right after new{}", function()
      local p = provider()
      local c = client_of(p)
      p:seed_records(3)
      assert(dial(c))
      p:fail("balance", 500, math.huge)
      p:advance(99)
      local log = p.requests
      p:reset()
      assert.same({}, p:records())
      assert.equal(0, p.dials)
      assert.equal(0, #log)
      assert.equal(log, p.requests)
      assert.equal(T, p:now())
      assert.equal(0, p:pending_faults())
      assert.equal(6152, c:balance())
      assert.equal(AGENT, p:bound_phone(SEAT))
      assert.equal(1, p:seed_records(1)[1].id)
    end)

    it("set_balance and bind change the state without a request", function()
      local p = provider()
      p:set_balance(5):bind("PP9", "+8613500000009")
      local c = client_of(p)
      assert.equal(5, c:balance())
      assert(c:dial { seat = "PP9", caller = "13500000009", callee = CUSTOMER })
      raises(function() p:bind("PP9", "13500000009") end)
      raises(function() p:balance("nobody") end)
    end)

    it("never raises from the transport", function()
      local p = provider()
      local res, err = p.transport(nil)
      assert.is_nil(res)
      assert.equal("argument", err.kind)
      res, err = p.transport { url = "http://mock-recordings/x.wav", sink = 5 }
      assert.is_nil(res)
      assert.equal("argument", err.kind)
    end)

    it("runs the header comment's example", function()
      local my_app = {}
      function my_app.notify_agent(client, seat, phone)
        assert(client:balance())
        return client:dial { seat = seat, caller = "13500000002", callee = phone }
      end
      local p = mock.new { user_data = "UD-1", secret = "TEST", balance = 600,
                           seats = { PP7568032251 = "+8613500000002" } }
      local client = assert(clicktocall.new { base_url = "http://mock", app_secret = "TEST",
                                              user_data = "UD-1", transport = p.transport, sleep = p.sleep })
      p:fail("balance", 503)
      local sid = assert(my_app.notify_agent(client, "PP7568032251", "13918000010"))
      assert.equal(1, p.dials)
      assert.equal("+8613918000010", p:last_request("dial").body.calleeNbr)
      assert.equal(sid, p:records()[1].sessionId)
      assert.is_true(p:balance() < 600)
    end)
  end)
end)
