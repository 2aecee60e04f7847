-- The four calls on the wire: path, headers, exact body, and what they return.
local h = require "spec.helpers"
local clicktocall = require "clicktocall"

describe("wire format", function()
  it("bind_seat posts setingphone with userData, setingNbr, userPhone in that order", function()
    local client, m = h.client { h.ok("绑定成功") }
    assert.is_true(client:bind_seat { seat = " PP7568032251 ", phone = "139 1833 7711" })
    local req = m.requests[1]
    assert.equal("POST", req.method)
    assert.equal("https://api.example.com/management/add/setingphone", req.url)
    assert.equal('{"userData":"' .. h.USER_DATA .. '","setingNbr":"PP7568032251","userPhone":"+8613918337711"}',
                 req.body)
  end)

  it("dial posts voiceCall/api and returns the session id", function()
    local sid = "b82effb1-7555-4977-8acc-a00544f725c9_324874486"
    local client, m = h.client { h.ok(sid) }
    assert.equal(sid, client:dial { caller = "+86 181 5160 0001", callee = "0755-28000123", seat = "PP7568036551" })
    local req = m.requests[1]
    assert.equal("https://api.example.com/rest/voiceCall/api", req.url)
    assert.equal('{"callerNbr":"+8618151600001","calleeNbr":"+8675528000123","userData":"' .. h.USER_DATA
                 .. '","setingNbr":"PP7568036551"}', req.body)
  end)

  it("balance posts isallow with userData and returns the number", function()
    local client, m = h.client { h.ok(6152) }
    local left = client:balance()
    assert.equal(6152, left)
    if math.type then
      assert.equal("integer", math.type(left))
    end
    assert.equal("https://api.example.com/management/customer/isallow", m.requests[1].url)
    assert.equal('{"userData":"' .. h.USER_DATA .. '"}', m.requests[1].body)
  end)

  it("records_page posts call/record/voice with maxId, starTime, endTime, userData", function()
    local client, m = h.client { h.page(1, 3) }
    local recs, next_id = client:records_page { start_time = "2019-03-25 10:23:52", end_time = "2019-03-26 14:19:21" }
    assert.equal(3, #recs)
    assert.is_nil(next_id)
    assert.equal("https://api.example.com/call/record/voice", m.requests[1].url)
    assert.equal('{"maxId":0,"starTime":"2019-03-25 10:23:52","endTime":"2019-03-26 14:19:21","userData":"'
                 .. h.USER_DATA .. '"}', m.requests[1].body)
  end)

  it("sends the same headers on every call: JSON, base64 secret, user agent", function()
    local client, m = h.client({ h.ok(true), h.ok("sid"), h.ok(1), h.page(1, 0) }, { user_agent = "crm/2.1" })
    client:bind_seat { seat = "PP1", phone = "13500000002" }
    client:dial { caller = "13500000002", callee = "13500000003", seat = "PP1" }
    client:balance {}
    client:records_page { start_time = 0, end_time = 1 }
    assert.equal(4, #m.requests)
    for _, req in ipairs(m.requests) do
      assert.equal("application/json", req.headers["Content-Type"])
      assert.equal(h.SECRET_B64, req.headers.Authorization)
      assert.equal("clicktocall/" .. clicktocall._VERSION .. " crm/2.1", req.headers["User-Agent"])
      assert.equal(10, req.timeout)
      assert.equal(3, req.connect_timeout)
      assert.equal(8 * 1024 * 1024, req.max_body)
    end
  end)

  it("lets a call's user_data override the client's", function()
    local client, m = h.client { h.ok(5) }
    client:balance { user_data = "other-customer" }
    assert.equal('{"userData":"other-customer"}', m.requests[1].body)
  end)

  it("escapes quotes and backslashes in text fields", function()
    local client, m = h.client { h.ok(5) }
    client:balance { user_data = 'a"b\\c' }
    assert.equal('{"userData":"a\\"b\\\\c"}', m.requests[1].body)
    assert.same({ userData = 'a"b\\c' }, h.decode(m.requests[1].body))
  end)

  it("passes UTF-8 text through unchanged", function()
    local client, m = h.client { h.ok(true) }
    client:bind_seat { seat = "座席1", phone = "13500000002" }
    assert.equal("座席1", h.decode(m.requests[1].body).setingNbr)
  end)

  it("joins base_url with or without a trailing slash and keeps a path prefix", function()
    local client, m = h.client({ h.ok(1) }, { base_url = "http://gw.example.com:8080/ctc/" })
    client:balance()
    assert.equal("http://gw.example.com:8080/ctc/management/customer/isallow", m.requests[1].url)
  end)

  it("formats Unix seconds in the provider's clock, UTC+8", function()
    local client, m = h.client { h.page(1, 0) }
    client:records_page { start_time = 0, end_time = 1553566432 }
    local body = h.decode(m.requests[1].body)
    assert.equal("1970-01-01 08:00:00", body.starTime)
    assert.equal("2019-03-26 10:13:52", body.endTime)
  end)

  it("sends a max_id given as a string of digits exactly, past 2^53", function()
    local client, m = h.client { h.page(1, 0) }
    client:records_page { start_time = 0, end_time = 1, max_id = "9007199254740993" }
    assert.truthy(m.requests[1].body:find('"maxId":9007199254740993,', 1, true))
  end)
end)

describe("core.request", function()
  local core = require "clicktocall.core"
  local cfg = { base_url = "https://api.example.com", authorization = "Basic x", user_agent = "ua",
                country_code = "86", user_data = h.USER_DATA }

  it("marks only a dial as not safe to resend", function()
    for op, args in pairs {
      bind_seat = { seat = "P1", phone = "13500000002" },
      balance = {},
      records_page = { start_time = 0, end_time = 1 },
      dial = { caller = "13500000002", callee = "13500000003", seat = "P1" },
    } do
      local req = assert(core.request(op, cfg, args))
      assert.equal(op ~= "dial", req.resend_safe, op)
    end
  end)

  it("returns a dial's normalized parts as a third result", function()
    local req, asked, parts = core.request("dial", cfg,
                                           { caller = " 135 0000 0002", callee = "0755-28000123", seat = "  PP1 \t" })
    assert.is_table(req)
    assert.is_nil(asked)
    assert.same({ caller = "+8613500000002", callee = "+8675528000123", seat = "PP1" }, parts)
    local _, asked2, parts2 = core.request("records_page", cfg, { start_time = 0, end_time = 1, max_id = 7 })
    assert.equal(7, asked2)
    assert.is_nil(parts2)
  end)
end)

describe("core.response on a records page", function()
  local core = require "clicktocall.core"

  it("normalizes every record and keeps exact ids, whichever path reads the ids", function()
    local recs = {
      '{"id":5,"a":null,"n":2.0,"f":1.5}',
      '{"id":"9007199254740993","a":null,"n":3.0}', -- a string id: the raw bytes are read
      '{"a":null,"id":9007199254740995,"n":4.0}',   -- past 2^53: cjson's double is not exact
      '{"id":9007199254740996,"b":"x"}',
    }
    local body = '{"meta":{"success":true},"data":[' .. table.concat(recs, ",") .. "]}"
    local data, nxt = core.response("records_page", 200, body, 0)
    assert.is_table(data, nxt)
    assert.is_nil(nxt) -- fewer than a page
    assert.equal(4, #data)
    local want = { "5", "9007199254740993", "9007199254740995", "9007199254740996" }
    for i, rec in ipairs(data) do
      assert.equal(want[i], string.format("%s", rec.id):gsub("%.0$", ""))
      assert.is_nil(rec.a)
    end
    if math.type then
      assert.equal("integer", math.type(data[1].n))
      assert.equal("integer", math.type(data[3].n))
      assert.equal("float", math.type(data[1].f))
      assert.equal("integer", math.type(data[1].id))
    end
    -- all ids exact: no raw scan, same result
    data = core.response("records_page", 200, '{"meta":{"success":true},"data":[{"id":1,"z":null},{"id":2}]}')
    assert.equal(1, data[1].id)
    assert.equal(2, data[2].id)
    assert.is_nil(data[1].z)
  end)
end)
