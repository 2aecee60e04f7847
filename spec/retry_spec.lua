-- Retries with capped, jittered exponential backoff; Retry-After; a dial sent at most once.
local mc = require "spec.helpers.client"

local DIAL = { caller = "13500000002", callee = "13918000010", seat = "PP1" }
local SEATS = { PP1 = "+8613500000002" } -- DIAL's seat, bound to its caller, so the provider places it

-- a 5xx or 429 with an empty body and no Retry-After
local function bare(status)
  return { status = status, body = "", retry_after = false }
end

describe("retries of idempotent calls", function()
  it("retry transient failures up to `retries` times, then succeed", function()
    local client, provider = mc.new(nil, { balance = 42 })
    provider:fail("balance", bare(503)):fail("balance", "reset_after_send")
    assert.equal(42, client:balance())
    assert.equal(3, provider:count("balance"))
    assert.equal(2, #provider.slept)
    assert.equal(0, provider:pending_faults())
  end)

  it("give up after retries + 1 attempts with the last error", function()
    local client, provider = mc.new()
    provider:fail("balance", bare(500)):fail("balance", bare(502)):fail("balance", bare(504))
    local v, err = client:balance()
    assert.is_nil(v)
    assert.equal(504, err.status)
    assert.equal(3, provider:count("balance"))
  end)

  it("honour retries = 0", function()
    local client, provider = mc.new { retries = 0 }
    provider:fail("balance", bare(503))
    assert.is_nil(client:balance())
    assert.equal(1, provider:count("balance"))
  end)

  it("retry timeouts and 429", function()
    local client, provider = mc.new(nil, { balance = 7 })
    provider:fail("balance", "timeout"):fail("balance", bare(429))
    assert.equal(7, client:balance())
    assert.equal(3, provider:count("balance"))
  end)

  it("do not retry what cannot get better: api refusals, 4xx, protocol errors", function()
    for _, fault in ipairs { { api_error = "no" }, bare(400), bare(403), "bad_json" } do
      local client, provider = mc.new(nil, { balance = 1 })
      provider:fail("balance", fault)
      assert.is_nil(client:balance())
      assert.equal(1, provider:count("balance"))
      assert.equal(0, #provider.slept)
    end
  end)

  it("back off exponentially with jitter, capped at backoff_max", function()
    local client, provider = mc.new { retries = 6, backoff_base = 1, backoff_max = 8 }
    provider:fail("balance", bare(503), 7)
    assert.is_nil(client:balance())
    assert.equal(7, provider:count("balance"))
    assert.equal(6, #provider.slept)
    local caps = { 1, 2, 4, 8, 8, 8 }
    for i, s in ipairs(provider.slept) do
      assert.is_true(s >= caps[i] * 0.5 and s <= caps[i], ("sleep %d was %s"):format(i, s))
    end
  end)

  it("jitter spreads the delays of clients that failed together", function()
    local seen = {}
    for _ = 1, 20 do
      local client, provider = mc.new { backoff_base = 1 }
      provider:fail("balance", bare(503))
      client:balance()
      seen[provider.slept[1]] = true
    end
    local distinct = 0
    for _ in pairs(seen) do distinct = distinct + 1 end
    assert.is_true(distinct > 10)
  end)

  it("honour Retry-After in seconds", function()
    local client, provider = mc.new(nil, { balance = 1 })
    provider:fail("balance", { status = 429, body = "", retry_after = 3 })
    assert.equal(1, client:balance())
    assert.same({ 3 }, provider.slept)
  end)

  it("honour Retry-After as an HTTP date, whatever the header's case", function()
    local when = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 5)
    local client, provider = mc.new(nil, { balance = 1 })
    -- a function fault: the mock lower-cases the header names of a canned answer, and the case is the point
    provider:fail("balance", function()
      return { status = 503, headers = { ["Retry-After"] = when }, body = "" }
    end)
    assert.equal(1, client:balance())
    assert.is_true(provider.slept[1] >= 3 and provider.slept[1] <= 6, "slept " .. tostring(provider.slept[1]))
  end)

  it("do not wait longer than retry_after_max: return the error with retry_after", function()
    local client, provider = mc.new({ retry_after_max = 30 }, { balance = 1 })
    provider:fail("balance", { status = 503, body = "", headers = { ["retry-after"] = "120" } })
    local v, err = client:balance()
    assert.is_nil(v)
    assert.equal(120, err.retry_after)
    assert.equal(1, provider:count("balance"))
    assert.equal(0, #provider.slept)
  end)

  it("report each attempt and retry through on_event", function()
    local client, provider, events = mc.new(nil, { balance = 1 })
    provider:fail("balance", bare(503))
    client:balance()
    local types = {}
    for _, e in ipairs(events) do types[#types + 1] = e.type .. ":" .. e.attempt end
    assert.same({ "request:1", "response:1", "retry:1", "request:2", "response:2" }, types)
    assert.equal(503, events[2].status)
    assert.equal("POST", events[1].method)
    assert.equal("https://api.example.com/management/customer/isallow", events[1].url)
    assert.equal(200, events[5].status)
    assert.is_number(events[5].elapsed)
    assert.equal(events[3].delay, provider.slept[1])
  end)

  it("a failing on_event hook does not fail the call", function()
    local client = mc.new({ on_event = function() error("hook broke") end }, { balance = 1 })
    assert.equal(1, client:balance())
  end)
end)

describe("a dial", function()
  it("is never sent twice after a failure that may have reached the server", function()
    -- each fault, and whether the provider placed the call before the client heard of the failure
    for _, case in ipairs {
      { "reset_after_send", true }, { "timeout", true }, { bare(500) }, { bare(502) }, { bare(503) }, { 429 },
      { { status = 200, body = "<html>" } }, { { status = 200, body = '{"meta":{"success":true},"data":' } },
      { function() return nil, "a string error" end },
    } do
      local client, provider = mc.new({ retries = 5 }, { seats = SEATS })
      provider:fail("dial", case[1])
      local sid, err = client:dial(DIAL)
      assert.is_nil(sid)
      assert.is_table(err)
      assert.equal(1, provider:count("dial"))
      assert.equal(case[2] and 1 or 0, provider.dials)
      assert.equal(0, #provider.slept)
    end
  end)

  it("reports sent = true when the call may have been placed", function()
    local client, provider = mc.new(nil, { seats = SEATS })
    provider:fail("dial", "reset_after_send")
    local _, err = client:dial(DIAL)
    assert.is_true(err.sent)
    assert.equal(1, provider.dials) -- and it was
  end)

  it("is retried when the transport proves nothing was sent", function()
    local client, provider = mc.new(nil, { seats = SEATS })
    provider:fail("dial", "refused", 2)
    local sid = client:dial(DIAL)
    assert.equal(provider:records()[1].sessionId, sid)
    assert.equal(3, provider:count("dial"))
    assert.equal(1, provider.dials)
  end)

  it("stops after `retries` even when nothing was sent", function()
    local client, provider = mc.new({ retries = 2 }, { seats = SEATS })
    provider:fail("dial", "refused", 3)
    local sid, err = client:dial(DIAL)
    assert.is_nil(sid)
    assert.is_false(err.sent)
    assert.equal(3, provider:count("dial"))
    assert.equal(0, provider.dials)
  end)

  it("is not retried on a not-sent failure that is not a network one", function()
    local client, provider = mc.new(nil, { seats = SEATS })
    provider:fail("dial", function() return nil, { kind = "protocol", message = "odd", sent = false } end)
    assert.is_nil(client:dial(DIAL))
    assert.equal(1, provider:count("dial"))
    assert.equal(0, provider.dials)
  end)
end)
