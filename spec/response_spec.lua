-- core.response on records pages: one answer whichever way the ids could be read. Record ids
-- below 2^53 fit cjson's doubles, ids past it (or strings of digits) do not; the reader's answer
-- (accept or refuse, the ids, the cursor, the message) must not depend on which kind of id the
-- other records of the page hold.
local core = require "clicktocall.core"

local BIG = "9007199254740993" -- 2^53 + 1: no double holds it
local MAX = "9223372036854775807"

local function page(records)
  return '{"meta":{"success":true,"message":"ok"},"data":[' .. table.concat(records, ",") .. "]}"
end

local function id_text(v)
  -- an id as digits on every Lua version (5.1/LuaJIT keep ids past 2^53 as strings)
  if math.type and math.type(v) == "integer" then
    return tostring(v)
  elseif type(v) == "number" then
    return string.format("%.0f", v)
  end
  return v
end

-- every result of core.response, and its count
local function read(body, asked)
  local r = table.pack and table.pack(core.response("records_page", 200, body, asked))
            or { n = select("#", core.response("records_page", 200, body, asked)),
                 core.response("records_page", 200, body, asked) }
  return r
end

-- the outcome as plain values: { "ok", ids..., cursor } or { "err", kind, message }
local function outcome(body, asked)
  local r = read(body, asked)
  if r[1] == nil then
    return { "err", r[2].kind, r[2].message }
  end
  local o = { "ok", n = r.n }
  for i, rec in ipairs(r[1]) do
    o[#o + 1] = id_text(rec.id)
    assert(i == #o - 1)
  end
  o[#o + 1] = r[2] == nil and "no cursor" or id_text(r[2])
  return o
end

describe("core.response: a record id", function()
  local odd = { "5.0", "5e0", "5E0", "50e-1", "5.", "-0", "-5", "5.5", "1e400", "-0.0", "1e2", "true", '"5.0"',
                '""', '"-5"', '"9223372036854775808"', "9223372036854775808" }

  for _, v in ipairs(odd) do
    it("written " .. v .. " is refused the same way whatever the other ids", function()
      local want = "record 2 has an id that is not an integer in plain digits " ..
                   "(0 to 9223372036854775807, as a number or a string)"
      local with_small = page { '{"id":3}', '{"id":' .. v .. '}' }
      local with_big = page { '{"id":3}', '{"id":' .. v .. '}', '{"id":' .. BIG .. '}' }
      local with_string = page { '{"id":3}', '{"id":' .. v .. '}', '{"id":"' .. BIG .. '"}' }
      for _, body in ipairs { with_small, with_big, with_string } do
        assert.same({ "err", "protocol", want }, outcome(body))
      end
    end)
  end

  it("is exact in plain digits, as a number or a string, up to 2^63-1", function()
    local body = page { '{"id":7}', '{"id":"8"}', '{"id":' .. BIG .. '}', '{"id":"' .. MAX .. '"}' }
    assert.same({ "ok", "7", "8", BIG, MAX, "no cursor", n = 2 }, outcome(body))
    if math.type then
      assert.equal("integer", math.type(core.response("records_page", 200, page { '{"id":7}' })[1].id))
    end
  end)

  it("0 is refused as not above the cursor, on both kinds of page", function()
    for _, body in ipairs { page { '{"id":0}' }, page { '{"id":0}', '{"id":' .. BIG .. '}' } } do
      assert.same({ "err", "protocol", "page ids do not advance: record 1 has id 0, not above 0" }, outcome(body))
    end
  end)
end)

describe("core.response: nesting", function()
  -- the envelope is 1 level, data 2, a record 3: 61 more inside a record make 64
  local function nested(levels)
    return string.rep("[", levels) .. string.rep("]", levels)
  end

  it("deeper than 64 levels is refused whatever the ids", function()
    for _, last in ipairs { '{"id":4}', '{"id":' .. BIG .. '}', '{"id":"4"}' } do
      local body = page { '{"id":1,"x":' .. nested(62) .. "}", last }
      local o = outcome(body)
      assert.equal("err", o[1])
      assert.equal("protocol", o[2])
      assert.matches("nesting deeper than 64", o[3])
    end
  end)

  it("of 64 levels is read, whatever the ids", function()
    local small = outcome(page { '{"id":1,"x":' .. nested(61) .. "}", '{"id":4}' })
    assert.same({ "ok", "1", "4", "no cursor", n = 2 }, small)
    local big = outcome(page { '{"id":1,"x":' .. nested(61) .. "}", '{"id":' .. BIG .. '}' })
    assert.same({ "ok", "1", BIG, "no cursor", n = 2 }, big)
  end)

  it("deeper than 64 levels is refused for the other calls too", function()
    local body = '{"meta":{"success":true},"data":5,"x":' .. nested(64) .. "}"
    local v, err = core.response("balance", 200, body)
    assert.is_nil(v)
    assert.equal("protocol", err.kind)
    assert.matches("nesting deeper than 64", err.message)
    assert.equal(5, core.response("balance", 200, '{"meta":{"success":true},"data":5,"x":' .. nested(63) .. "}"))
  end)
end)

describe("core.response: data null", function()
  local null_page = '{"meta":{"success":true,"message":"ok"},"data":null}'

  it("on a records page is an empty page, in the shape of data []", function()
    local r = read(null_page)
    assert.equal(2, r.n)
    assert.same({}, r[1])
    assert.is_nil(r[2])
    assert.same(outcome(page {}), outcome(null_page))
    -- and with a cursor asked
    assert.same(outcome(page {}, "42"), outcome(null_page, "42"))
  end)

  it("for the other calls: bind_seat ignores data, dial and balance refuse it", function()
    assert.is_true(core.response("bind_seat", 200, null_page))
    local v, err = core.response("dial", 200, null_page)
    assert.is_nil(v)
    assert.same({ kind = "protocol", message = "response data is not a session id string", sent = true }, err)
    v, err = core.response("balance", 200, null_page)
    assert.is_nil(v)
    assert.same({ kind = "protocol", message = "response data is not a number", sent = true }, err)
  end)
end)

-- The reader decodes with its own one-pass decoder (csrc/jsondecode.c); these pin the values and
-- refusals lua-cjson 2.1.0 gave it, which the decoder keeps (the fuzz harness compares the two
-- readers on every input: scripts/fuzz response).
describe("core.response: the JSON it reads", function()
  local NULL = require("cjson").null

  local function one(fields)
    local r, err = core.response("records_page", 200, page { "{" .. fields .. "}" })
    assert.is_nil(err)
    return r[1]
  end

  it("finishes records: null fields absent, whole numbers integers (5.3+), nested values as cjson's", function()
    local rec = one('"id":1,"a":null,"b":5.0,"c":1e2,"d":-0,"e":2.5,"f":{"g":5,"h":null},"i":[null,3],'
                    .. '"j":"x","j":null,"k":9007199254740993')
    assert.is_nil(rec.a)
    assert.is_nil(rec.j) -- a later null clears an earlier value, as cjson's last-wins then the walk did
    assert.equal(5, rec.b)
    assert.equal(100, rec.c)
    assert.equal(0, rec.d)
    assert.equal(2.5, rec.e)
    assert.equal(5, rec.f.g)
    assert.equal(NULL, rec.f.h)
    assert.equal(NULL, rec.i[1])
    assert.equal(3, rec.i[2])
    assert.equal(2 ^ 53, rec.k) -- a double, as strtod rounds it
    if math.type then
      for _, k in ipairs { "b", "c", "d" } do
        assert.equal("integer", math.type(rec[k]), k)
      end
      assert.equal("float", math.type(rec.f.g)) -- inside a field: cjson's double
      assert.equal("float", math.type(rec.k))
    end
  end)

  it("gives each record its own keys, whatever the record before had in the same place", function()
    local many = {}
    for i = 1, 40 do
      many[i] = '"k' .. i .. '":' .. i
    end
    local r = assert(core.response("records_page", 200, page {
      '{"id":1,"ab":1,' .. table.concat(many, ",") .. "}",
      '{"id":2,"abc":2,' .. table.concat(many, ",") .. "}",
      '{"id":3,"a":3}',
      '{"id":4,"\\u0061b":4,"":5}',
      '{"id":5,"ab":6,"":7}',
    }))
    assert.same({ 1, 2, 3, 4, 6 }, { r[1].ab, r[2].abc, r[3].a, r[4].ab, r[5].ab })
    assert.is_nil(r[1].abc)
    assert.is_nil(r[2].ab)
    assert.equal(7, r[5][""])
    assert.equal(40, r[2].k40)
    local n = 0
    for _ in pairs(r[2]) do
      n = n + 1
    end
    assert.equal(42, n)
  end)

  it("decodes escapes to UTF-8, surrogate pairs to one character, raw control bytes as they are", function()
    local rec = one('"id":1,"s":"\\u00e9\\u4e2d\\ud83d\\ude00\\n\\/\\"","t":"a\tb\1"')
    assert.equal("\195\169\228\184\173\240\159\152\128\n/\"", rec.s)
    assert.equal("a\tb\1", rec.t)
  end)

  it("refuses what cjson refuses, saying what is wrong and at which byte (0-based)", function()
    local cases = {
      { "", "expected a value at byte offset 0" },
      { "{", "expected a string as object key at byte offset 1" },
      { '{"a":1,}', "expected a string as object key at byte offset 7" },
      { "[1,]", "expected a value at byte offset 3" },
      { '{"a" 1}', "expected ':' after an object key at byte offset 5" },
      { '{"a":01}', "invalid number at byte offset 5" },
      { '{"a":"\\ud800x"}', "invalid \\u escape (4 hex digits, surrogates paired) at byte offset 6" },
      { '{"a":"\\udc00\\ud800"}', "invalid \\u escape (4 hex digits, surrogates paired) at byte offset 6" },
      { '{"a":"\\q"}', "invalid escape in a string at byte offset 6" },
      { '{"a":"x', "unterminated string at byte offset 7" },
      { '{"a":tru}', "expected a value at byte offset 5" },
      { '{"a":1} x', "expected the end after the value at byte offset 8" },
      { "5\0", "UTF-16 or UTF-32 (a NUL byte) at byte offset 1" },
      { ("["):rep(70), "nesting deeper than 64 at byte offset 64" },
    }
    for _, c in ipairs(cases) do
      local v, err = core.response("balance", 200, c[1])
      assert.is_nil(v)
      assert.equal("protocol", err.kind)
      assert.equal("response body is not JSON (" .. c[2] .. ")", err.message:match("^(.-%)):"), c[1])
    end
  end)

  it("takes what cjson took: a NUL ends the body, strtod's numbers", function()
    assert.equal(5, core.response("balance", 200, '{"meta":{"success":true},"data":5}\0junk'))
    assert.equal(5, core.response("balance", 200, '{"meta":{"success":true},"data":5.}'))
    assert.equal(-0.5, core.response("balance", 200, '{"meta":{"success":true},"data":-.5}'))
    assert.equal(1000, core.response("balance", 200, '{"meta":{"success":true},"data":1.e3}'))
  end)

  it("needs no lua-cjson", function()
    -- a second instance of the core, opened while cjson cannot be required
    local path
    for t in package.cpath:gmatch("[^;]+") do
      local p = t:gsub("%?", "clicktocall/core")
      local f = io.open(p, "rb")
      if f then
        f:close()
        path = p
        break
      end
    end
    assert.truthy(path)
    local saved, preload = package.loaded.cjson, package.preload.cjson
    package.loaded.cjson = nil
    package.preload.cjson = function() error("no cjson here") end
    local ok, fresh = pcall(function() return package.loadlib(path, "luaopen_clicktocall_core")() end)
    package.loaded.cjson, package.preload.cjson = saved, preload
    assert.is_true(ok, fresh)
    local r = fresh.response("records_page", 200, page { '{"id":7}' })
    assert.equal(7, r[1].id)
  end)
end)

-- A dial's accepted answer in the provider's usual form is read in one pass (csrc/response.c,
-- ctc_fast_dial); every other form goes to the full reader. Both must give the same answer: these
-- are the forms on either side of the line.
describe("core.response: a dial's answer, in the usual form and around it", function()
  local function dial(body)
    local v, err = core.response("dial", 200, body)
    if v == nil then
      return { kind = err.kind, message = err.message }
    end
    return v
  end
  local OK = '{"meta":{"success":true,"message":"ok"},"data":"sid-1"}'

  it("reads the session id whatever the order, spacing and message", function()
    for _, body in ipairs {
      OK,
      '{"data":"sid-1","meta":{"message":"ok","success":true}}',
      ' \t\r\n{ "meta" : { "success" : true , "message" : "成功" } , "data" : "sid-1" } \n',
      '{"meta":{"success":true},"data":"sid-1"}',
      '{"meta":{"success":true,"message":""},"data":"sid-1"}',
      -- the full reader's forms: escapes, duplicates (the last wins), members of other names, a NUL after
      '{"meta":{"success":true,"message":"o\\nk"},"data":"sid-\\u0031"}',
      '{"meta":{"success":false,"success":true},"data":"sid-1"}',
      '{"meta":{"success":true},"data":"sid-0","data":"sid-1"}',
      '{"meta":{"success":true,"code":0},"data":"sid-1","extra":[1,{"a":null}]}',
      OK .. "\0junk",
    } do
      assert.equal("sid-1", dial(body), body)
    end
  end)

  it("refuses what is not an accepted dial, with the full reader's message", function()
    local proto = function(m) return { kind = "protocol", message = m } end
    for body, want in pairs {
      ['{"meta":{"success":false,"message":"seat busy"},"data":"sid-1"}'] = { kind = "api", message = "seat busy" },
      ['{"meta":{"success":true,"message":"ok"},"data":""}'] = proto("response data is not a session id string"),
      ['{"meta":{"success":true,"message":"ok"},"data":7}'] = proto("response data is not a session id string"),
      ['{"meta":{"success":true,"message":"ok"}}'] = proto("response data is not a session id string"),
      ['{"meta":{"success":"true"},"data":"sid-1"}'] = proto("response meta.success is not a boolean"),
      ['{"data":"sid-1"}'] = proto("response has no meta object"),
      ['["sid-1"]'] = proto("response has no meta object"),
    } do
      assert.same(want, dial(body), body)
    end
    for _, body in ipairs { OK .. "x", OK:sub(1, -2), '{"meta":{"success":true},"data":"sid\0-1"}',
                            '{"meta":{"success":tru},"data":"sid-1"}' } do
      local got = dial(body)
      assert.is_table(got, body)
      assert.equal("protocol", got.kind, body)
      assert.truthy(got.message:find("response body is not JSON", 1, true), body)
    end
  end)
end)
