-- clicktocall.new{ rate_limit = ... } in this process, on a simulated clock (rate_limit.now and the client's
-- sleep): the option's checks, refusals with retry_after, waiting up to the bound, retries and the jobs' pages
-- counted, and the bound itself (never more than `rate` in any window of `per`). The shared dict runs inside
-- nginx in spec/integration/rate_limit_openresty_spec.lua, Redis in spec/integration/rate_limit_redis_spec.lua.
local clicktocall = require "clicktocall"
local mock = require "clicktocall.mock"
local errors = require "clicktocall.errors"
local metrics = require "clicktocall.metrics"
local h = require "spec.helpers"

local AGENT = "+8613500000002"

local names = 0
-- a client over the mock with a clock the spec moves: c.T (seconds), c.slept (each sleep), c.events
local function client(rate_limit, extra)
  local c = { T = 5000, slept = {}, events = {} }
  names = names + 1
  rate_limit.name = rate_limit.name or ("spec" .. names) -- the process-local places are shared by name
  rate_limit.now = function() return c.T end
  c.provider = mock.new { user_data = h.USER_DATA, secret = h.SECRET, seats = { PP1 = AGENT } }
  local o = {
    base_url = "https://api.example.com", app_secret = h.SECRET, user_data = h.USER_DATA,
    transport = c.provider.transport, rate_limit = rate_limit,
    sleep = function(s) c.slept[#c.slept + 1] = s; c.T = c.T + s end,
    on_event = function(e) c.events[#c.events + 1] = e end,
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  c.client = assert(clicktocall.new(o))
  return c
end

local function sent(c, op)
  local n = 0
  for _, r in ipairs(c.provider.requests) do
    if r.op == op then n = n + 1 end
  end
  return n
end

local function dial(c)
  return c.client:dial { caller = "13500000002", callee = "13500000003", seat = "PP1" }
end

local function new_with(rate_limit)
  return clicktocall.new { base_url = "https://api.example.com", app_secret = h.SECRET, rate_limit = rate_limit }
end

describe("rate_limit", function()
  describe("the option", function()
    for _, case in ipairs {
      { "a string", "dial = 5", "rate_limit must be a table" },
      { { dial = { rate = 5, burst = 10 } }, nil, "{ rate = 10, per = 2 }" },
      { { dail = { rate = 5 } }, nil, "unknown field 'dail'" },
      { { dial = { rate = 0 } }, nil, "rate_limit.dial.rate must be a whole number of requests from 1 to 1000" },
      { { dial = { rate = 2.5 } }, nil, "rate_limit.dial.rate" },
      { { dial = { rate = 5, per = 0 } }, nil, "rate_limit.dial.per must be" },
      { { dial = { rate = 5, wait = -1 } }, nil, "rate_limit.dial.wait must be" },
      { { dial = { rate = 5 }, wait = 1 / 0 }, nil, "rate_limit.wait must be" },
      { { dial = { rate = 5 }, fail_open = "yes" }, nil, "rate_limit.fail_open must be a boolean" },
      { { dial = { rate = 5 }, store = "ctc_rate" }, nil, "there is none outside nginx" },
      { { dial = { rate = 5 }, store = "redis://nowhere" }, nil, "rate_limit.store: the Redis address" },
      { { dial = { rate = 5 }, name = "a b" }, nil, "rate_limit.name must be" },
    } do
      it("refuses " .. tostring(case[2] or case[3]), function()
        local v = case[1]
        if v == "a string" then v = case[2] end
        local c, err = new_with(v)
        assert.is_nil(c)
        assert.are.equal("argument", err.kind)
        assert.are.equal("rate_limit", err.field)
        assert.is_truthy(err.message:find(case[3], 1, true), err.message)
      end)
    end

    it("takes every op of the library, a store, a wait and fail_open", function()
      assert.is_truthy(new_with { dial = { rate = 5 }, bind_seat = { rate = 1, per = 60 }, balance = { rate = 2 },
                                  records_page = { rate = 10, wait = 30 }, download = { rate = 4 },
                                  wait = 0, fail_open = false, store = nil })
      assert.is_truthy(new_with { dial = { rate = 5 }, store = "redis://:pw@127.0.0.1:6379/2" }) -- no I/O yet
    end)
  end)

  it("refuses past the limit: nothing sent, kind rate_limited, retry_after, an event; the place frees", function()
    local c = client { dial = { rate = 3 } }
    for _ = 1, 3 do
      assert.is_truthy(dial(c))
      c.T = c.T + 0.1
    end
    local sid, err = dial(c)
    assert.is_nil(sid)
    assert.are.equal("rate_limited", err.kind)
    assert.is_false(err.sent)
    assert.is_true(err.retryable)
    assert.is_false(err.may_have_rung)
    assert.is_false(errors.may_have_rung(err))
    assert.is_true(math.abs(err.retry_after - 0.7) < 1e-9, tostring(err.retry_after))
    assert.is_truthy(err.message:find("dial: the rate limit (3 in any 1 s) is reached, so nothing was sent; " ..
                                      "the next may go in 0.700 s", 1, true), err.message)
    assert.are.equal(3, sent(c, "dial"))
    assert.same({}, c.slept)
    local ev = c.events[#c.events]
    assert.same({ "rate_limited", "dial", 0.7 }, { ev.type, ev.op, ev.retry_after })
    -- at retry_after the oldest place is free again, and only that one
    c.T = c.T + err.retry_after
    assert.is_truthy(dial(c))
    assert.are.equal("rate_limited", select(2, dial(c)).kind)
    assert.are.equal(4, sent(c, "dial"))
  end)

  it("limits each call on its own; a call without a limit is never counted", function()
    local c = client { dial = { rate = 1 }, balance = { rate = 2 } }
    assert.is_truthy(dial(c))
    assert.is_truthy(c.client:balance())
    assert.is_truthy(c.client:balance())
    assert.are.equal("rate_limited", select(2, c.client:balance()).kind)
    assert.are.equal("rate_limited", select(2, dial(c)).kind)
    for _ = 1, 5 do
      assert.is_truthy(c.client:bind_seat { seat = "PP1", phone = "13500000002" })
    end
  end)

  it("never lets more than rate through in any window of per seconds (a random storm)", function()
    local c = client { balance = { rate = 4, per = 0.5 } } -- balance: 600 dials would use the mock's credit up
    local admitted, refused = {}, 0
    local seed = 7
    for _ = 1, 600 do
      seed = (seed * 1103515245 + 12345) % 2147483648
      c.T = c.T + (seed % 1000) / 10000 -- 0 to 0.1 s apart
      local sid, err = c.client:balance()
      if sid then
        admitted[#admitted + 1] = c.T
      else
        assert.are.equal("rate_limited", err.kind, err.message)
        assert.is_true(err.retry_after > 0 and err.retry_after <= 0.5)
        refused = refused + 1
      end
    end
    assert.is_true(refused > 100 and #admitted > 100, refused .. " " .. #admitted)
    for i = 1, #admitted - 4 do
      -- the 5th admission after any one is at least per later: no window of per holds 5
      assert.is_true(admitted[i + 4] - admitted[i] >= 0.5 - 1e-9, i)
    end
  end)

  it("with wait, sleeps (the client's sleep) until its turn, up to the bound, then goes", function()
    local c = client { dial = { rate = 2, wait = 1.5 } }
    assert.is_truthy(dial(c))
    c.T = c.T + 0.25
    assert.is_truthy(dial(c))
    local t0 = c.T
    assert.is_truthy(dial(c)) -- waits 0.75 s for the first place
    assert.same({ 0.75 }, c.slept)
    assert.are.equal(t0 + 0.75, c.T)
    local waits = {}
    for _, e in ipairs(c.events) do
      if e.type == "rate_wait" then waits[#waits + 1] = e.op .. " " .. e.delay end
    end
    assert.same({ "dial 0.75" }, waits)
    assert.are.equal(3, sent(c, "dial"))
    -- the bound: a turn further away than wait is refused at once, without sleeping
    local d = client({ dial = { rate = 1, per = 10 }, wait = 2 })
    assert.is_truthy(dial(d))
    local _, err = dial(d)
    assert.are.equal("rate_limited", err.kind)
    assert.are.equal(10, err.retry_after)
    assert.same({}, d.slept)
  end)

  it("a dial refused by the rate limit releases its dial guard claim; force = true does not pass the limit",
     function()
    local dir = os.tmpname()
    os.remove(dir)
    finally(function() os.execute("rm -rf '" .. dir .. "'") end)
    local c = client({ dial = { rate = 1, per = 10 } }, { dial_guard = "file:" .. dir })
    assert.is_truthy(c.client:dial { caller = "13500000002", callee = "13500000003", seat = "PP1" })
    local _, err = c.client:dial { caller = "13500000002", callee = "13500000004", seat = "PP1" }
    assert.are.equal("rate_limited", err.kind)
    local _, forced = c.client:dial { caller = "13500000002", callee = "13500000005", seat = "PP1", force = true }
    assert.are.equal("rate_limited", forced.kind)
    c.T = c.T + 10
    -- the refused dial never left: clicking it again is no duplicate
    assert.is_truthy(c.client:dial { caller = "13500000002", callee = "13500000004", seat = "PP1" })
    assert.are.equal(2, sent(c, "dial"))
  end)

  it("counts each attempt: a retry is a request too", function()
    local c = client({ balance = { rate = 1, per = 60 } }, { retries = 2 })
    c.provider:fail("balance", 503, 1)
    local v, err = c.client:balance()
    assert.is_nil(v)
    assert.are.equal("rate_limited", err.kind)
    assert.are.equal(1, sent(c, "balance"))
  end)

  it("the jobs' pages wait their turn: records over several pages", function()
    local c = client { records_page = { rate = 1, per = 2, wait = 5 } }
    c.provider:seed_records(250, { start_time = 1704067200, end_time = 1704070800 })
    local n = 0
    for _ in c.client:records { start_time = 1704067200, end_time = 1704070800 } do n = n + 1 end
    assert.are.equal(250, n)
    local pages = sent(c, "records_page")
    assert.is_true(pages >= 3, pages)
    assert.are.equal(pages - 1, #c.slept) -- every page after the first waited
    for _, s in ipairs(c.slept) do assert.are.equal(2, s) end
  end)

  it("clients of one account share the places in this process; another name has its own", function()
    local a = client { dial = { rate = 1 }, name = "shared-one" }
    local b = client { dial = { rate = 1 }, name = "shared-one" }
    b.T = a.T
    assert.is_truthy(dial(a))
    assert.are.equal("rate_limited", select(2, dial(b)).kind)
    local other = client { dial = { rate = 1 }, name = "shared-two" }
    other.T = a.T
    assert.is_truthy(dial(other))
  end)

  it("metrics count the refusals and the waits by call", function()
    local m = assert(metrics.new {})
    local c = client({ dial = { rate = 1, per = 10 }, balance = { rate = 1, wait = 5 } }, {})
    local hooked = client({ dial = { rate = 1, per = 10 }, balance = { rate = 1, wait = 5 } },
                          { on_event = m.on_event })
    assert.is_truthy(c) -- the plain client is not counted
    local mc = m:instrument(hooked.client)
    mc:dial { caller = "13500000002", callee = "13500000003", seat = "PP1" }
    mc:dial { caller = "13500000002", callee = "13500000003", seat = "PP1" }
    mc:balance()
    mc:balance()
    local text = m:render()
    assert.is_truthy(text:find('clicktocall_rate_limited_total{op="dial"} 1', 1, true), text)
    assert.is_truthy(text:find('clicktocall_rate_limit_waits_total{op="balance"} 1', 1, true), text)
    assert.is_truthy(text:find('clicktocall_calls_total{op="dial",outcome="rate_limited"} 1', 1, true), text)
    local j = require "spec.helpers.jobs"
    local d = j.mkdtemp()
    j.write(d .. "/m.prom", text)
    local out = j.shell(("promtool check metrics < '%s/m.prom' 2>&1; echo \"exit=$?\""):format(d))
    j.rmtree(d)
    assert.are.equal("exit=0\n", out, out)
  end)

  it("clicktocall.log writes the refusal and the wait as lines of their own", function()
    local lines = {}
    local c = client({ dial = { rate = 1, per = 10 }, balance = { rate = 1, wait = 5 } },
                     { on_event = require("clicktocall.log").json(function(l) lines[#lines + 1] = l end) })
    dial(c)
    dial(c)
    c.client:balance()
    c.client:balance()
    local json = require "clicktocall.json"
    local seen = {}
    for _, l in ipairs(lines) do
      local e = json.decode(l)
      if e.event == "rate_limited" then
        seen[#seen + 1] = e.event .. " " .. e.op .. " " .. e.retry_after
      elseif e.event == "rate_wait" then
        seen[#seen + 1] = e.event .. " " .. e.op .. " " .. e.delay
      end
    end
    assert.same({ "rate_limited dial 10", "rate_wait balance 1" }, seen)
  end)

  it("errors.lua knows the kind: not sent, retryable", function()
    assert.is_true(errors.KINDS.rate_limited)
    local e = errors.new("rate_limited", "x")
    assert.is_false(e.sent)
    assert.is_true(e.retryable)
  end)
end)
