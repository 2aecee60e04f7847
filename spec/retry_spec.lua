-- Retries with capped, jittered exponential backoff; Retry-After; a dial sent at most once.
local h = require "spec.helpers"

local DIAL = { caller = "13500000002", callee = "13918000010", seat = "PP1" }
local NOT_SENT = { err = { kind = "network", message = "connection refused", sent = false } }
local SENT = { err = { kind = "network", message = "connection reset", sent = true } }
local TIMEOUT = { err = { kind = "timeout", message = "timed out", sent = true } }

describe("retries of idempotent calls", function()
  it("retry transient failures up to `retries` times, then succeed", function()
    local client, m = h.client { h.raw(503, ""), SENT, h.ok(42) }
    assert.equal(42, client:balance())
    assert.equal(3, #m.requests)
    assert.equal(2, #m.sleeps)
  end)

  it("give up after retries + 1 attempts with the last error", function()
    local client, m = h.client({ h.raw(500, ""), h.raw(502, ""), h.raw(504, ""), h.ok(1) })
    local v, err = client:balance()
    assert.is_nil(v)
    assert.equal(504, err.status)
    assert.equal(3, #m.requests)
  end)

  it("honour retries = 0", function()
    local client, m = h.client({ h.raw(503, ""), h.ok(1) }, { retries = 0 })
    assert.is_nil(client:balance())
    assert.equal(1, #m.requests)
  end)

  it("retry timeouts and 429", function()
    local client, m = h.client { TIMEOUT, h.raw(429, ""), h.ok(7) }
    assert.equal(7, client:balance())
    assert.equal(3, #m.requests)
  end)

  it("do not retry what cannot get better: api refusals, 4xx, protocol errors", function()
    for _, answer in ipairs { h.refused("no"), h.raw(400, ""), h.raw(403, ""), h.raw(200, "nope") } do
      local client, m = h.client { answer, h.ok(1) }
      assert.is_nil(client:balance())
      assert.equal(1, #m.requests)
      assert.equal(0, #m.sleeps)
    end
  end)

  it("back off exponentially with jitter, capped at backoff_max", function()
    local queue = {}
    for i = 1, 7 do queue[i] = h.raw(503, "") end
    local client, m = h.client(queue, { retries = 6, backoff_base = 1, backoff_max = 8 })
    assert.is_nil(client:balance())
    assert.equal(6, #m.sleeps)
    local caps = { 1, 2, 4, 8, 8, 8 }
    for i, s in ipairs(m.sleeps) do
      assert.is_true(s >= caps[i] * 0.5 and s <= caps[i], ("sleep %d was %s"):format(i, s))
    end
  end)

  it("jitter spreads the delays of clients that failed together", function()
    local seen = {}
    for _ = 1, 20 do
      local client, m = h.client({ h.raw(503, ""), h.ok(1) }, { backoff_base = 1 })
      client:balance()
      seen[m.sleeps[1]] = true
    end
    local distinct = 0
    for _ in pairs(seen) do distinct = distinct + 1 end
    assert.is_true(distinct > 10)
  end)

  it("honour Retry-After in seconds", function()
    local client, m = h.client { h.raw(429, "", { ["retry-after"] = "3" }), h.ok(1) }
    assert.equal(1, client:balance())
    assert.same({ 3 }, m.sleeps)
  end)

  it("honour Retry-After as an HTTP date, whatever the header's case", function()
    local when = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 5)
    local client, m = h.client { h.raw(503, "", { ["Retry-After"] = when }), h.ok(1) }
    assert.equal(1, client:balance())
    assert.is_true(m.sleeps[1] >= 3 and m.sleeps[1] <= 6, "slept " .. tostring(m.sleeps[1]))
  end)

  it("do not wait longer than retry_after_max: return the error with retry_after", function()
    local client, m = h.client({ h.raw(503, "", { ["retry-after"] = "120" }), h.ok(1) }, { retry_after_max = 30 })
    local v, err = client:balance()
    assert.is_nil(v)
    assert.equal(120, err.retry_after)
    assert.equal(1, #m.requests)
    assert.equal(0, #m.sleeps)
  end)

  it("report each attempt and retry through on_event", function()
    local client, m = h.client { h.raw(503, ""), h.ok(1) }
    client:balance()
    local types = {}
    for _, e in ipairs(m.events) do types[#types + 1] = e.type .. ":" .. e.attempt end
    assert.same({ "request:1", "response:1", "retry:1", "request:2", "response:2" }, types)
    assert.equal(503, m.events[2].status)
    assert.equal("POST", m.events[1].method)
    assert.equal("https://api.example.com/management/customer/isallow", m.events[1].url)
    assert.equal(200, m.events[5].status)
    assert.is_number(m.events[5].elapsed)
  end)

  it("a failing on_event hook does not fail the call", function()
    local client = h.client({ h.ok(1) }, { on_event = function() error("hook broke") end })
    assert.equal(1, client:balance())
  end)
end)

describe("a dial", function()
  it("is never sent twice after a failure that may have reached the server", function()
    for _, answer in ipairs { SENT, TIMEOUT, h.raw(500, ""), h.raw(502, ""), h.raw(503, ""), h.raw(429, ""),
                              h.raw(200, "<html>"), h.raw(200, '{"meta":{"success":true},"data":'),
                              { err = "a string error" } } do
      local client, m = h.client({ answer, h.ok("sid") }, { retries = 5 })
      local sid, err = client:dial(DIAL)
      assert.is_nil(sid)
      assert.is_table(err)
      assert.equal(1, #m.requests)
      assert.equal(0, #m.sleeps)
    end
  end)

  it("reports sent = true when the call may have been placed", function()
    local client = h.client { SENT }
    local _, err = client:dial(DIAL)
    assert.is_true(err.sent)
  end)

  it("is retried when the transport proves nothing was sent", function()
    local client, m = h.client { NOT_SENT, NOT_SENT, h.ok("sid-9") }
    assert.equal("sid-9", client:dial(DIAL))
    assert.equal(3, #m.requests)
  end)

  it("stops after `retries` even when nothing was sent", function()
    local client, m = h.client({ NOT_SENT, NOT_SENT, NOT_SENT, h.ok("x") }, { retries = 2 })
    local sid, err = client:dial(DIAL)
    assert.is_nil(sid)
    assert.is_false(err.sent)
    assert.equal(3, #m.requests)
  end)

  it("is not retried on a not-sent failure that is not a network one", function()
    local client, m = h.client { { err = { kind = "protocol", message = "odd", sent = false } }, h.ok("x") }
    assert.is_nil(client:dial(DIAL))
    assert.equal(1, #m.requests)
  end)
end)
