-- The dial guard's key and the client's use of it, over a fake lua_shared_dict
-- (the guard inside real nginx is covered by spec/integration/openresty_spec.lua).
local h = require "spec.helpers"

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

  it("two customers dialling the same pair on the same seat are two dials", function()
    local client, m = h.client({}, { dial_guard = "dials" }, h.ok("s-1"))
    assert.equal("s-1", client:dial(with { user_data = "customer-a" }))
    assert.equal("s-1", client:dial(with { user_data = "customer-b" }))
    local v, err = client:dial(with { user_data = "customer-a" })
    assert.is_nil(v)
    assert.equal("duplicate", err.kind)
    assert.is_false(err.sent)
    assert.equal(2, #m.requests)
    assert.equal("s-1", client:dial(with { user_data = "customer-a", force = true }))
  end)

  it("uses the normalized numbers, so two spellings of one number are one dial", function()
    local client, m = h.client({}, { dial_guard = "dials" }, h.ok("s-1"))
    assert.equal("s-1", client:dial(DIAL))
    local _, err = client:dial(with { caller = "+86 135-0000-0002" })
    assert.equal("duplicate", err.kind)
    assert.equal(1, #m.requests)
  end)

  it("releases the claim when the dial provably never left", function()
    local client, m = h.client({ { err = { kind = "network", message = "refused", sent = false } } },
                               { dial_guard = "dials", retries = 0 }, h.ok("s-2"))
    local v, err = client:dial(DIAL)
    assert.is_nil(v)
    assert.is_false(err.sent)
    assert.is_nil(next(store))
    assert.equal("s-2", client:dial(DIAL))
    assert.equal(2, #m.requests)
  end)
end)
