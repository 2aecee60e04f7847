-- clicktocall.provider_rules on its own: pure Lua (clicktocall.json writes its JSON), the rules the mock and the
-- simulator share
-- (spec/integration/conformance_spec.lua runs them through both).
local rules = require "clicktocall.provider_rules"
local core = require "clicktocall.core"

describe("clicktocall.provider_rules", function()
  it("works without the C core or a JSON library (as inside the simulator's nginx)", function()
    local saved = {}
    local names = { "clicktocall.core", "cjson", "cjson.safe", "clicktocall.provider_rules" }
    for _, name in ipairs(names) do
      saved[name] = { package.loaded[name], package.preload[name] }
      package.loaded[name] = nil
      package.preload[name] = function() error("not here: " .. name) end
    end
    package.preload["clicktocall.provider_rules"] = nil
    local ok, fresh = pcall(require, "clicktocall.provider_rules")
    for _, name in ipairs(names) do
      package.loaded[name], package.preload[name] = saved[name][1], saved[name][2]
    end
    assert(ok, fresh)
    assert.equal(require "clicktocall.version", fresh._VERSION)
    assert.equal("2023-11-15 06:13:20", fresh.format_time(1700000000))
    assert.equal(fresh.err_body(fresh.MSG.unknown_customer), fresh.answer("balance",
      { body = { userData = "X" }, raw = "" }, { known = function() return false end }))
  end)

  it("keeps the core's calendar: the same text both ways over the years the provider writes", function()
    for _, t in ipairs { 0, 951782400, 1700000000, 4102444799 } do
      assert.equal(core.format_time(t), rules.format_time(t))
    end
    for _, t in ipairs { -2208988800, -1, 0, 951782400, 1700000000, 4102444799, 253402271999 } do
      assert.equal(t, rules.parse_time(rules.format_time(t)))
    end
    for _, s in ipairs { "2024-02-30 00:00:00", "2023-02-29 00:00:00", "1899-12-31 23:59:59", "2024-1-01 00:00:00",
                         "2024-01-01 24:00:00", "2024-01-01T00:00:00" } do
      assert.is_nil(rules.parse_time(s), s)
    end
    assert.equal(rules.parse_time("2000-02-29 12:00:00"), core.parse_time("2000-02-29 12:00:00"))
  end)

  it("reads maxId exactly from the raw text, past 2^53 too", function()
    local null = {}
    assert.equal("0", rules.max_id_key({}, "{}", null))
    assert.equal("0", rules.max_id_key({ maxId = null }, '{"maxId":null}', null))
    assert.equal("9007199254740993", rules.max_id_key({ maxId = 2 ^ 53 }, '{"maxId":9007199254740993}', null))
    assert.equal("0", rules.max_id_key({ maxId = -5 }, '{"maxId":-5}', null))
    assert.equal("1", rules.max_id_key({ maxId = 1.5 }, '{"maxId":1.5}', null))
    assert.equal("150", rules.max_id_key({ maxId = "150" }, '{"maxId":"150"}', null))
    assert.equal("9007199254740993", rules.max_id_key({ maxId = "9007199254740993" }, "", null))
    local key, msg = rules.max_id_key({ maxId = "abc" }, '{"maxId":"abc"}', null)
    assert.is_nil(key)
    assert.equal(rules.MSG.bad_max_id, msg)
    assert.is_true(rules.key_less("9007199254740992", "9007199254740993"))
    assert.is_true(rules.key_less("99", "100"))
    assert.equal("9007199254740994", rules.key_incr("9007199254740993"))
    assert.equal("1000", rules.key_incr("999"))
    local n = rules.key_number("9007199254740993") -- no double holds it; Lua 5.3+'s integers do
    assert.is_true(n == nil or (math.type(n) == "integer" and tostring(n) == "9007199254740993"))
    assert.equal(2 ^ 53, rules.key_number("9007199254740992"))
  end)

  it("answers through a store: the checks in the provider's order, then the call", function()
    local st = {
      known = function(ud) return ud == "UD" end,
      bind = function() return true end,
      bound_phone = function() return "+8613500000002" end,
      balance = function() return 10 end,
      dial = function() return "sid_1" end,
      page = function(_, after, _, _, limit) return { '{"id":' .. after .. "}", tostring(limit) } end,
      stuck_record = function(key) return key end,
      now = function() return 0 end,
    }
    local function answer(op, body, extra)
      local call = { authorization = "QQ==", auth = "QQ==", body = body, raw = "", null = false }
      for k, v in pairs(extra or {}) do call[k] = v end
      return rules.answer(op, call, st)
    end
    assert.equal(rules.err_body(rules.MSG.wrong_auth), answer("balance", { userData = "UD" }, { authorization = "x" }))
    assert.equal(rules.err_body(rules.MSG.missing_auth), answer("balance", { userData = "UD" }, { authorization = "" }))
    local dial = { userData = "UD", setingNbr = "S", callerNbr = "+8613500000002", calleeNbr = "+8613900000001" }
    assert.equal(rules.ok_body('"sid_1"'), answer("dial", dial, { authorization = nil }))
    assert.equal(rules.err_body(rules.MSG.not_object), answer("balance", { 1 }))
    assert.equal(rules.err_body(rules.MSG.unknown_customer), answer("balance", { userData = "X" }))
    assert.equal(rules.ok_body("10"), answer("balance", { userData = "UD" }))
    local w = { userData = "UD", starTime = "2024-01-01 00:00:00", endTime = "2024-01-02 00:00:00" }
    assert.equal(rules.ok_body('[{"id":0},100]'), answer("records_page", w))
    w.maxId = 7
    local stuck = answer("records_page", w, { stuck = true, raw = '{"maxId":7}' })
    assert.equal(rules.ok_body("[" .. string.rep("7,", 99) .. "7]"), stuck)
  end)

  it("writes JSON strings as the provider does: \"/\" as is, control characters escaped", function()
    assert.equal('"a/b \\"q\\" \\\\ \\n\\u0001 中"', rules.json_string('a/b "q" \\ \n\1 中'))
  end)

  it("keeps a recording 7 days after the call, then it is gone", function()
    assert.is_false(rules.expired(1000, 1000 + 7 * 86400))
    assert.is_true(rules.expired(1000, 1000 + 7 * 86400 + 1))
  end)
end)
