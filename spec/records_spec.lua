-- Pagination: the maxId cursor, the short last page, loop protection, the iterator.
local h = require "spec.helpers"

local WINDOW = { start_time = "2019-03-25 00:00:00", end_time = "2019-03-26 00:00:00" }

local function with(extra)
  local t = {}
  for k, v in pairs(WINDOW) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- a provider holding `total` records with ids 10, 20, 30, ... (gaps, as real ids have)
local function provider(total)
  return function(req)
    local max_id = tonumber(req.body:match('"maxId":(%d+)'))
    local first = math.floor(max_id / 10) + 1
    local n = math.max(0, math.min(100, total - first + 1))
    local recs = {}
    for i = 1, n do
      local id = (first + i - 1) * 10
      recs[i] = ('{"id":%d,"sessionId":"s-%d","recordFlag":"0","fwdAnswerTime":null}'):format(id, id)
    end
    return h.raw(200, '{"meta":{"success":true,"message":"ok"},"data":[' .. table.concat(recs, ",") .. "]}")
  end
end

describe("records", function()
  for _, total in ipairs { 0, 1, 99, 100, 101, 250, 300 } do
    it(("iterates all %d records, asking for %d pages"):format(total, math.floor(total / 100) + 1), function()
      local client, m = h.client({}, nil, provider(total))
      local ids = {}
      for rec in client:records(WINDOW) do
        ids[#ids + 1] = rec.id
      end
      assert.equal(total, #ids)
      for i, id in ipairs(ids) do
        assert.equal(i * 10, id)
      end
      assert.equal(math.floor(total / 100) + 1, #m.requests)
      -- each page asks from the last id of the one before
      for p, req in ipairs(m.requests) do
        assert.equal((p - 1) * 1000, tonumber(req.body:match('"maxId":(%d+)')))
      end
    end)
  end

  it("records_page returns the next cursor for a full page and nil for a short one", function()
    local client = h.client({}, nil, provider(150))
    local recs, nxt = client:records_page(WINDOW)
    assert.equal(100, #recs)
    assert.equal(1000, nxt)
    recs, nxt = client:records_page(with { max_id = nxt })
    assert.equal(50, #recs)
    assert.is_nil(nxt)
  end)

  it("gives ids as integers and drops JSON nulls", function()
    local client = h.client({}, nil, provider(1))
    local recs = client:records_page(WINDOW)
    assert.equal(10, recs[1].id)
    if math.type then
      assert.equal("integer", math.type(recs[1].id))
    end
    assert.is_nil(recs[1].fwdAnswerTime)
    assert.equal("s-10", recs[1].sessionId)
  end)

  it("keeps ids past 2^53 exact", function()
    -- 100 ids from 9007199254740900 to 9007199254740999: a double cannot tell them apart
    local recs = {}
    for i = 1, 100 do recs[i] = ('{"id":90071992547409%02d}'):format(i - 1) end
    local body = '{"meta":{"success":true,"message":"ok"},"data":[' .. table.concat(recs, ",") .. "]}"
    local client, m = h.client { h.raw(200, body), h.raw(200, '{"meta":{"success":true},"data":[]}') }
    local page, nxt = client:records_page(WINDOW)
    assert.equal(100, #page)
    -- on 5.3+ integers; on 5.1/LuaJIT a number up to 2^53, a string past it
    local function digits(v)
      if type(v) == "string" or (math.type and math.type(v) == "integer") then return tostring(v) end
      return ("%.0f"):format(v)
    end
    assert.equal("9007199254740999", digits(nxt))
    -- an id past 2^53 is exact: an integer where Lua has them, a string of digits where it has not
    if math.type then
      assert.equal("integer", math.type(nxt))
      assert.equal(9007199254740999, nxt)
    else
      assert.equal("string", type(nxt))
    end
    assert.equal("9007199254740950", digits(page[51].id))
    client:records_page(with { max_id = nxt })
    assert.truthy(m.requests[2].body:find('"maxId":9007199254740999,', 1, true))
  end)

  it("refuses a page whose ids do not advance past maxId (protocol)", function()
    local client = h.client { h.page(1, 100), h.page(50, 100) }
    local _, nxt = client:records_page(WINDOW)
    assert.equal(100, nxt)
    local recs, err = client:records_page(with { max_id = nxt })
    assert.is_nil(recs)
    assert.equal("protocol", err.kind)
    assert.matches("do not advance", err.message)
  end)

  it("refuses ids that go backwards inside a page", function()
    local body = '{"meta":{"success":true},"data":[{"id":5},{"id":4}]}'
    local _, err = h.client({ h.raw(200, body) }):records_page(WINDOW)
    assert.equal("protocol", err.kind)
  end)

  it("refuses records without an id, or with an id that is not an integer", function()
    for _, rec in ipairs { '{"sessionId":"x"}', '{"id":1.5}', '{"id":-3}', '{"id":"abc"}', '7' } do
      local body = '{"meta":{"success":true},"data":[' .. rec .. "]}"
      local recs, err = h.client({ h.raw(200, body) }):records_page(WINDOW)
      assert.is_nil(recs, rec)
      assert.equal("protocol", err.kind)
    end
  end)

  it("the iterator raises on a non-advancing page instead of looping", function()
    local client = h.client({ h.page(1, 100) }, nil, h.page(1, 100))
    local n = 0
    local ok, err = pcall(function()
      for _ in client:records(WINDOW) do n = n + 1 end
    end)
    assert.is_false(ok)
    assert.equal(100, n)
    assert.equal("protocol", err.kind)
  end)

  it("stops after `limit` records without fetching more pages than needed", function()
    local client, m = h.client({}, nil, provider(1000))
    local n = 0
    for _ in client:records(with { limit = 150 }) do n = n + 1 end
    assert.equal(150, n)
    assert.equal(2, #m.requests)
  end)

  it("limit larger than what there is just ends", function()
    local client = h.client({}, nil, provider(5))
    local n = 0
    for _ in client:records(with { limit = 50 }) do n = n + 1 end
    assert.equal(5, n)
  end)

  for _, bad in ipairs { 0, -1, 1.5, "10", true, 0 / 0, math.huge } do
    it("raises an argument error for limit = " .. tostring(bad) .. ", sending nothing", function()
      local client, m = h.client({}, nil, provider(5))
      local ok, err = pcall(function()
        for _ in client:records(with { limit = bad }) do end
      end)
      assert.is_false(ok)
      assert.equal("argument", err.kind)
      assert.matches("limit", err.message)
      assert.equal(0, #m.requests)
    end)
  end

  it("raises the error object itself when the first page fails", function()
    local client = h.client({ h.refused("时间范围错误") }, { retries = 0 })
    local ok, err = pcall(function()
      for _ in client:records(WINDOW) do end
    end)
    assert.is_false(ok)
    assert.is_table(err)
    assert.equal("api", err.kind)
    assert.equal("时间范围错误", err.message)
  end)

  it("raises when a later page fails, after yielding the earlier records", function()
    local client = h.client({ h.page(1, 100), h.raw(500, "") }, { retries = 0 })
    local n = 0
    local ok, err = pcall(function()
      for _ in client:records(WINDOW) do n = n + 1 end
    end)
    assert.is_false(ok)
    assert.equal(100, n)
    assert.equal("http", err.kind)
  end)

  it("raises argument errors (bad times) from the iterator, sending nothing", function()
    local client, m = h.client {}
    local ok, err = pcall(function()
      for _ in client:records { start_time = "2019-03-26 00:00:00", end_time = "2019-03-25 00:00:00" } do end
    end)
    assert.is_false(ok)
    assert.equal("argument", err.kind)
    assert.equal(0, #m.requests)
  end)

  it("ends for good once done: further calls return nil", function()
    local client = h.client({}, nil, provider(1))
    local it = client:records(WINDOW)
    assert.is_table(it())
    assert.is_nil(it())
    assert.is_nil(it())
  end)

  it("on 5.4, breaking out of the loop closes the iterator (its closing value)", function()
    local client = h.client({}, nil, provider(250))
    local step, _, _, closer = client:records(WINDOW)
    assert.is_table(getmetatable(closer))
    assert.is_function(getmetatable(closer).__close)
    if _VERSION == "Lua 5.4" then
      local f = assert(load([[
        local step, state, ctl, closer = ...
        for rec in step, state, ctl, closer do
          if rec.id == 30 then break end
        end
      ]]))
      f(step, nil, nil, closer)
      assert.is_nil(step()) -- closed: no more records, no more requests
    else
      getmetatable(closer).__close()
      assert.is_nil(step())
    end
  end)

  it("retries a failed page like any idempotent call", function()
    local client, m = h.client { h.page(1, 100), h.raw(503, ""), h.page(101, 3) }
    local n = 0
    for _ in client:records(WINDOW) do n = n + 1 end
    assert.equal(103, n)
    assert.equal(3, #m.requests)
  end)

  it("does not see changes the caller makes to its table while iterating", function()
    local args = with {}
    local client, m = h.client({}, nil, provider(150))
    for _ in client:records(args) do args.start_time = "garbage" end
    assert.equal(2, #m.requests)
  end)
end)
