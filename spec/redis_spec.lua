-- clicktocall.redis: the RESP codec, the URL, tokens, and the commands against a real redis-server (LuaSocket).
local redis = require "clicktocall.redis"

-- A socket that answers from a string, as LuaSocket and cosockets do: receive("*l") without the CR LF,
-- receive(n) exactly n bytes, nil + "closed" (and what was left) when the string runs out.
local function fake(s)
  local pos = 1
  return {
    receive = function(_, pat)
      if pat == "*l" then
        local lf = s:find("\n", pos, true)
        if not lf then
          pos = #s + 1
          return nil, "closed"
        end
        local line = s:sub(pos, lf - 1):gsub("\r$", "")
        pos = lf + 1
        return line
      end
      if pos + pat - 1 > #s then
        pos = #s + 1
        return nil, "closed"
      end
      local data = s:sub(pos, pos + pat - 1)
      pos = pos + pat
      return data
    end,
  }
end

local function read(s)
  return redis.read_reply(fake(s))
end

describe("redis URL", function()
  it("takes redis://host:port and redis://host:port/db", function()
    assert.same({ host = "127.0.0.1", port = 6379, db = 0, tls = false }, redis.parse_url("redis://127.0.0.1:6379"))
    assert.same({ host = "redis.internal", port = 1, db = 15, tls = false },
                redis.parse_url("redis://redis.internal:1/15"))
    assert.same({ host = "h", port = 65535, db = 0, tls = false }, redis.parse_url("redis://h:65535/0"))
  end)

  it("refuses anything else with a sentence", function()
    for _, url in ipairs {
      "redis://h", "redis://h:", "redis://:6379", "redis://h:0", "redis://h:65536", "redis://h:123456",
      "redis://h:6379/", "redis://h:6379/x", "redis://h:6379/1/2", "redis://h:6379/123456",
      "redis://user:@h:6379", "redis://h:6379?db=1", "rediss://h:6379?db=1", "http://h:6379", "redis://[::1]:6379",
      "redis://-h:6379", "redis://.h:6379", "redis://h :6379", " redis://h:6379", "redis://h:6379 ",
      "redis://h:6379\n", "", 6379, true,
    } do
      local cfg, err = redis.parse_url(url)
      assert.is_nil(cfg, tostring(url))
      assert.is_string(err)
      assert.truthy(err:find("Redis", 1, true), err)
    end
  end)
end)

describe("RESP", function()
  it("encodes a command as an array of bulk strings, numbers as whole numbers", function()
    assert.equal("*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\na b\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n10000\r\n",
                 redis.encode { "SET", "k", "a b", "NX", "PX", 10 * 1000.0 })
    assert.equal("*1\r\n$0\r\n\r\n", redis.encode { "" })
    assert.equal("*1\r\n$4\r\na\r\nb\r\n", redis.encode { "a\r\nb" }) -- binary-safe: the length says it all
  end)

  it("reads each type", function()
    assert.equal("OK", read("+OK\r\n"))
    assert.equal(42, read(":42\r\n"))
    assert.equal(-2, read(":-2\r\n"))
    assert.equal("a\r\nb", read("$4\r\na\r\nb\r\n"))
    assert.equal("", read("$0\r\n\r\n"))
    assert.equal(redis.null, read("$-1\r\n"))
    assert.equal(redis.null, read("*-1\r\n"))
    assert.same({}, read("*0\r\n"))
    assert.same({ 1, "x", { "y", redis.null }, { error = "Redis: ERR e" } },
                read("*4\r\n:1\r\n$1\r\nx\r\n*2\r\n+y\r\n$-1\r\n-ERR e\r\n"))
  end)

  it("gives an error reply as nil, its message, \"redis\"", function()
    local v, err, class = read("-WRONGTYPE Operation against a key\r\n")
    assert.is_nil(v)
    assert.equal("Redis: WRONGTYPE Operation against a key", err)
    assert.equal("redis", class)
  end)

  it("never raises on a malformed or cut reply: nil, a sentence, its class", function()
    local cases = {
      { "", "io" }, { "+OK", "io" }, { "\r\n", "protocol" }, { "?\r\n", "protocol" }, { "OK\r\n", "protocol" },
      { ":\r\n", "protocol" }, { ":1.5\r\n", "protocol" }, { ":12a\r\n", "protocol" },
      { ":123456789012345678901\r\n", "protocol" },
      { "$\r\n", "protocol" }, { "$-2\r\n", "protocol" }, { "$x\r\n", "protocol" },
      { "$3\r\nab\r\n", "io" }, { "$3\r\nab\r\n\r\n", "protocol" },
      { "$3\r\nabcde", "protocol" }, { "$5\r\nab", "io" }, { "$2\r\nab", "io" },
      { "$" .. (redis.MAX_BULK + 1) .. "\r\n", "protocol" }, { "$99999999999999999999\r\n", "protocol" },
      { "*\r\n", "protocol" }, { "*-5\r\n", "protocol" }, { "*2\r\n:1\r\n", "io" },
      { "*" .. (redis.MAX_ITEMS + 1) .. "\r\n", "protocol" }, { "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", "protocol" },
      { "*2\r\n:1\r\n?\r\n", "protocol" }, { "+" .. ("x"):rep(redis.MAX_LINE + 1) .. "\r\n", "protocol" },
    }
    for _, c in ipairs(cases) do
      local ok, v, err, class = pcall(read, c[1])
      assert.is_true(ok, c[1])
      assert.is_nil(v, c[1])
      assert.is_string(err, c[1])
      assert.equal(c[2], class, ("%q: %s"):format(c[1]:sub(1, 40), err))
    end
  end)

  it("reads random bytes without raising", function()
    math.randomseed(14)
    local alphabet = { "+", "-", ":", "$", "*", "\r", "\n", "0", "1", "9", "-1", "a", "\0" }
    for _ = 1, 3000 do
      local parts = {}
      for i = 1, math.random(0, 24) do parts[i] = alphabet[math.random(#alphabet)] end
      local s = table.concat(parts)
      local ok, v, err = pcall(read, s)
      assert.is_true(ok, s)
      assert.is_true(v ~= nil or type(err) == "string", s)
    end
  end)
end)

describe("redis tokens", function()
  it("are distinct, long and unguessable per process", function()
    local seen = {}
    for _ = 1, 1000 do
      local t = redis.token()
      assert.is_nil(seen[t])
      seen[t] = true
      assert.truthy(t:match("^%x+%-%d+$"))
      assert.is_true(#t >= 34)
    end
  end)
end)

describe("redis commands against redis-server (LuaSocket) #redis", function()
  local helper = require "spec.helpers.redis"
  local srv

  setup(function()
    srv = assert(helper.start())
  end)

  teardown(function()
    if srv then srv:destroy() end
  end)

  it("SET NX PX claims once; delete_if and pexpire_if touch only our value", function()
    local r = assert(redis.new(srv.url .. "/3", 2))
    assert.is_true(r:set_nx("k", "ours", 10000))
    assert.is_false(r:set_nx("k", "theirs", 10000))
    local ttl = assert(r:pttl("k"))
    assert.is_true(ttl > 9000 and ttl <= 10000, tostring(ttl))
    assert.is_false(r:pexpire_if("k", "theirs", 60000))
    assert.is_true(r:pexpire_if("k", "ours", 60000))
    assert.is_true(r:pttl("k") > 50000)
    assert.is_false(r:delete_if("k", "theirs"))
    assert.equal(redis.null, srv:cmd("GET", "k")) -- the key lives in database 3, not 0
    assert.is_true(r:delete_if("k", "ours"))
    assert.is_false(r:delete_if("k", "ours"))
    assert.equal(-2, r:pttl("k"))
  end)

  it("an error reply is nil + Redis' sentence; a refused port is nil + a sentence", function()
    local r = assert(redis.new(srv.url, 2))
    assert.equal("OK", r:command("SET", "s", "x"))
    local v, err, class = r:command("LPUSH", "s", "y")
    assert.is_nil(v)
    assert.truthy(err:find("WRONGTYPE", 1, true))
    assert.equal("redis", class)
    local nginx = require "spec.helpers.nginx"
    local port, holder = nginx.refused_port()
    local down = assert(redis.new("redis://127.0.0.1:" .. port, 1))
    local ok, derr = down:set_nx("k", "v", 1000)
    holder:close()
    assert.is_nil(ok)
    assert.truthy(derr:find("cannot reach Redis at 127.0.0.1:" .. port, 1, true), derr)
  end)

  it("SELECT of a database Redis does not have is a sentence", function()
    local r = assert(redis.new(srv.url .. "/99999", 2))
    local ok, err = r:set_nx("k", "v", 1000)
    assert.is_nil(ok)
    assert.truthy(err:find("SELECT 99999", 1, true), err)
  end)
end)

describe("a redis:// dial guard outside nginx (LuaSocket) #redis", function()
  local h = require "spec.helpers"
  local mc = require "spec.helpers.client"
  local helper = require "spec.helpers.redis"
  local srv

  setup(function()
    srv = assert(helper.start())
  end)

  teardown(function()
    if srv then srv:destroy() end
  end)

  before_each(function()
    if not srv.running then srv:restart() end
    assert.equal("OK", srv:cmd("FLUSHALL"))
  end)

  local DIAL = { caller = "13500000002", callee = "13500000003", seat = "PP1" }
  local function with(extra)
    local t = {}
    for k, v in pairs(DIAL) do t[k] = v end
    for k, v in pairs(extra or {}) do t[k] = v end
    return t
  end
  local AGENT = "+8613500000002"

  -- a client guarded by Redis over its own provider (one host each), seat PP1 bound to the agent's phone
  -- for h.USER_DATA and "another-customer"
  local function host(opts)
    local o = { dial_guard = srv.url }
    for k, v in pairs(opts or {}) do o[k] = v end
    local client, provider = mc.new(o, { seats = { PP1 = AGENT } })
    provider:add_customer("another-customer"):bind("PP1", AGENT, "another-customer")
    return client, provider
  end

  -- the dials that reached the provider
  local function dials(provider)
    return provider:count("dial")
  end

  -- the session id of the provider's newest call record
  local function last_sid(provider)
    local recs = provider:records()
    return recs[#recs] and recs[#recs].sessionId
  end

  it("two clients (two hosts) sharing Redis dial once; force goes through; user_data is in the key", function()
    local a, ma = host { dial_guard_window = 30 }
    local b, mb = host { dial_guard_window = 30 }
    local sa = a:dial(with())
    assert.equal(last_sid(ma), sa)
    local v, err = b:dial(with())
    assert.is_nil(v)
    assert.equal("duplicate", err.kind)
    assert.is_false(err.sent)
    assert.is_false(err.retryable)
    assert.truthy(err.message:find("placed %d+%.%d s ago"), err.message)
    assert.equal(0, dials(mb))
    local forced = b:dial(with { force = true })
    assert.equal(last_sid(mb), forced)
    local other = b:dial(with { user_data = "another-customer" })
    assert.equal(mb:records("another-customer")[1].sessionId, other)
    assert.equal(1, dials(ma))
    assert.equal(2, dials(mb))
    assert.equal(2, mb.dials)
    -- the claim is a key with the window as its expiry
    local key = require("clicktocall.dial_guard")._key("+8613500000002", "+8613500000003", "PP1", h.USER_DATA)
    local ttl = srv:cmd("PTTL", key)
    assert.is_true(ttl > 25000 and ttl <= 30000, tostring(ttl))
  end)

  it("releases its own claim when the dial never left, and only its own", function()
    local a, ma = host { retries = 0 }
    ma:fail("dial", "refused")
    local _, err = a:dial(with())
    assert.equal("network", err.kind)
    assert.is_false(err.sent)
    local sid = a:dial(with()) -- released: the next click goes
    assert.equal(last_sid(ma), sid)
    assert.equal(1, ma.dials)
    -- a claim that is not ours (it expired and another host took it) is left alone
    local guard_mod = require "clicktocall.dial_guard"
    local guard = assert(guard_mod.new(srv.url, 10))
    local key = guard_mod._key("+861", "+862", "S", "u")
    local claim = assert(guard:check("+861", "+862", "S", "u"))
    assert.is_string(claim)
    assert.equal(claim, srv:cmd("GET", key))
    assert.equal("OK", srv:cmd("SET", key, "theirs"))
    guard:release("+861", "+862", "S", "u", claim)
    assert.equal("theirs", srv:cmd("GET", key))
    guard:release("+861", "+862", "S", "u", "theirs")
    assert.equal(require("clicktocall.redis").null, srv:cmd("GET", key))
  end)

  it("keeps the claim when the dial may have left", function()
    local a, m = host { retries = 0 }
    m:fail("dial", "reset_after_send") -- the call is placed, the answer is lost
    local _, err = a:dial(with())
    assert.equal("network", err.kind)
    assert.is_true(err.sent)
    local _, again = a:dial(with())
    assert.equal("duplicate", again.kind)
    assert.equal(1, dials(m))
    assert.equal(1, m.dials)
  end)

  it("holds a dial that may have rung for dial_guard_hold, settles a placed or refused one to the window", function()
    local a, m = host { retries = 0, dial_guard_window = 20, dial_guard_hold = 600 }
    local key = require("clicktocall.dial_guard")._key("+8613500000002", "+8613500000003", "PP1", h.USER_DATA)
    m:fail("dial", "timeout") -- the call is placed, the answer never comes
    local _, err = a:dial(with())
    assert.same({ "timeout", true, true }, { err.kind, err.sent, err.may_have_rung })
    local ttl = srv:cmd("PTTL", key)
    assert.is_true(ttl > 590000 and ttl <= 600000, tostring(ttl))
    local _, again = a:dial(with())
    assert.equal("duplicate", again.kind)
    assert.matches("was sent [%d.]+ s ago and its outcome is unknown %(it may have rung; its call record appears " ..
      "only when the call ends%): the same dial is refused for another 6%d%d s; pass force = true", again.message)
    assert.equal(1, m.dials)
    -- a placed dial, and one the provider refused: the window
    assert.equal(1, srv:cmd("DEL", key))
    assert.truthy(a:dial(with()))
    ttl = srv:cmd("PTTL", key)
    assert.is_true(ttl > 15000 and ttl <= 20000, tostring(ttl))
    assert.equal(1, srv:cmd("DEL", key))
    m:fail("dial", "api_error")
    _, err = a:dial(with())
    assert.same({ "api", false }, { err.kind, err.may_have_rung })
    ttl = srv:cmd("PTTL", key)
    assert.is_true(ttl > 15000 and ttl <= 20000, tostring(ttl))
  end)

  it("Redis down: refused with kind network and nothing sent, or sent when failing open", function()
    local closed, pc = host()
    local open, mo = host { dial_guard_fail_open = true }
    srv:stop()
    local v, err = closed:dial(with())
    assert.is_nil(v)
    assert.equal("network", err.kind)
    assert.is_false(err.sent)
    assert.is_true(err.retryable)
    assert.truthy(err.message:find("dial_guard_fail_open", 1, true), err.message)
    assert.equal(0, dials(pc))
    local o1 = open:dial(with())
    assert.equal(last_sid(mo), o1)
    local o2 = open:dial(with()) -- unguarded while Redis is away
    assert.equal(last_sid(mo), o2)
    assert.not_equal(o1, o2)
    assert.equal(2, dials(mo))
    srv:restart()
    local c1 = closed:dial(with())
    assert.equal(last_sid(pc), c1)
    local _, dup = open:dial(with())
    assert.equal("duplicate", dup.kind)
  end)

  it("refuses a bad address or fail_open with a sentence", function()
    local clicktocall = require "clicktocall"
    local base = { base_url = "https://api.example.com", app_secret = "x", user_data = "u" }
    local function new(extra)
      local o = {}
      for k, v in pairs(base) do o[k] = v end
      for k, v in pairs(extra) do o[k] = v end
      return clicktocall.new(o)
    end
    local c, err = new { dial_guard = "redis://h:6379/x" }
    assert.is_nil(c)
    assert.equal("argument", err.kind)
    assert.truthy(err.message:find("dial_guard", 1, true), err.message)
    c, err = new { dial_guard = srv.url, dial_guard_fail_open = "yes" }
    assert.is_nil(c)
    assert.truthy(err.message:find("dial_guard_fail_open", 1, true), err.message)
  end)
end)
