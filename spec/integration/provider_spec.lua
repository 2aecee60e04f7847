-- The real libcurl transport against the bundled simulator: the four calls end to end.
local sim = require "spec.helpers.sim"
local clicktocall = require "clicktocall"

describe("against the simulator #integration", function()
  local s, client

  setup(function()
    s = assert(sim.start())
    client = s:client()
  end)

  teardown(function()
    if client then client:close() end
    if s then s:stop() end
  end)

  before_each(function()
    s:reset()
  end)

  it("binds, dials, and sees the balance go down", function()
    local before = assert(client:balance())
    assert.is_true(client:bind_seat { seat = "PP7568032251", phone = "139-1833-7711" })
    local sid = assert(client:dial { caller = "13918337711", callee = "0755-28000123", seat = "PP7568032251" })
    assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+_%d+$", sid)
    local after = assert(client:balance())
    assert.is_true(after < before, ("balance %s -> %s"):format(before, after))
  end)

  it("sends the wire format the provider expects, as the simulator recorded it", function()
    client:bind_seat { seat = "PP1", phone = "13500000002" }
    client:dial { caller = "13500000002", callee = "13918000010", seat = "PP1" }
    client:balance()
    client:records_page { start_time = "2019-03-25 10:23:52", end_time = "2019-03-26 14:19:21" }
    local log = s:requests()
    assert.equal(4, #log)
    local bodies = {
      '{"userData":"' .. s.user_data .. '","setingNbr":"PP1","userPhone":"+8613500000002"}',
      '{"callerNbr":"+8613500000002","calleeNbr":"+8613918000010","userData":"' .. s.user_data
        .. '","setingNbr":"PP1"}',
      '{"userData":"' .. s.user_data .. '"}',
      '{"maxId":0,"starTime":"2019-03-25 10:23:52","endTime":"2019-03-26 14:19:21","userData":"'
        .. s.user_data .. '"}',
    }
    local uris = { "/management/add/setingphone", "/rest/voiceCall/api", "/management/customer/isallow",
                   "/call/record/voice" }
    for i, r in ipairs(log) do
      assert.equal("POST", r.method)
      assert.equal(uris[i], r.uri)
      assert.equal(bodies[i], r.body)
      assert.equal("VEVTVA==", r.authorization)
      assert.equal("application/json", r.content_type)
      assert.equal("clicktocall/" .. clicktocall._VERSION, r.user_agent)
      assert.equal(log[1].connection, r.connection) -- one keep-alive connection
    end
  end)

  it("refuses a dial on an unbound seat with the provider's message (api)", function()
    local sid, err = client:dial { caller = "13500000002", callee = "13918000010", seat = "PP-unbound" }
    assert.is_nil(sid)
    assert.equal("api", err.kind)
    assert.is_true(#err.message > 0)
    assert.is_false(err.retryable)
  end)

  it("refuses a dial when the balance is used up", function()
    s:post("/_sim/balance", { balance = 0 })
    client:bind_seat { seat = "PP1", phone = "13500000002" }
    local sid, err = client:dial { caller = "13500000002", callee = "13918000010", seat = "PP1" }
    assert.is_nil(sid)
    assert.equal("api", err.kind)
  end)

  it("a wrong secret is refused by the provider (api), and the secret is not in the error", function()
    local other = s:client { app_secret = "WRONG-secret" }
    local v, err = other:balance()
    assert.is_nil(v)
    assert.equal("api", err.kind)
    assert.is_nil(tostring(err):find("WRONG-secret", 1, true))
    other:close()
  end)

  it("pages through 1,050 seeded records: 11 pages, every id once, in order", function()
    local seeded = s:post("/_sim/seed", { count = 1050, start_time = "2024-01-01 00:00:00",
                                          end_time = "2024-01-01 23:00:00" })
    s:post("/_sim/requests/clear")
    local n, last = 0, seeded.first_id - 1
    for rec in client:records { start_time = "2024-01-01 00:00:00", end_time = "2024-01-02 00:00:00" } do
      n = n + 1
      assert.equal(last + 1, rec.id)
      last = rec.id
    end
    assert.equal(1050, n)
    assert.equal(seeded.last_id, last)
    assert.equal(11, #s:requests("/call/record/voice"))
  end)

  it("finds the records of a dial by its session id", function()
    client:bind_seat { seat = "PP1", phone = "13500000002" }
    local sid = assert(client:dial { caller = "13500000002", callee = "13918000010", seat = "PP1" })
    local now = os.time()
    local found
    for rec in client:records { start_time = now - 3600, end_time = now + 3 * 3600 } do
      if rec.sessionId == sid then found = rec end
    end
    assert.is_table(found)
    assert.equal("+8613500000002", found.callerNum)
    assert.equal("+8613918000010", found.calleeNum)
    assert.equal("1", found.recordFlag)
    assert.matches("^http://.+%.wav$", found.recordFileDownloadUrl)
  end)
end)
