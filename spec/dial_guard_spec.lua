-- The dial guard's key and the client's use of it, over a fake lua_shared_dict
-- (the guard inside real nginx is covered by spec/integration/openresty_spec.lua).
local mc = require "spec.helpers.client"

local AGENT = "+8613500000002"

-- a lua_shared_dict with expiry on a clock the spec moves (clock.t)
local function fake_ngx()
  local store, expires = {}, {}
  local clock = { t = 1000 }
  local function live(k)
    if store[k] ~= nil and expires[k] and expires[k] <= clock.t then
      store[k], expires[k] = nil, nil
    end
    return store[k]
  end
  local dict = {
    add = function(_, k, v, ttl)
      if live(k) ~= nil then return false, "exists" end
      store[k], expires[k] = v, ttl and ttl > 0 and clock.t + ttl or nil
      return true
    end,
    set = function(_, k, v, ttl)
      store[k], expires[k] = v, ttl and ttl > 0 and clock.t + ttl or nil
      return true
    end,
    get = function(_, k) return live(k) end,
    ttl = function(_, k)
      if live(k) == nil then return nil, "not found" end
      return expires[k] and expires[k] - clock.t or 0
    end,
    delete = function(_, k) store[k], expires[k] = nil, nil end,
  }
  return { shared = { dials = dict }, now = function() return clock.t end, update_time = function() end },
    store, clock
end

describe("dial guard", function()
  local saved, store, clock, guard_mod

  before_each(function()
    saved = rawget(_G, "ngx")
    local fake
    fake, store, clock = fake_ngx()
    rawset(_G, "ngx", fake)
    package.loaded["clicktocall.dial_guard"] = nil
    guard_mod = require "clicktocall.dial_guard"
  end)

  after_each(function()
    rawset(_G, "ngx", saved)
    package.loaded["clicktocall.dial_guard"] = nil
  end)

  it("keys on user_data, caller, callee and seat, without ambiguity", function()
    local key = guard_mod._key
    assert.equal("ctc:dial:4:cust|+8613500000002|+8613500000003|PP1",
                 key("+8613500000002", "+8613500000003", "PP1", "cust"))
    assert.equal("ctc:dial:0:|+8613500000002|+8613500000003|PP1", key("+8613500000002", "+8613500000003", "PP1"))
    -- a "|" in user_data cannot make two different dials one key
    assert.not_equal(key("+861", "+862", "s", "a|+861"), key("+862", "+861", "s", "a"))
  end)

  local DIAL = { caller = "13500000002", callee = "13500000003", seat = "PP1" }

  local function with(extra)
    local t = {}
    for k, v in pairs(DIAL) do t[k] = v end
    for k, v in pairs(extra) do t[k] = v end
    return t
  end

  -- a guarded client over a provider where seat PP1 of each customer is bound to the agent's phone
  local function guarded(opts, customers)
    local o = { dial_guard = "dials" }
    for k, v in pairs(opts or {}) do o[k] = v end
    local client, provider = mc.new(o, { seats = { PP1 = AGENT } })
    for _, ud in ipairs(customers or {}) do
      provider:add_customer(ud):bind("PP1", AGENT, ud)
    end
    return client, provider
  end

  -- the session id of the provider's newest call record
  local function last_sid(provider)
    local recs = provider:records()
    return recs[#recs].sessionId
  end

  it("two customers dialling the same pair on the same seat are two dials", function()
    local client, provider = guarded(nil, { "customer-a", "customer-b" })
    local a = client:dial(with { user_data = "customer-a" })
    local b = client:dial(with { user_data = "customer-b" })
    assert.equal(provider:records("customer-a")[1].sessionId, a)
    assert.equal(provider:records("customer-b")[1].sessionId, b)
    local v, err = client:dial(with { user_data = "customer-a" })
    assert.is_nil(v)
    assert.equal("duplicate", err.kind)
    assert.is_false(err.sent)
    assert.equal(2, provider:count())
    assert.equal(2, provider.dials)
    local forced = client:dial(with { user_data = "customer-a", force = true })
    assert.equal(last_sid(provider), forced)
    assert.equal(2, #provider:records("customer-a"))
  end)

  it("uses the normalized numbers, so two spellings of one number are one dial", function()
    local client, provider = guarded()
    local sid = client:dial(DIAL)
    assert.equal(last_sid(provider), sid)
    local _, err = client:dial(with { caller = "+86 135-0000-0002" })
    assert.equal("duplicate", err.kind)
    assert.equal(1, provider:count())
    assert.equal(1, provider.dials)
  end)

  it("releases the claim when the dial provably never left", function()
    local client, provider = guarded { retries = 0 }
    provider:fail("dial", "refused")
    local v, err = client:dial(DIAL)
    assert.is_nil(v)
    assert.equal("network", err.kind)
    assert.is_false(err.sent)
    assert.is_nil(next(store))
    assert.equal(0, provider.dials)
    local sid = client:dial(DIAL)
    assert.equal(last_sid(provider), sid)
    assert.equal(2, provider:count("dial"))
    assert.equal(1, provider.dials)
  end)
  it("keeps a dial that may have rung guarded for dial_guard_hold, one with a known outcome for the window",
    function()
    local client, provider = guarded { retries = 0 } -- window 10, hold 300 (the defaults)
    assert.truthy(client:dial(DIAL))
    clock.t = clock.t + 11
    assert.truthy(client:dial(DIAL)) -- placed: guarded for the window only
    clock.t = clock.t + 11
    provider:fail("dial", "reset_after_send") -- the call is placed, the answer is lost
    local v, err = client:dial(DIAL)
    assert.is_nil(v)
    assert.same({ "network", true, true }, { err.kind, err.sent, err.may_have_rung })
    clock.t = clock.t + 60
    local _, dup = client:dial(DIAL)
    assert.equal("duplicate", dup.kind)
    assert.is_false(dup.may_have_rung)
    assert.equal("a dial from +8613500000002 to +8613500000003 on seat PP1 was sent 60.0 s ago and its outcome " ..
      "is unknown (it may have rung; its call record appears only when the call ends): the same dial is refused " ..
      "for another 240 s; pass force = true to dial anyway", dup.message)
    clock.t = clock.t + 239
    assert.equal("duplicate", select(2, client:dial(DIAL)).kind)
    clock.t = clock.t + 1
    assert.truthy(client:dial(DIAL))
    assert.equal(4, provider.dials)
    -- a provider's refusal rang nobody: the window only
    clock.t = clock.t + 11
    provider:fail("dial", "api_error")
    _, err = client:dial(DIAL)
    assert.same({ "api", true, false }, { err.kind, err.sent, err.may_have_rung })
    clock.t = clock.t + 11
    assert.truthy(client:dial(DIAL))
  end)

  it("says which errors may have rung: sent, and not a refusal (api, HTTP 4xx)", function()
    local client, provider = guarded { retries = 0 }
    local cases = { { "timeout", true }, { "reset_after_send", true }, { "refused", false }, { 503, true },
                    { 500, true }, { 401, false }, { 429, false }, { "bad_json", true }, { "api_error", false } }
    for _, c in ipairs(cases) do
      clock.t = clock.t + 1000
      provider:fail("dial", c[1])
      local _, err = client:dial(DIAL)
      assert.equal(c[2], err.may_have_rung, tostring(c[1]))
      clock.t = clock.t + 11
      local _, again = client:dial(DIAL)
      assert.equal(c[2], again ~= nil and again.kind == "duplicate", tostring(c[1]))
    end
    local _, aerr = client:dial { caller = "x", callee = "y", seat = "PP1" }
    assert.same({ "argument", false }, { aerr.kind, aerr.may_have_rung })
  end)

  it("takes dial_guard_hold from the window to a day; the default follows a longer window", function()
    local client = guarded { dial_guard_window = 600 }
    assert.truthy(client:dial(DIAL))
    local key = guard_mod._key("+8613500000002", "+8613500000003", "PP1", require("spec.helpers").USER_DATA)
    assert.equal(600, ngx.shared.dials:ttl(key))
    local clicktocall = require "clicktocall"
    local base = { base_url = "https://api.example.com", app_secret = "x", dial_guard = "dials" }
    local function new(extra)
      local o = {}
      for k, v in pairs(base) do o[k] = v end
      for k, v in pairs(extra) do o[k] = v end
      return clicktocall.new(o)
    end
    for _, bad in ipairs { { dial_guard_hold = 5 }, { dial_guard_hold = 0 }, { dial_guard_hold = 86401 },
                           { dial_guard_hold = "300" }, { dial_guard_window = 60, dial_guard_hold = 30 } } do
      local c, err = new(bad)
      assert.is_nil(c)
      assert.equal("argument", err.kind)
      assert.truthy(err.message:find("dial_guard_hold", 1, true), err.message)
    end
    assert.truthy(new { dial_guard_hold = 10 })
    assert.truthy(new { dial_guard_hold = 86400 })
    assert.is_nil(guard_mod.new("dials", 10, { hold = 9 }))
  end)
end)

describe("dial guard in files (one machine, no nginx)", function()
  local guard_mod, saved, dir
  local A, B, S = "+8613500000002", "+8613500000003", "PP1"

  before_each(function()
    saved = rawget(_G, "ngx")
    rawset(_G, "ngx", nil)
    package.loaded["clicktocall.dial_guard"] = nil
    guard_mod = require "clicktocall.dial_guard"
    dir = os.tmpname()
    os.remove(dir)
  end)

  after_each(function()
    os.execute("rm -rf '" .. dir .. "'")
    rawset(_G, "ngx", saved)
    package.loaded["clicktocall.dial_guard"] = nil
  end)

  local function pair(clock)
    local now = function() return clock.t end
    local a = assert(guard_mod.new("file:" .. dir .. "/x/dials", 10, { hold = 300, now = now }))
    local b = assert(guard_mod.new("file:" .. dir .. "/x/dials", 10, { hold = 300, now = now }))
    return a, b
  end

  it("makes its directory; refuses a relative one, a bad window or hold", function()
    local clock = { t = 1000 }
    pair(clock)
    assert.equal("directory", require("clicktocall.core").file_kind(dir .. "/x/dials"))
    -- private: the files' names are hashes of phone numbers
    local p = io.popen("LC_ALL=C ls -ld '" .. dir .. "/x' '" .. dir .. "/x/dials'")
    local out = p:read("*a")
    p:close()
    assert.matches("^drwx%-%-%-%-%-%- .*\ndrwx%-%-%-%-%-%- ", out)
    assert.is_nil(guard_mod.new("file:relative/dir", 10))
    assert.is_nil(guard_mod.new("file:" .. dir, 0))
    assert.is_nil(guard_mod.new("file:" .. dir, 10, { hold = 5 }))
    local g, err = guard_mod.new("file:/proc/no/such/dir", 10)
    assert.is_nil(g)
    assert.matches("could not make its directory", err)
  end)

  it("one claim across guards: window after settle, hold while the outcome is unknown, release", function()
    local clock = { t = 1000 }
    local a, b = pair(clock)
    local claim = assert(a:check(A, B, S, "u"))
    assert.is_string(claim)
    local v, why, kind = b:check(A, B, S, "u")
    assert.is_nil(v)
    assert.equal("duplicate", kind)
    assert.matches("was sent 0%.0 s ago and its outcome is unknown", why)
    assert.truthy(b:check(A, B, S, "other customer"))
    a:settle(A, B, S, "u", claim)
    clock.t = 1004
    v, why = b:check(A, B, S, "u")
    assert.is_nil(v)
    assert.equal("a dial from +8613500000002 to +8613500000003 on seat PP1 was placed 4.0 s ago; " ..
      "pass force = true to dial anyway", why)
    clock.t = 1010
    claim = assert(b:check(A, B, S, "u")) -- settled: free after the window
    -- not settled: held for the hold
    clock.t = 1250
    v, why = a:check(A, B, S, "u")
    assert.is_nil(v)
    assert.matches("was sent 240%.0 s ago and its outcome is unknown .* refused for another 60 s", why)
    -- a release by a guard that does not hold the claim changes nothing; the holder's does
    a:release(A, B, S, "u", "1000.000 1300.000 ab-1\n")
    assert.is_nil((a:check(A, B, S, "u")))
    b:release(A, B, S, "u", claim)
    assert.truthy(a:check(A, B, S, "u"))
  end)
end)
