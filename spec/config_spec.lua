-- clicktocall.new{}: a bad option is an "argument" error naming it; it never raises.
local h = require "spec.helpers"
local clicktocall = require "clicktocall"

local function base(extra)
  local o = { base_url = "https://api.example.com", app_secret = "TEST", transport = h.mock().transport }
  for k, v in pairs(extra) do o[k] = v end
  return o
end

describe("new", function()
  it("makes a client from the two required options", function()
    local client, err = clicktocall.new { base_url = "http://127.0.0.1:1", app_secret = "TEST" }
    assert.is_nil(err)
    assert.matches("^clicktocall.client %(http://127.0.0.1:1%)$", tostring(client))
    assert.is_true(client:close())
    assert.is_true(client:close()) -- closing twice is fine
    local v, cerr = client:balance { user_data = "x" }
    assert.is_nil(v)
    assert.equal("argument", cerr.kind)
    assert.matches("closed", cerr.message)
  end)

  it("refuses a non-table", function()
    local client, err = clicktocall.new("https://api.example.com")
    assert.is_nil(client)
    assert.equal("bad argument #1 to 'new' (table expected, got string)", err.message)
  end)

  local bad = {
    { { base_url = "ftp://api.example.com" }, "base_url" },
    { { base_url = "file:///etc/passwd" }, "base_url" },
    { { base_url = "api.example.com" }, "base_url" },
    { { base_url = "https://" }, "base_url" },
    { { base_url = "https://api.example.com/a b" }, "base_url" },
    { { base_url = "https://api.example.com/?x=1" }, "base_url" },
    { { base_url = 42 }, "base_url" },
    { { app_secret = "" }, "app_secret" },
    { { app_secret = "a\nb" }, "app_secret" },
    { { app_secret = false }, "app_secret" },
    { { user_data = "" }, "user_data" },
    { { user_data = 7 }, "user_data" },
    { { timeout = -1 }, "timeout" },
    { { timeout = 0 }, "timeout" },
    { { timeout = 0 / 0 }, "timeout" },
    { { timeout = math.huge }, "timeout" },
    { { timeout = "10" }, "timeout" },
    { { connect_timeout = -3 }, "connect_timeout" },
    { { retries = -1 }, "retries" },
    { { retries = 1.5 }, "retries" },
    { { retries = 100 }, "retries" },
    { { max_body = 0 }, "max_body" },
    { { max_body = 1.5 }, "max_body" },
    { { transport = "carrier-pigeon" }, "transport" },
    { { transport = 42 }, "transport" },
    { { country_code = "china" }, "country_code" },
    { { country_code = 86 }, "country_code" },
    { { ca_file = "/nonexistent/ca.pem" }, "ca_file" },
    { { insecure = "yes" }, "insecure" },
    { { proxy = "http://proxy example:3128" }, "proxy" },
    { { user_agent = "x\r\nInjected: 1" }, "user_agent" },
    { { on_event = "print" }, "on_event" },
    { { tiemout = 5 }, "tiemout" },
  }
  for _, case in ipairs(bad) do
    local opts, field = case[1], case[2]
    it("refuses a bad " .. field .. " (" .. tostring(select(2, next(opts))) .. ")", function()
      local client, err = clicktocall.new(base(opts))
      assert.is_nil(client)
      assert.equal("argument", err.kind)
      assert.is_false(err.retryable)
      assert.is_false(err.sent)
      assert.matches(field, err.message, 1, true)
    end)
  end

  it("refuses a dial_guard outside OpenResty with a sentence", function()
    local client, err = clicktocall.new(base { dial_guard = "dials" })
    assert.is_nil(client)
    assert.equal("argument", err.kind)
    assert.matches("dial_guard", err.message)
  end)

  it("refuses transport = \"ngx\" outside OpenResty with a sentence", function()
    local client, err = clicktocall.new(base { transport = "ngx" })
    assert.is_nil(client)
    assert.equal("argument", err.kind)
    assert.matches("ngx", err.message)
  end)

  it("requires user_data from new{} or from the call, sending nothing without it", function()
    local m = h.mock()
    local client = assert(clicktocall.new { base_url = "https://a.example", app_secret = "S", transport = m.transport })
    local v, err = client:balance()
    assert.is_nil(v)
    assert.equal("argument", err.kind)
    assert.matches("user_data", err.message)
    assert.equal(0, #m.requests)
  end)

  it("refuses an empty or control-character seat or user_data in a call", function()
    local client, m = h.client {}
    for _, args in ipairs {
      { caller = "13500000002", callee = "13500000003", seat = "   " },
      { caller = "13500000002", callee = "13500000003", seat = "PP\0011" },
      { caller = "13500000002", callee = "13500000003", seat = "PP1", user_data = "a\tb" },
      { caller = "13500000002", callee = "13500000003", seat = "\255\254" },
      { caller = "13500000002", callee = "13500000003" },
      { caller = "13500000002", callee = "13500000003", seat = 7 },
    } do
      local v, err = client:dial(args)
      assert.is_nil(v)
      assert.equal("argument", err.kind)
    end
    assert.equal(0, #m.requests)
  end)

  it("takes country_code for numbers written without one", function()
    local client, m = h.client({ h.ok(true) }, { country_code = "1" })
    client:bind_seat { seat = "PP1", phone = "(415) 555-2671" }
    assert.equal("+14155552671", h.decode(m.requests[1].body).userPhone)
  end)
end)

describe("version", function()
  it("is one string: the core's, the module's and the rockspec's", function()
    local core = require "clicktocall.core"
    assert.equal(core._VERSION, clicktocall._VERSION)
    local f = assert(io.open("rockspec/clicktocall-scm-1.rockspec"))
    local spec = f:read("*a")
    f:close()
    local declared = spec:match('local CTC_VERSION = "([^"]+)"')
    assert.equal(declared, clicktocall._VERSION)
    local mk = assert(io.open("Makefile")):read("*a")
    assert.equal(declared, mk:match("CTC_VERSION%s*%?=%s*(%S+)"))
  end)
end)
