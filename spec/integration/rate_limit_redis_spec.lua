-- rate_limit with store = "redis[s]://...": a real redis-server with a password (and an ACL user, and TLS),
-- outside nginx (LuaSocket). The limit is one sorted set per call, in the URL's database; the time is Redis';
-- Redis refusing the password, down, or answering too slowly refuses (nothing sent) within the timeout, or
-- lets the request go with fail_open. Across nginx machines: rate_limit_openresty_spec.lua.
local clicktocall = require "clicktocall"
local mock = require "clicktocall.mock"
local core = require "clicktocall.core"
local helper = require "spec.helpers.redis"
local h = require "spec.helpers"

local CANARY = "Canary-pw-5b1c0e"
local AGENT = "+8613500000002"

local function no_canary(err)
  local s = tostring(err) .. tostring(err and err.message)
  assert.is_nil(s:find(CANARY, 1, true), "the password leaked: " .. s)
end

local names = 0
local function client(rate_limit, extra)
  names = names + 1
  rate_limit.name = rate_limit.name or ("redis-spec-" .. names .. "-" .. os.time())
  local provider = mock.new { user_data = h.USER_DATA, secret = h.SECRET, seats = { PP1 = AGENT },
                              balance = 1000000 }
  local events = {}
  local o = { base_url = "https://api.example.com", app_secret = h.SECRET, user_data = h.USER_DATA,
              transport = provider.transport, rate_limit = rate_limit, connect_timeout = 1,
              on_event = function(e) events[#events + 1] = e end }
  for k, v in pairs(extra or {}) do o[k] = v end
  return assert(clicktocall.new(o)), provider, events
end

local function balance_requests(provider)
  local n = 0
  for _, r in ipairs(provider.requests) do
    if r.op == "balance" then n = n + 1 end
  end
  return n
end

describe("rate_limit in Redis #redis", function()
  local srv
  setup(function()
    srv = assert(helper.start { password = CANARY, user = { "dialer", CANARY .. "-u" }, tls = true })
  end)
  teardown(function()
    if srv then srv:destroy() end
  end)

  local function url(db, userinfo)
    return "redis://" .. (userinfo or (":" .. CANARY)) .. "@127.0.0.1:" .. srv.port .. "/" .. db
  end

  it("with a password, in database 3: rate go, the next is refused with retry_after; one sorted set", function()
    local c, provider, events = client { balance = { rate = 3, per = 5 }, store = url(3), name = "pw-db3" }
    for i = 1, 3 do assert.is_truthy(c:balance(), i) end
    local v, err = c:balance()
    assert.is_nil(v)
    assert.are.equal("rate_limited", err.kind)
    assert.is_false(err.sent)
    assert.is_true(err.retry_after > 0 and err.retry_after <= 5, tostring(err.retry_after))
    assert.are.equal(3, balance_requests(provider))
    assert.are.equal("rate_limited", events[#events].type)
    -- the places are in database 3, under the limit's name, and expire by themselves
    local c3 = require("clicktocall.redis").new(url(3), 2)
    assert.are.equal(3, c3:command("ZCARD", "ctc:rate:pw-db3:balance"))
    local ttl = c3:command("PTTL", "ctc:rate:pw-db3:balance")
    assert.is_true(ttl > 0 and ttl <= 5000, tostring(ttl))
    assert.are.equal(0, srv:cmd("EXISTS", "ctc:rate:pw-db3:balance")) -- database 0 has none
  end)

  it("two clients (two processes' worth) share one limit through Redis; an ACL user works too", function()
    local a, pa = client { balance = { rate = 2, per = 5 }, store = url(1), name = "shared" }
    local b, pb = client { balance = { rate = 2, per = 5 }, store = url(1, "dialer:" .. CANARY .. "-u"),
                           name = "shared" }
    assert.is_truthy(a:balance())
    assert.is_truthy(b:balance())
    assert.are.equal("rate_limited", select(2, a:balance()).kind)
    assert.are.equal("rate_limited", select(2, b:balance()).kind)
    assert.are.equal(2, balance_requests(pa) + balance_requests(pb))
  end)

  it("over TLS (rediss:// with the CA file)", function()
    local tls = "rediss://:" .. CANARY .. "@127.0.0.1:" .. srv.tls_port .. "/2?ca_file=" .. srv.ca_file
    local c = client { balance = { rate = 1, per = 5 }, store = tls }
    assert.is_truthy(c:balance())
    assert.are.equal("rate_limited", select(2, c:balance()).kind)
  end)

  it("with wait, the refused request sleeps until Redis frees a place, then goes", function()
    local c, provider = client { balance = { rate = 1, per = 0.3, wait = 2 }, store = url(4) }
    local t0 = core.now()
    assert.is_truthy(c:balance())
    assert.is_truthy(c:balance())
    assert.is_truthy(c:balance())
    local took = core.now() - t0
    assert.is_true(took >= 0.6 - 0.01 and took < 2, tostring(took)) -- two waits of (about) per
    assert.are.equal(3, balance_requests(provider))
  end)

  it("a wrong password refuses (kind network, nothing sent, the password never said); fail_open goes", function()
    local bad = "redis://:" .. CANARY .. "-wrong@127.0.0.1:" .. srv.port
    local c, provider = client { balance = { rate = 5 }, store = bad }
    local v, err = c:balance()
    assert.is_nil(v)
    assert.same({ "network", false, true }, { err.kind, err.sent, err.retryable })
    assert.is_truthy(err.message:find("rate limit could not be asked", 1, true), err.message)
    assert.is_truthy(err.message:find("fail_open", 1, true), err.message)
    no_canary(err)
    assert.are.equal(0, balance_requests(provider))
    local d, pd, events = client { balance = { rate = 5 }, store = bad, fail_open = true }
    assert.is_truthy(d:balance())
    assert.are.equal(1, balance_requests(pd))
    assert.are.equal("rate_limit_unavailable", events[1].type)
    no_canary(events[1].error)
  end)

  it("a dial is refused, not hung, when Redis is down or too slow: within connect_timeout", function()
    local port, stop = helper.fake("slow") -- answers in parts, the whole past a second
    finally(stop)
    local c, provider = client({ dial = { rate = 5 }, store = "redis://127.0.0.1:" .. port },
                               { connect_timeout = 0.5 })
    local t0 = core.now()
    local sid, err = c:dial { caller = "13500000002", callee = "13500000003", seat = "PP1" }
    local took = core.now() - t0
    assert.is_nil(sid)
    assert.same({ "network", false, false }, { err.kind, err.sent, err.may_have_rung })
    assert.is_true(took < 1.2, tostring(took))
    local closed = require("spec.helpers.nginx").free_port() -- nobody listens there
    local d = client { dial = { rate = 5 }, store = "redis://127.0.0.1:" .. closed }
    local _, derr = d:dial { caller = "13500000002", callee = "13500000003", seat = "PP1" }
    assert.are.equal("network", derr.kind)
    assert.are.equal(0, #provider.requests)
  end)
end)
