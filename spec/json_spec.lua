-- clicktocall.json: the one Lua JSON writer and reader (manifest, sync state, CLI output, the mock).
local json = require "clicktocall.json"

local BIG = "123456789012345678901" -- an id past 2^63 stays a string of digits on every Lua

describe("clicktocall.json.encode", function()
  it("writes scalars: escapes, control characters, UTF-8, integral and fractional numbers", function()
    assert.equal('"q\\"b\\\\s\\u0001\\n\\t\\u007fé/"', json.encode('q"b\\s\1\n\t\127é/'))
    assert.equal("42", json.encode(42))
    assert.equal("-7", json.encode(-7))
    assert.equal("1.5", json.encode(1.5))
    assert.equal("0.1", json.encode(0.1))
    assert.equal("9007199254740992", json.encode(2 ^ 53))
    assert.equal("null", json.encode(0 / 0))
    assert.equal("null", json.encode(math.huge))
    assert.equal("null", json.encode(json.null))
    assert.equal("null", json.encode(nil))
    assert.equal("true", json.encode(true))
  end)

  it("writes nested tables: sequences as arrays, {} as [] unless marked an object, keys by name", function()
    local doc = { meta = { success = true, message = "ok" }, data = { { id = 1, b = json.null }, { id = 2 } } }
    assert.equal('{"data":[{"b":null,"id":1},{"id":2}],"meta":{"message":"ok","success":true}}', json.encode(doc))
    assert.equal("[]", json.encode({}))
    assert.equal("{}", json.encode(json.object({})))
    assert.equal('{"2":"b","x":1}', json.encode({ x = 1, [2] = "b" }))
  end)

  it("writes the keys of how.order first (or only), and digit strings as numbers only in id fields", function()
    local t = { id = BIG, sessionId = "12345678901234567", ids = { BIG, 5, "0123456789012345678" }, zeta = 1,
                alpha = 2 }
    local how = { order = { "sessionId", "id", "absent" }, ids = { id = true, ids = true } }
    assert.equal('{"sessionId":"12345678901234567","id":' .. BIG .. ',"alpha":2,"ids":[' .. BIG ..
                 ',5,"0123456789012345678"],"zeta":1}', json.encode(t, how))
    how.only = true
    assert.equal('{"sessionId":"12345678901234567","id":' .. BIG .. "}", json.encode(t, how))
    assert.equal('{"id":1,"list":[{"id":2,"x":3}]}', json.encode({ id = 1, list = { { x = 3, id = 2 } }, y = 4 },
                                                                 { order = { "id", "list" }, only = true }))
    -- without the schema, nothing changes type
    assert.equal('{"id":"' .. BIG .. '"}', json.encode({ id = BIG }))
    assert.equal('{"meta":{"id":' .. BIG .. '}}', json.encode({ meta = { id = BIG } }, { ids = { id = true } }))
  end)
end)

describe("clicktocall.json.decode", function()
  it("round-trips what encode writes, ids exact", function()
    local t = { id = BIG, s = 'q"b\\s\1\n\té', n = 42, f = 1.5, b = true, neg = -7, list = { 1, "x", false } }
    local back = assert(json.decode(json.encode(t, { ids = { id = true } })))
    assert.equal(BIG, back.id)
    assert.same({ s = t.s, n = 42, f = 1.5, b = true, neg = -7, list = { 1, "x", false } },
                { s = back.s, n = back.n, f = back.f, b = back.b, neg = back.neg, list = back.list })
    if math.type then
      assert.equal("integer", math.type(back.n))
      assert.equal("integer", math.type(json.decode("[9007199254740993]")[1]))
    else
      assert.equal("9007199254740993", json.decode("[9007199254740993]")[1])
    end
  end)

  it("reads nested objects and arrays, nulls and every escape, surrogate pairs included", function()
    local v = assert(json.decode(' {"a":{"b":[1,null,{"c":[]}]},"n":null,"e":1e2,' ..
                                 '"u":"\\u00e9\\u4e2d\\ud83d\\ude00\\/"} '))
    assert.equal(json.null, v.a.b[2])
    assert.same({}, v.a.b[3].c)
    assert.is_nil(v.n)
    assert.equal(100, v.e)
    assert.equal("é中😀/", v.u)
    assert.same({ "x" }, json.decode('["x"]'))
    assert.same({}, json.decode(" { } "))
  end)

  it("refuses what is not one JSON object or array, with a reason", function()
    for _, s in ipairs { "", "1", '"x"', "{", '{"a":1,}', "[1,]", '{"a":1} x', '{"a":"x\1"}', "{a:1}",
                         '{"a":tru}', '{"a":1,"b"}', '["\\ud83d"]', '["\\ude00"]', '["\\ud83dx"]', '["\\x"]',
                         "[01]", "[1.]", "[.5]", "[1e]", "[-]", "[+1]", '{"a":1]', "[" .. ("["):rep(200) } do
      local v, why = json.decode(s)
      assert.is_nil(v, s)
      assert.is_string(why, s)
    end
    assert.is_nil(json.decode({}))
  end)
end)
