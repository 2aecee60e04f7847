-- Every error kind, its fields, and the secret's absence everywhere.
local h = require "spec.helpers"
local mc = require "spec.helpers.client"
local clicktocall = require "clicktocall"

local DIAL = { caller = "13500000002", callee = "13500000003", seat = "PP1" }

-- a client whose provider answers `op` with `fault` first (nil: no fault)
local function fails(op, fault, call, opts)
  local client, provider = mc.new(opts)
  if fault ~= nil then
    provider:fail(op, fault)
  end
  local v, err = call(client)
  assert.is_nil(v)
  assert.is_table(err)
  return err, provider, client
end

local function balance(c) return c:balance() end
local function dial(c) return c:dial(DIAL) end
local function records_page(c) return c:records_page { start_time = 0, end_time = 1 } end

-- a 200 answer with exactly this body
local function body200(body)
  return { status = 200, body = body }
end

-- A client over a bare transport function, for the tests of the transport contract itself (what the
-- client makes of a transport that breaks it): the mock validates and wraps its answers, so it cannot.
local function contract_client(transport, opts)
  local o = { base_url = "https://api.example.com", app_secret = h.SECRET, user_data = h.USER_DATA,
              transport = transport, sleep = function() end }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(clicktocall.new(o))
end

describe("errors", function()
  it("argument: nothing is sent, not retryable, not sent", function()
    local err, provider = fails("dial", nil,
                                function(c) return c:dial { caller = "12", callee = "13500000002", seat = "PP1" } end)
    assert.equal("argument", err.kind)
    assert.is_false(err.retryable)
    assert.is_false(err.sent)
    assert.equal(0, provider:count())
    assert.equal("dial: caller: phone number has 2 digits; a Chinese mobile number has 11", err.message)
    assert.equal("caller", err.field)
    assert.equal("[argument] " .. err.message, tostring(err))
  end)

  it("argument: a call without its table says so, naming the call and no field", function()
    local err, provider = fails("dial", nil, function(c) return c:dial() end)
    assert.equal("dial: expected a table of fields, got nil", err.message)
    assert.is_nil(err.field)
    assert.equal(0, provider:count())
  end)

  it("argument: a method called with '.' instead of ':'", function()
    local client, provider = mc.new()
    local v, err = client.balance()
    assert.is_nil(v)
    assert.equal("argument", err.kind)
    assert.matches("clicktocall client expected", err.message)
    assert.equal(0, provider:count())
  end)

  it("network: a transport failure that never connected", function()
    local err = fails("balance", "refused", balance, { retries = 0 })
    assert.equal("network", err.kind)
    assert.is_true(err.retryable)
    assert.is_false(err.sent)
  end)

  it("network: a transport that returns a bare string counts as maybe sent", function()
    -- the transport contract: an error that is not a table
    local client = contract_client(function() return nil, "boom" end, { retries = 0 })
    local v, err = client:balance()
    assert.is_nil(v)
    assert.equal("network", err.kind)
    assert.equal("boom", err.message)
    assert.is_true(err.sent)
  end)

  it("timeout: kept as its own kind, retryable", function()
    local err, provider = fails("balance", "timeout", balance, { retries = 0 })
    assert.equal("timeout", err.kind)
    assert.is_true(err.retryable)
    assert.is_true(err.sent)
    assert.equal(1, provider:count("balance"))
  end)

  it("http: a non-2xx status with the status, retryable for 5xx", function()
    local err = fails("balance", { status = 503, body = "<html>busy</html>" }, balance, { retries = 0 })
    assert.equal("http", err.kind)
    assert.equal(503, err.status)
    assert.is_true(err.retryable)
    assert.is_true(err.sent)
    assert.matches("HTTP 503", err.message)
  end)

  it("http: 4xx is not retryable; 429 is", function()
    assert.is_false(fails("balance", 404, balance, { retries = 0 }).retryable)
    assert.is_false(fails("balance", 401, balance, { retries = 0 }).retryable)
    assert.is_true(fails("balance", { status = 429, retry_after = false }, balance, { retries = 0 }).retryable)
  end)

  it("http: uses the provider's meta.message when the error page has one", function()
    local err = fails("balance", { status = 500, body = '{"meta":{"success":false,"message":"db down"},"data":""}' },
                      balance, { retries = 0 })
    assert.equal("the server answered HTTP 500: db down", err.message)
  end)

  it("api: meta.success false carries the provider's message exactly", function()
    local err, provider = fails("dial", { api_error = "座席未绑定主叫号码" }, dial)
    assert.equal("api", err.kind)
    assert.equal("座席未绑定主叫号码", err.message)
    assert.is_false(err.retryable)
    assert.is_true(err.sent)
    assert.equal(200, err.status)
    assert.equal(1, provider:count("dial"))
    -- and the provider's own refusal: PP1 was never bound
    err = fails("dial", nil, dial)
    assert.equal("api", err.kind)
    assert.matches("^座席未绑定主叫号码", err.message)
    assert.is_false(err.retryable)
  end)

  it("auth: the provider refusing the credentials is marked err.auth = true, and nothing else is", function()
    -- a wrong secret: the provider answers in meta, as the simulator and the mock do
    for _, call in ipairs { balance, dial, records_page } do
      local err = fails("balance", nil, call, { app_secret = "not-the-secret" })
      assert.equal("api", err.kind)
      assert.equal("Authorization 验证失败 (wrong Authorization)", err.message)
      assert.is_true(err.auth)
    end
    -- HTTP 401 and 403, whatever the body
    for _, status in ipairs { 401, 403 } do
      local err = fails("balance", { status = status, body = "<html>no</html>" }, balance, { retries = 0 })
      assert.equal("http", err.kind)
      assert.is_true(err.auth, tostring(status))
    end
    -- anything else is not about the credentials
    assert.is_nil(fails("dial", { api_error = "座席未绑定主叫号码" }, dial).auth)
    assert.is_nil(fails("balance", { status = 500, body = '{"meta":{"success":false,"message":"Authorization ' ..
      'service down"},"data":""}' }, balance, { retries = 0 }).auth)
    assert.is_nil(fails("balance", { status = 404, body = "Not Found" }, balance, { retries = 0 }).auth)
    assert.is_nil(fails("balance", "timeout", balance, { retries = 0 }).auth)
  end)

  it("api: a refusal without a message still says what happened", function()
    local err = fails("balance", body200 '{"meta":{"success":false},"data":""}', balance)
    assert.equal("api", err.kind)
    assert.matches("refused", err.message)
  end)

  local protocol_cases = {
    { "not JSON", "bad_json", "not JSON" },
    { "not JSON (a gateway's page)", body200 "<html><body>502 Bad Gateway</body></html>", "not JSON" },
    { "truncated JSON", body200 '{"meta":{"success":true,"message":"ok"},"data":6', "not JSON" },
    { "no meta", body200 '{"data":5}', "no meta" },
    { "meta.success not boolean", body200 '{"meta":{"success":"yes"},"data":5}', "not a boolean" },
    { "a JSON array", body200 '[1,2]', "no meta" },
    { "a JSON string", body200 '"hello"', "not a JSON object" },
    { "an empty body", body200 "", "not JSON" },
    { "balance as a string", body200 '{"meta":{"success":true,"message":"ok"},"data":"6152"}', "not a number" },
  }
  for _, case in ipairs(protocol_cases) do
    it("protocol: " .. case[1], function()
      local err, provider = fails("balance", case[2], balance)
      assert.equal("protocol", err.kind)
      assert.matches(case[3], err.message)
      assert.is_false(err.retryable)
      assert.is_true(err.sent)
      assert.equal(1, provider:count("balance"))
    end)
  end

  it("protocol: a dial whose data is not a session id", function()
    for _, data in ipairs { 12345, "", h.null } do
      local err = fails("dial", body200(h.json { meta = { success = true, message = "ok" }, data = data }), dial)
      assert.equal("protocol", err.kind)
      assert.matches("session id", err.message)
    end
  end)

  it("protocol: records whose data is not an array", function()
    for _, body in ipairs { '{"meta":{"success":true},"data":"x"}', '{"meta":{"success":true},"data":{}}',
                            '{"meta":{"success":true},"data":5}' } do
      local err = fails("records_page", body200(body), records_page)
      assert.equal("protocol", err.kind)
      assert.matches("not an array", err.message)
    end
  end)

  it("protocol: a transport that returns garbage instead of a response", function()
    -- the transport contract: a status that is a string
    local client = contract_client(function() return { status = "200" } end)
    local v, err = client:balance()
    assert.is_nil(v)
    assert.equal("protocol", err.kind)
  end)

  it("errors from the libcurl transport print as [kind][CURLE_X] detail (code)", function()
    local err = fails("balance", function()
      return nil, { kind = "network", message = "Failed to connect", sent = false, code = 7,
                    code_name = "CURLE_COULDNT_CONNECT" }
    end, balance, { retries = 0 })
    assert.equal("[network][CURLE_COULDNT_CONNECT] Failed to connect (7)", tostring(err))
  end)

  it("is_error tells error values apart", function()
    local err = fails("balance", 500, balance, { retries = 0 })
    assert.is_true(clicktocall.is_error(err))
    assert.is_false(clicktocall.is_error({ kind = "http" }))
  end)
end)

describe("the secret", function()
  local function assert_no_secret(s)
    assert.is_nil(s:find(h.SECRET, 1, true), "secret leaked in: " .. s)
    assert.is_nil(s:find(h.SECRET_B64, 1, true), "base64 secret leaked in: " .. s)
  end

  it("never appears in tostring(client)", function()
    local client = mc.new()
    assert_no_secret(tostring(client))
    for _, s in ipairs(h.strings(client)) do
      assert_no_secret(s)
    end
  end)

  it("is redacted from api, http and transport errors that echo it, and from events", function()
    local echo = "bad key " .. h.SECRET .. " / " .. h.SECRET_B64
    local client, provider, events = mc.new { retries = 0 }
    provider:fail("balance", { api_error = echo })
      :fail("balance", { status = 500, body = '{"meta":{"success":false,"message":"' .. echo .. '"}}' })
      :fail("balance", function() return nil, { kind = "network", message = echo, sent = false } end)
      :fail("balance", body200("<html>" .. echo .. "</html>"))
    for _ = 1, 4 do
      local _, err = client:balance()
      assert_no_secret(tostring(err))
      assert_no_secret(err.message)
      assert.matches("***", err.message, 1, true)
    end
    assert.equal(4, provider:count("balance"))
    assert.is_true(#events >= 8)
    for _, e in ipairs(events) do
      for _, s in ipairs(h.strings(e)) do
        assert_no_secret(s)
      end
    end
  end)

  it("is redacted from argument errors of new{}", function()
    local _, err = clicktocall.new { base_url = "http://x", app_secret = h.SECRET, transport = "nope" }
    assert_no_secret(tostring(err))
  end)
end)

describe("core.response error text", function()
  local core = require "clicktocall.core"
  local SECRET = "0123456789abcdef0123"

  it("redacts each secret in the whole body before the excerpt is cut", function()
    -- the secret straddles the 60-byte excerpt: cutting first would leave a part of it
    local body = string.rep("x", 50) .. SECRET .. string.rep("y", 40)
    for _, status in ipairs { 502, 200 } do
      local v, err = core.response("balance", status, body, nil, { "other", SECRET })
      assert.is_nil(v)
      local kind, msg = err.kind, err.message
      assert.equal(status == 200 and "protocol" or "http", kind)
      assert.is_nil(msg:find("0123456", 1, true), msg)
      assert.matches("xxx***", msg, 1, true)
    end
  end)

  it("redacts secrets from meta.message of api and http errors; a NUL survives", function()
    local body = h.json { meta = { success = false, message = "seat \0 busy, key " .. SECRET .. "!" } }
    local _, err = core.response("balance", 200, body, nil, { SECRET })
    assert.same({ kind = "api", message = "seat \0 busy, key ***!", sent = true }, err)
    _, err = core.response("balance", 503, body, nil, { SECRET, "" })
    assert.equal("http", err.kind)
    assert.equal("the server answered HTTP 503: seat \0 busy, key ***!", err.message)
    -- without secrets the message is the provider's, exactly
    _, err = core.response("dial", 200, h.json { meta = { success = false, message = "a\0b" } })
    assert.equal("api", err.kind)
    assert.equal("a\0b", err.message)
  end)

  it("a status that is not an integer from 100 to 599 is a protocol error", function()
    for _, status in ipairs { 1e300, -1e300, 0 / 0, 1 / 0, 99, 600, 200.5, 2 ^ 31, -2 ^ 31 } do
      local v, err = core.response("balance", status, h.json { meta = { success = true }, data = 1 })
      assert.is_nil(v)
      assert.equal("protocol", err.kind, tostring(status))
      assert.matches("HTTP status", err.message)
    end
    assert.equal(1, core.response("balance", 200, h.json { meta = { success = true }, data = 1 }))
  end)
end)

describe("core.response record ids in messages", function()
  local core = require "clicktocall.core"

  it("prints ids of 15 digits and more exactly when a page does not advance", function()
    for _, id in ipairs { "123456789012345", "9007199254740992", "9007199254740993" } do
      local body = '{"meta":{"success":true},"data":[{"id":' .. id .. '},{"id":' .. id .. '}]}'
      local v, err = core.response("records_page", 200, body, "1")
      assert.is_nil(v)
      assert.equal("protocol", err.kind)
      assert.equal("page ids do not advance: record 2 has id " .. id .. ", not above " .. id, err.message)
    end
  end)
end)

describe("the core's one failure shape", function()
  local core = require "clicktocall.core"

  it("core.request fails with nil and an argument error table, nothing sent", function()
    local cfg = { base_url = "http://x", authorization = "a", user_agent = "u", user_data = "d" }
    local req, err = core.request("dial", cfg, { caller = "12", callee = "13500000003", seat = "P" })
    assert.is_nil(req)
    assert.same({ kind = "argument", sent = false, field = "caller",
                  message = "caller: phone number has 2 digits; a Chinese mobile number has 11" }, err)
  end)

  it("core.response fails with nil and an error table, sent", function()
    local v, err = core.response("balance", 200, '{"meta":{"success":true},"data":"x"}')
    assert.is_nil(v)
    assert.same({ kind = "protocol", message = "response data is not a number", sent = true }, err)
  end)

  it("the libcurl transport fails with the same shape, plus libcurl's code", function()
    local t = core.curl_transport()
    local res, err = t:perform { method = "GET", url = "ftp://127.0.0.1/" }
    assert.is_nil(res)
    assert.equal("protocol", err.kind)
    assert.is_false(err.sent)
    assert.equal("CURLE_UNSUPPORTED_PROTOCOL", err.code_name)
    assert.is_string(err.message)
    t:close()
  end)
end)
