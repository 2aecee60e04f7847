-- The four calls on the wire: path, headers, exact body, and what they return.
local h = require "spec.helpers"
local mc = require "spec.helpers.client"
local clicktocall = require "clicktocall"

describe("wire format", function()
  it("bind_seat posts setingphone with userData, setingNbr, userPhone in that order", function()
    local client, provider = mc.new()
    assert.is_true(client:bind_seat { seat = " PP7568032251 ", phone = "139 1833 7711" })
    local req = provider.requests[1]
    assert.equal("bind_seat", req.op)
    assert.equal("POST", req.method)
    assert.equal("https://api.example.com/management/add/setingphone", req.url)
    assert.equal('{"userData":"' .. h.USER_DATA .. '","setingNbr":"PP7568032251","userPhone":"+8613918337711"}',
                 req.raw_body)
    assert.equal("+8613918337711", provider:bound_phone("PP7568032251"))
  end)

  it("dial posts voiceCall/api and returns the session id", function()
    local client, provider = mc.new(nil, { seats = { PP7568036551 = "+8618151600001" } })
    local sid = client:dial { caller = "+86 181 5160 0001", callee = "0755-28000123", seat = "PP7568036551" }
    local rec = provider:records()[1]
    assert.is_string(sid)
    assert.equal(rec.sessionId, sid)
    assert.equal("+8675528000123", rec.calleeNum)
    local req = provider.requests[1]
    assert.equal("POST", req.method)
    assert.equal("https://api.example.com/rest/voiceCall/api", req.url)
    assert.equal('{"callerNbr":"+8618151600001","calleeNbr":"+8675528000123","userData":"' .. h.USER_DATA
                 .. '","setingNbr":"PP7568036551"}', req.raw_body)
  end)

  it("balance posts isallow with userData and returns the number", function()
    local client, provider = mc.new(nil, { balance = 6152 })
    local left = client:balance()
    assert.equal(6152, left)
    if math.type then
      assert.equal("integer", math.type(left))
    end
    local req = provider.requests[1]
    assert.equal("POST", req.method)
    assert.equal("https://api.example.com/management/customer/isallow", req.url)
    assert.equal('{"userData":"' .. h.USER_DATA .. '"}', req.raw_body)
  end)

  it("records_page posts call/record/voice with maxId, starTime, endTime, userData", function()
    local client, provider = mc.new()
    local seeded = provider:seed_records(3, { start_time = "2019-03-25 11:00:00", end_time = "2019-03-26 12:00:00" })
    local recs, next_id = client:records_page { start_time = "2019-03-25 10:23:52", end_time = "2019-03-26 14:19:21" }
    assert.equal(3, #recs)
    for i, rec in ipairs(recs) do
      assert.equal(seeded[i].sessionId, rec.sessionId)
    end
    assert.is_nil(next_id)
    local req = provider.requests[1]
    assert.equal("POST", req.method)
    assert.equal("https://api.example.com/call/record/voice", req.url)
    assert.equal('{"maxId":0,"starTime":"2019-03-25 10:23:52","endTime":"2019-03-26 14:19:21","userData":"'
                 .. h.USER_DATA .. '"}', req.raw_body)
  end)

  it("sends the same headers on every call: JSON, base64 secret, user agent", function()
    local client, provider = mc.new { user_agent = "crm/2.1" }
    -- the request tables as the transport gets them (the mock's log keeps headers and body, not the limits)
    local seen = {}
    local function keep(request, serve)
      seen[#seen + 1] = request
      return serve()
    end
    for _, op in ipairs { "bind_seat", "dial", "balance", "records_page" } do
      provider:fail(op, keep)
    end
    assert.is_true(client:bind_seat { seat = "PP1", phone = "13500000002" })
    assert.is_string(client:dial { caller = "13500000002", callee = "13500000003", seat = "PP1" })
    assert.is_number(client:balance {})
    assert.same({}, client:records_page { start_time = 0, end_time = 1 })
    assert.equal(4, #provider.requests)
    assert.equal(4, #seen)
    for i, req in ipairs(provider.requests) do
      assert.equal("application/json", req.headers["Content-Type"])
      assert.equal(h.SECRET_B64, req.headers.Authorization)
      assert.equal("clicktocall/" .. clicktocall._VERSION .. " crm/2.1", req.headers["User-Agent"])
      assert.equal(10, seen[i].timeout)
      assert.equal(3, seen[i].connect_timeout)
      assert.equal(8 * 1024 * 1024, seen[i].max_body)
    end
  end)

  it("lets a call's user_data override the client's", function()
    local client, provider = mc.new()
    provider:add_customer("other-customer", 5)
    assert.equal(5, client:balance { user_data = "other-customer" })
    assert.equal('{"userData":"other-customer"}', provider.requests[1].raw_body)
  end)

  it("escapes quotes and backslashes in text fields", function()
    local client, provider = mc.new()
    provider:add_customer('a"b\\c', 5)
    assert.equal(5, client:balance { user_data = 'a"b\\c' })
    assert.equal('{"userData":"a\\"b\\\\c"}', provider.requests[1].raw_body)
    assert.same({ userData = 'a"b\\c' }, provider.requests[1].body)
  end)

  it("passes UTF-8 text through unchanged", function()
    local client, provider = mc.new()
    assert.is_true(client:bind_seat { seat = "座席1", phone = "13500000002" })
    assert.equal("座席1", provider.requests[1].body.setingNbr)
    assert.equal("+8613500000002", provider:bound_phone("座席1"))
  end)

  it("joins base_url with or without a trailing slash and keeps a path prefix", function()
    for _, base in ipairs { "http://gw.example.com:8080/ctc/", "http://gw.example.com:8080/ctc" } do
      local client, provider = mc.new({ base_url = base }, { balance = 1 })
      assert.equal(1, client:balance())
      assert.equal("http://gw.example.com:8080/ctc/management/customer/isallow", provider.requests[1].url)
    end
  end)

  it("formats Unix seconds in the provider's clock, UTC+8", function()
    local client, provider = mc.new()
    assert.same({}, client:records_page { start_time = 0, end_time = 1553566432 })
    local body = provider:last_request("records_page").body
    assert.equal("1970-01-01 08:00:00", body.starTime)
    assert.equal("2019-03-26 10:13:52", body.endTime)
  end)

  it("sends a max_id given as a string of digits exactly, past 2^53", function()
    local client, provider = mc.new()
    client:records_page { start_time = 0, end_time = 1, max_id = "9007199254740993" }
    assert.truthy(provider.requests[1].raw_body:find('"maxId":9007199254740993,', 1, true))
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

  it("returns a dial's normalized caller, callee and seat after the cursor (values, no table)", function()
    local req, asked, caller, callee, seat = core.request("dial", cfg,
                                           { caller = " 135 0000 0002", callee = "0755-28000123", seat = "  PP1 \t" })
    assert.is_table(req)
    assert.is_nil(asked)
    assert.same({ "+8613500000002", "+8675528000123", "PP1" }, { caller, callee, seat })
    local _, asked2, parts2 = core.request("records_page", cfg, { start_time = 0, end_time = 1, max_id = 7 })
    assert.equal(7, asked2)
    assert.is_nil(parts2)
  end)

  it("leaves a dial's parts out when parts is false (a client without a guard)", function()
    local n = select("#", core.request("dial", cfg, { caller = "13500000002", callee = "13500000003", seat = "P1" },
                                       false))
    assert.equal(2, n)
  end)

  it("gives every call of a config with share_headers one headers table, and a fresh one otherwise", function()
    local args = { caller = "13500000002", callee = "13500000003", seat = "P1" }
    local shared = { base_url = cfg.base_url, authorization = "Basic x", user_agent = "ua", user_data = "u",
                     share_headers = true }
    local a, b = assert(core.request("dial", shared, args)), assert(core.request("balance", shared, {}))
    assert.equal(a.headers, b.headers)
    assert.same({ ["Content-Type"] = "application/json", Accept = "application/json", Authorization = "Basic x",
                  ["User-Agent"] = "ua" }, a.headers)
    assert.equal("https://api.example.com/rest/voiceCall/api", a.url)
    assert.equal("https://api.example.com/management/customer/isallow", b.url)
    local c, d = assert(core.request("dial", cfg, args)), assert(core.request("dial", cfg, args))
    assert.are_not.equal(c.headers, d.headers)
    assert.same(c.headers, d.headers)
  end)

  it("makes each URL from the base_url the config holds now", function()
    local own = { base_url = "http://one", authorization = "a", user_agent = "ua", user_data = "u" }
    assert.equal("http://one/management/customer/isallow", assert(core.request("balance", own, {})).url)
    own.base_url = "http://two"
    assert.equal("http://two/management/customer/isallow", assert(core.request("balance", own, {})).url)
  end)

  it("writes a dial's body the same way whether its values need escaping or not", function()
    local long = string.rep("u", 300)
    for _, ud in ipairs { "plain", 'quo"te', "back\\slash", long } do
      local req = assert(core.request("dial", cfg, { caller = "13500000002", callee = "13500000003",
                                                     seat = 'S"1', user_data = ud }))
      assert.same({ callerNbr = "+8613500000002", calleeNbr = "+8613500000003", userData = ud, setingNbr = 'S"1' },
                  h.decode(req.body))
      assert.equal(1, select(2, req.body:gsub('"callerNbr"', "")))
    end
    local req = assert(core.request("dial", cfg, { caller = "13500000002", callee = "13500000003", seat = "P1" }))
    assert.equal('{"callerNbr":"+8613500000002","calleeNbr":"+8613500000003","userData":"' .. h.USER_DATA
                 .. '","setingNbr":"P1"}', req.body)
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

describe("a transport function's requests", function()
  it("are its own: each has a fresh headers table (only libcurl's transport shares one)", function()
    local seen = {}
    local client = assert(require("clicktocall").new { base_url = "http://test", app_secret = "TEST",
      user_data = "UD-1", transport = function(request)
        seen[#seen + 1] = request
        return { status = 200, headers = {}, body = '{"meta":{"success":true,"message":"ok"},"data":"sid-1"}' }
      end })
    assert.equal("sid-1", client:dial { caller = "13500000002", callee = "13500000003", seat = "P1" })
    seen[1].headers.Authorization = "changed by the transport"
    assert.equal("sid-1", client:dial { caller = "13500000002", callee = "13500000003", seat = "P1" })
    assert.are_not.equal(seen[1].headers, seen[2].headers)
    assert.equal("VEVTVA==", seen[2].headers.Authorization)
    assert.is_false(seen[2].want_headers)
  end)
end)
