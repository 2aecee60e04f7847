-- clicktocall.pager: the one function that pages a window (records, the slices of records{ concurrency },
-- archive, sync): the cursor, the end, the per-page hook, and the next page kept in flight.
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"
local mock = require "clicktocall.mock"
local options = require "clicktocall.options"
local pager = require "clicktocall.pager"

local function state(provider)
  local o = { base_url = "http://mock", app_secret = "TEST", user_data = j.USER_DATA }
  if provider then
    o.transport, o.sleep = provider.transport, provider.sleep
  end
  return assert(options.state(o, "test"))
end

local function sizes(next_page)
  local out = {}
  while true do
    local recs, err = next_page()
    assert.is_nil(err)
    if not recs then return out end
    out[#out + 1] = #recs
  end
end

describe("pager.new", function()
  local now = os.time()
  local window = { start_time = now - 86400, end_time = now }

  it("pages the window to its end by the cursor, then ends (nil, no error) without asking again", function()
    local provider = mock.new {}
    provider:seed_records(250, { start_time = now - 3600, end_time = now - 60 })
    local next_page = pager.new(state(provider), "records", window)
    assert.same({ 100, 100, 50 }, sizes(next_page))
    assert.equal(3, j.count(provider, "records_page"))
    assert.is_nil(next_page())
    assert.equal(3, j.count(provider, "records_page"))
  end)

  it("hands out the empty page that ends a window of whole pages", function()
    local provider = mock.new {}
    provider:seed_records(200, { start_time = now - 3600, end_time = now - 60 })
    assert.same({ 100, 100, 0 }, sizes(pager.new(state(provider), "records", window)))
  end)

  it("runs on_page before each page is handed out; its failure ends the paging with its error", function()
    local provider = mock.new {}
    provider:seed_records(250, { start_time = now - 3600, end_time = now - 60 })
    local calls = 0
    local next_page = pager.new(state(provider), "sync", window, { on_page = function(recs)
      calls = calls + 1
      if calls == 2 then return nil, { kind = "busy", n = #recs } end
      return true
    end })
    assert.equal(100, #next_page())
    local recs, err = next_page()
    assert.is_nil(recs)
    assert.same({ kind = "busy", n = 100 }, err)
    assert.is_nil(next_page())
    assert.equal(2, j.count(provider, "records_page"))
  end)

  it("says what is wrong with the window, named for its caller, sending nothing", function()
    local provider = mock.new {}
    local recs, err = pager.new(state(provider), "sync", { start_time = now, end_time = now - 10 })()
    assert.is_nil(recs)
    assert.equal("argument", err.kind)
    assert.matches("^sync: ", err.message)
    assert.equal(0, #provider.requests)
  end)

  describe("with ahead, over the libcurl transport's scheduler", function()
    local saved
    local provider, stats
    before_each(function()
      saved = core.curl_multi
      provider, stats = mock.new {}, { adds = 0 }
      provider:seed_records(250, { start_time = now - 3600, end_time = now - 60 })
      -- a multi that answers from the mock, each transfer at the next wait
      core.curl_multi = function()
        local queue = {}
        return {
          add = function(_, token, request)
            stats.adds = stats.adds + 1
            queue[#queue + 1] = { token, request }
            return true
          end,
          wait = function()
            local done = {}
            for i, p in ipairs(queue) do done[i] = { p[1], provider.transport(p[2]) } end
            queue = {}
            return done
          end,
          count = function() return #queue end,
          close = function() stats.closed = true end,
        }
      end
    end)
    after_each(function() core.curl_multi = saved end)

    it("asks for the next page as soon as this one is read, before the caller asks", function()
      local st = state()
      if not st.transport:scheduler(1) then return end -- plain Lua 5.1: no scheduler, no page ahead
      local next_page = pager.new(st, "records", window, { ahead = true })
      assert.equal(100, #next_page())
      assert.equal(2, stats.adds) -- page 2 on the wire while page 1 is worked on
      assert.equal(100, #next_page())
      assert.equal(3, stats.adds)
      assert.equal(50, #next_page())
      assert.equal(3, stats.adds) -- a short page is the last: nothing asked after it
      assert.is_true(stats.closed)
      assert.is_nil(next_page())
    end)

    it("asks nothing ahead once limit records were handed out, and close() drops a page asked ahead", function()
      local st = state()
      if not st.transport:scheduler(1) then return end
      local next_page = pager.new(st, "records", window, { ahead = true, limit = 100 })
      assert.equal(100, #next_page())
      assert.equal(1, stats.adds)
      local next2, close = pager.new(st, "records", window, { ahead = true })
      assert.equal(100, #next2())
      stats.closed = false
      close()
      assert.is_true(stats.closed)
      assert.is_nil(next2())
    end)
  end)
end)
