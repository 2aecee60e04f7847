-- Redis as production runs it: AUTH (password, ACL user), a database number, TLS with a CA file, and a Redis
-- that answers slowly or drops the connection (the whole command bounded by the timeout). Outside nginx.
local redis = require "clicktocall.redis"
local dial_guard = require "clicktocall.dial_guard"
local lease = require "clicktocall.lease"
local helper = require "spec.helpers.redis"
local socket = require "socket"

local CANARY = "Canary-pw-7f3e9a"

local function no_canary(...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    local s = type(v) == "table" and (tostring(v.message) .. tostring(v)) or tostring(v)
    assert.is_nil(s:find(CANARY, 1, true), "the password leaked: " .. s)
  end
end

describe("redis URL with credentials and TLS", function()
  it("takes user, password (percent-decoded), db, rediss:// and ?ca_file=", function()
    assert.same({ host = "h", port = 1, db = 3, user = "app", password = "p@ss:w", tls = false },
                redis.parse_url("redis://app:p%40ss:w@h:1/3"))
    assert.same({ host = "h", port = 1, db = 0, password = "pw", tls = false }, redis.parse_url("redis://:pw@h:1"))
    assert.same({ host = "h", port = 1, db = 0, password = "pw", tls = false }, redis.parse_url("redis://pw@h:1"))
    assert.same({ host = "h", port = 6380, db = 2, tls = true, ca_file = "/etc/ca.pem" },
                redis.parse_url("rediss://h:6380/2?ca_file=/etc/ca.pem"))
  end)

  it("refuses a bad one without ever naming the password", function()
    for _, url in ipairs {
      "redis://u:" .. CANARY .. "@h", "redis://u:" .. CANARY .. "@h:0", "redis://u:" .. CANARY .. "@h:1/x",
      "redis://u:" .. CANARY .. "@h:1?ca_file=/x", "rediss://u:" .. CANARY .. "@h:1?x=1", "redis://app:@h:1",
    } do
      local cfg, err = redis.parse_url(url)
      assert.is_nil(cfg, url)
      assert.truthy(err:find("Redis", 1, true), err)
      no_canary(err)
    end
  end)
end)

describe("redis TLS names", function()
  it("a certificate must name the host: exactly, or by a one-label wildcard, never a wildcard for an IP", function()
    assert.is_true(redis.cert_names_match({ "127.0.0.1" }, "127.0.0.1"))
    assert.is_true(redis.cert_names_match({ "x", "Redis.Example" }, "redis.example"))
    assert.is_true(redis.cert_names_match({ "*.example" }, "redis.example"))
    assert.is_false(redis.cert_names_match({ "*.example" }, "a.redis.example"))
    assert.is_false(redis.cert_names_match({ "*.0.0.1" }, "127.0.0.1"))
    assert.is_false(redis.cert_names_match({ "other.example" }, "redis.example"))
    assert.is_false(redis.cert_names_match({}, "redis.example"))
  end)
end)

describe("redis AUTH and database #redis", function()
  local srv
  setup(function()
    srv = assert(helper.start { password = CANARY, user = { "dialer", CANARY .. "-u" } })
  end)
  teardown(function()
    if srv then srv:destroy() end
  end)
  local base = function(cred, db)
    return "redis://" .. cred .. "@127.0.0.1:" .. srv.port .. (db and "/" .. db or "")
  end

  it("with the password and with an ACL user, in database 3: the guard and the lease work", function()
    for _, cred in ipairs { ":" .. CANARY, "dialer:" .. CANARY .. "-u" } do
      local g = assert(dial_guard.new(base(cred, 3), 60))
      local claim = assert(g:check("1", "2", "s", "ud"))
      local again, err, kind = g:check("1", "2", "s", "ud")
      assert.is_nil(again)
      assert.equal("duplicate", kind, err)
      assert.equal(1, srv:cmd("DBSIZE") == 0 and 1 or 0) -- nothing in database 0
      assert.equal("OK", srv:cmd("SELECT", 3))
      g:release("1", "2", "s", "ud", claim)
      local st = { connect_timeout = 2, secrets = {} }
      local l = assert(lease.acquire(st, base(cred, 3), "sync", "ud-" .. cred:sub(1, 3), 5000))
      l:unlock()
    end
  end)

  it("the keys land in database 3", function()
    local r = assert(redis.new(base(":" .. CANARY, 3), 2))
    assert.is_true(r:set_nx("in3", "v", 60000))
    local c = socket.tcp()
    c:settimeout(2)
    assert(c:connect("127.0.0.1", srv.port))
    c:send(redis.encode { "AUTH", CANARY } .. redis.encode { "EXISTS", "in3" } .. redis.encode { "SELECT", 3 } ..
           redis.encode { "EXISTS", "in3" })
    assert.equal("OK", redis.read_reply(c))
    assert.equal(0, redis.read_reply(c))
    assert.equal("OK", redis.read_reply(c))
    assert.equal(1, redis.read_reply(c))
    c:close()
  end)

  it("a wrong or missing password: a clear refusal, nothing dialled, the password named nowhere", function()
    for _, url in ipairs { base(":wrong-" .. CANARY), base("dialer:wrong-" .. CANARY), srv.url } do
      local r = assert(redis.new(url, 2))
      no_canary(r, r.where, r.pool)
      local ok, err = r:set_nx("k", "v", 1000)
      assert.is_nil(ok)
      assert.truthy(err:find("AUTH", 1, true) or err:find("NOAUTH", 1, true), err)
      no_canary(err)
      local g = assert(dial_guard.new(url, 60))
      local claim, gerr, kind = g:check("1", "2", "s", "ud")
      assert.is_nil(claim)
      assert.equal("network", kind)
      assert.truthy(gerr:find("not sent", 1, true), gerr)
      no_canary(gerr)
      local st = { connect_timeout = 2, secrets = {} }
      local l, lerr = lease.acquire(st, url, "sync", "ud")
      assert.is_nil(l)
      assert.equal("network", lerr.kind)
      assert.is_false(lerr.sent)
      no_canary(lerr.message)
    end
  end)
end)

describe("redis over TLS (LuaSec) #redis", function()
  local srv
  setup(function()
    srv = assert(helper.start { password = CANARY, tls = true })
  end)
  teardown(function()
    if srv then srv:destroy() end
  end)
  local function url(ca, scheme)
    return (scheme or "rediss") .. "://:" .. CANARY .. "@127.0.0.1:" .. srv.tls_port .. "/2" ..
           (ca and "?ca_file=" .. ca or "")
  end

  it("with the right CA: the guard claims, in database 2", function()
    local g = assert(dial_guard.new(url(srv.ca_file), 60))
    assert.truthy(g:check("1", "2", "s", "tls"))
    local _, _, kind = g:check("1", "2", "s", "tls")
    assert.equal("duplicate", kind)
    local st = { connect_timeout = 2, secrets = {} }
    assert.truthy(lease.acquire(st, url(srv.ca_file), "sync", "tls", 5000))
  end)

  it("with another CA: refused, nothing claimed, the password named nowhere", function()
    local g = assert(dial_guard.new(url(srv.other_ca), 60))
    local claim, err, kind = g:check("1", "2", "s", "other")
    assert.is_nil(claim)
    assert.equal("network", kind)
    assert.truthy(err:find("TLS", 1, true), err)
    no_canary(err)
  end)

  it("a plain client against the TLS port fails within its timeout", function()
    local r = assert(redis.new("redis://:" .. CANARY .. "@127.0.0.1:" .. srv.tls_port, 1))
    local t0 = socket.gettime()
    local ok, err = r:set_nx("k", "v", 1000)
    assert.is_nil(ok)
    assert.is_true(socket.gettime() - t0 < 1.5)
    no_canary(err)
  end)
end)

describe("a Redis that answers slowly or drops the connection", function()
  it("each part of the reply within the timeout, the whole past it: the guard refuses at the timeout", function()
    local port, stop = helper.fake("slow")
    local g = assert(dial_guard.new("redis://127.0.0.1:" .. port, 60, { timeout = 1.5 }))
    local t0 = socket.gettime()
    local claim, err, kind = g:check("1", "2", "s", "ud")
    local took = socket.gettime() - t0
    stop()
    assert.is_nil(claim)
    assert.equal("network", kind, err)
    assert.is_true(took < 1.9, "took " .. took)
  end)

  it("closed half-way through a reply: refused at once", function()
    local port, stop = helper.fake("drop")
    local g = assert(dial_guard.new("redis://127.0.0.1:" .. port, 60, { timeout = 2 }))
    local t0 = socket.gettime()
    local claim, err, kind = g:check("1", "2", "s", "ud")
    local took = socket.gettime() - t0
    stop()
    assert.is_nil(claim)
    assert.equal("network", kind, err)
    assert.is_true(took < 1.5, "took " .. took)
  end)
end)
