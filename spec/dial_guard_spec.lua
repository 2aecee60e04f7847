-- The dial guard's key and the client's use of it, over a fake lua_shared_dict
-- (the guard inside real nginx is covered by spec/integration/openresty_spec.lua).
local mc = require "spec.helpers.client"

local AGENT = "+8613500000002"

local function fake_ngx()
  local store = {}
  local dict = {
    add = function(_, k, v)
      if store[k] ~= nil then return false, "exists" end
      store[k] = v
      return true
    end,
    get = function(_, k) return store[k] end,
    delete = function(_, k) store[k] = nil end,
  }
  return { shared = { dials = dict }, now = function() return 1000 end, update_time = function() end }, store
end

describe("dial guard", function()
  local saved, store, guard_mod

  before_each(function()
    saved = rawget(_G, "ngx")
    local fake
    fake, store = fake_ngx()
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
end)
