-- Pagination: the maxId cursor, the short last page, loop protection, the iterator.
local h = require "spec.helpers"
local mc = require "spec.helpers.client"
local mock = require "clicktocall.mock"

local WINDOW = { start_time = "2019-03-25 00:00:00", end_time = "2019-03-26 00:00:00" }

local function with(extra)
  local t = {}
  for k, v in pairs(WINDOW) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- a client over a provider holding `total` records in WINDOW with ids 10, 20, 30, ... (gaps, as real ids have)
local function seeded(total, opts)
  local client, provider, events = mc.new(opts)
  local recs = {}
  for i = 1, total do
    recs[i] = { id = i * 10, sessionId = "s-" .. i * 10, callEndTime = "2019-03-25 10:30:00", recordFlag = "0",
                fwdAnswerTime = mock.null }
  end
  provider:seed_records(recs)
  return client, provider, events
end

-- a fault that lets one request through to the provider's real answer (the faults after it hit later pages)
local function pass(_, serve)
  return serve()
end

-- a canned page: HTTP 200 with this JSON body, instead of the provider's own answer
local function page_of(body)
  return { status = 200, body = body }
end

describe("records", function()
  for _, total in ipairs { 0, 1, 99, 100, 101, 250, 300 } do
    it(("iterates all %d records, asking for %d pages"):format(total, math.floor(total / 100) + 1), function()
      local client, provider = seeded(total)
      local ids = {}
      for rec in client:records(WINDOW) do
        ids[#ids + 1] = rec.id
      end
      assert.equal(total, #ids)
      for i, id in ipairs(ids) do
        assert.equal(i * 10, id)
      end
      assert.equal(math.floor(total / 100) + 1, provider:count("records_page"))
      assert.equal(math.floor(total / 100) + 1, provider:count())
      -- each page asks from the last id of the one before, within the window
      for p, req in ipairs(provider.requests) do
        assert.equal((p - 1) * 1000, req.body.maxId)
        assert.equal(WINDOW.start_time, req.body.starTime)
        assert.equal(WINDOW.end_time, req.body.endTime)
        assert.equal(h.USER_DATA, req.body.userData)
      end
    end)
  end

  it("records_page returns the next cursor for a full page and nil for a short one", function()
    local client, provider = seeded(150)
    local recs, nxt = client:records_page(WINDOW)
    assert.equal(100, #recs)
    assert.equal(1000, nxt)
    recs, nxt = client:records_page(with { max_id = nxt })
    assert.equal(50, #recs)
    assert.equal(1010, recs[1].id)
    assert.is_nil(nxt)
    assert.equal(1000, provider:last_request("records_page").body.maxId)
  end)

  it("gives ids as integers and drops JSON nulls", function()
    local client, provider = seeded(1)
    local wire
    provider:fail("records_page", function(_, serve)
      local res = serve()
      wire = res.body
      return res
    end)
    local recs = client:records_page(WINDOW)
    assert.truthy(wire:find('"fwdAnswerTime":null', 1, true)) -- the null was on the wire
    assert.equal(10, recs[1].id)
    if math.type then
      assert.equal("integer", math.type(recs[1].id))
    end
    assert.is_nil(recs[1].fwdAnswerTime)
    assert.equal("s-10", recs[1].sessionId)
  end)

  it("keeps ids past 2^53 exact", function()
    -- 100 ids from 9007199254740900 to 9007199254740999: a double cannot tell them apart
    local client, provider = mc.new()
    local recs = {}
    for i = 1, 100 do recs[i] = { id = ("90071992547409%02d"):format(i - 1), callEndTime = "2019-03-25 10:30:00" } end
    provider:seed_records(recs)
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
    local more = client:records_page(with { max_id = nxt })
    assert.same({}, more)
    assert.truthy(provider.requests[2].raw_body:find('"maxId":9007199254740999,', 1, true))
  end)

  it("refuses a page whose ids do not advance past maxId (protocol)", function()
    local client, provider = seeded(100)
    local _, nxt = client:records_page(WINDOW)
    assert.equal(1000, nxt)
    provider:fail("records_page", "stuck_ids")
    local recs, err = client:records_page(with { max_id = nxt })
    assert.is_nil(recs)
    assert.equal("protocol", err.kind)
    assert.matches("do not advance", err.message)
    assert.equal("stuck_ids", provider:last_request("records_page").fault)
  end)

  it("refuses ids that go backwards inside a page", function()
    local client, provider = mc.new()
    provider:fail("records_page", page_of '{"meta":{"success":true},"data":[{"id":5},{"id":4}]}')
    local _, err = client:records_page(WINDOW)
    assert.equal("protocol", err.kind)
  end)

  it("refuses records without an id, or with an id that is not an integer", function()
    for _, rec in ipairs { '{"sessionId":"x"}', '{"id":1.5}', '{"id":-3}', '{"id":"abc"}', '7' } do
      local client, provider = mc.new()
      provider:fail("records_page", page_of('{"meta":{"success":true},"data":[' .. rec .. "]}"))
      local recs, err = client:records_page(WINDOW)
      assert.is_nil(recs, rec)
      assert.equal("protocol", err.kind)
    end
  end)

  it("the iterator raises on a non-advancing page instead of looping", function()
    local client, provider = seeded(100)
    provider:fail("records_page", pass):fail("records_page", "stuck_ids", math.huge)
    local n = 0
    local ok, err = pcall(function()
      for _ in client:records(WINDOW) do n = n + 1 end
    end)
    assert.is_false(ok)
    assert.equal(100, n)
    assert.equal("protocol", err.kind)
    assert.equal(2, provider:count("records_page"))
  end)

  it("stops after `limit` records without fetching more pages than needed", function()
    local client, provider = seeded(1000)
    local n = 0
    for _ in client:records(with { limit = 150 }) do n = n + 1 end
    assert.equal(150, n)
    assert.equal(2, provider:count())
  end)

  it("limit larger than what there is just ends", function()
    local client = seeded(5)
    local n = 0
    for _ in client:records(with { limit = 50 }) do n = n + 1 end
    assert.equal(5, n)
  end)

  for _, bad in ipairs { 0, -1, 1.5, "10", true, 0 / 0, math.huge } do
    it("raises an argument error for limit = " .. tostring(bad) .. ", sending nothing", function()
      local client, provider = seeded(5)
      local ok, err = pcall(function()
        for _ in client:records(with { limit = bad }) do end
      end)
      assert.is_false(ok)
      assert.equal("argument", err.kind)
      assert.matches("limit", err.message)
      assert.equal(0, provider:count())
    end)
  end

  it("raises the error object itself when the first page fails", function()
    local client, provider = seeded(5, { retries = 0 })
    provider:fail("records_page", { api_error = "时间范围错误" })
    local ok, err = pcall(function()
      for _ in client:records(WINDOW) do end
    end)
    assert.is_false(ok)
    assert.is_table(err)
    assert.equal("api", err.kind)
    assert.equal("时间范围错误", err.message)
  end)

  it("raises when a later page fails, after yielding the earlier records", function()
    local client, provider = seeded(150, { retries = 0 })
    provider:fail("records_page", pass):fail("records_page", { status = 500, body = "" })
    local n = 0
    local ok, err = pcall(function()
      for _ in client:records(WINDOW) do n = n + 1 end
    end)
    assert.is_false(ok)
    assert.equal(100, n)
    assert.equal("http", err.kind)
    assert.equal(500, err.status)
    assert.equal(2, provider:count())
  end)

  it("raises argument errors (bad times) from the iterator, sending nothing", function()
    local client, provider = seeded(5)
    local ok, err = pcall(function()
      for _ in client:records { start_time = "2019-03-26 00:00:00", end_time = "2019-03-25 00:00:00" } do end
    end)
    assert.is_false(ok)
    assert.equal("argument", err.kind)
    assert.equal(0, provider:count())
  end)

  it("ends for good once done: further calls return nil", function()
    local client, provider = seeded(1)
    local it = client:records(WINDOW)
    assert.is_table(it())
    assert.is_nil(it())
    assert.is_nil(it())
    assert.equal(1, provider:count())
  end)

  it("on 5.4, breaking out of the loop closes the iterator (its closing value)", function()
    local client, provider = seeded(250)
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
      assert.equal(1, provider:count())
    else
      getmetatable(closer).__close()
      assert.is_nil(step())
      assert.equal(0, provider:count())
    end
  end)

  it("retries a failed page like any idempotent call", function()
    local client, provider = seeded(103)
    provider:fail("records_page", pass):fail("records_page", { status = 503, body = "" })
    local n = 0
    for _ in client:records(WINDOW) do n = n + 1 end
    assert.equal(103, n)
    assert.equal(3, provider:count())
    assert.equal(1, #provider.slept) -- one backoff before the retry
    -- the retry asks for the same page again
    assert.equal(provider.requests[2].raw_body, provider.requests[3].raw_body)
  end)

  it("does not see changes the caller makes to its table while iterating", function()
    local args = with {}
    local client, provider = seeded(150)
    for _ in client:records(args) do args.start_time = "garbage" end
    assert.equal(2, provider:count())
    assert.equal(WINDOW.start_time, provider:last_request().body.starTime)
  end)
end)
