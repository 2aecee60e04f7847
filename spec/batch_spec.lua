-- clicktocall.batch (the scheduler behind the jobs) and records{ concurrency = N }.
-- The libcurl backend is driven here through a fake core.curl_multi that answers from the mock provider,
-- out of order, counting what is in flight.
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"
local batch = require "clicktocall.batch"
local slices = require "clicktocall.slices"
local clicktocall = require "clicktocall"
local mock = require "clicktocall.mock"

-- A fake multi: transfers complete last-in first-out, one per wait; each goes to `serve(request, tmp)`.
local function fake_multi(serve, stats)
  return function(opts)
    stats.opts = opts
    local queue = {}
    local m = {}
    function m.add(_, token, request, tmp)
      queue[#queue + 1] = { token, request, tmp }
      stats.adds = (stats.adds or 0) + 1
      if #queue > (stats.max or 0) then stats.max = #queue end
      return true
    end
    function m.wait(_, max_seconds)
      local p = table.remove(queue)
      if not p then
        stats.idle = (stats.idle or 0) + 1
        if max_seconds and max_seconds > 0 then core.sleep(math.min(max_seconds, 0.05)) end
        return {}
      end
      local res, err = serve(p[2], p[3])
      return { { p[1], res, err } }
    end
    function m.count() return #queue end
    function m.close() stats.closed = true end
    return m
  end
end

local function with_multi(multi, fn)
  local saved = core.curl_multi
  core.curl_multi = multi
  local ok, err = pcall(fn)
  core.curl_multi = saved
  if not ok then error(err, 0) end
end

-- the libcurl transport object with the TLS settings a multi is made with (its handle is never used with a
-- fake multi); nil on plain Lua 5.1, where it has no scheduler (sequential by design)
local function curl_t()
  local t = assert(require("clicktocall.transport.curl").new {})
  t.tls = { ca_file = "/ca.pem", insecure = false }
  return t
end

describe("batch.run", function()
  it("with a transport function runs the items one after another with io = the transport; a raise is that item's "
     .. "failure", function()
    local t = require("clicktocall.transport.func").new(function() end)
    assert.is_nil(t:scheduler(4))
    local order = {}
    local failures = batch.run(t:scheduler(4), t, { 1, 2, 3 }, function(item, io)
      assert.equal(t, io)
      order[#order + 1] = item
      if item == 2 then error("boom") end
    end)
    assert.same({ 1, 2, 3 }, order)
    assert.equal("protocol", failures[2].kind)
    assert.matches("boom", failures[2].message)
    assert.is_nil(failures[1])
    assert.is_nil(failures[3])
  end)

  it("with libcurl keeps at most n transfers in flight and hands each its own answer", function()
    local stats = {}
    with_multi(fake_multi(function(request) return { status = 200, headers = {}, body = request.url } end, stats),
               function()
      local t = curl_t()
      local sched = t:scheduler(4)
      if not sched then return end -- plain Lua 5.1: sequential by design
      local items, got = {}, {}
      for i = 1, 20 do items[i] = i end
      local failures = batch.run(sched, t, items, function(item, io)
        for k = 1, 3 do
          local res = assert(io:send { method = "GET", url = "http://x/" .. item .. "/" .. k })
          assert.equal("http://x/" .. item .. "/" .. k, res.body)
        end
        got[#got + 1] = item
      end)
      assert.same({}, failures)
      assert.equal(20, #got)
      assert.equal(60, stats.adds)
      assert.equal(4, stats.max)
      assert.is_true(stats.closed)
      assert.same({ ca_file = "/ca.pem", insecure = false }, stats.opts)
    end)
  end)

  it("with libcurl passes downloads with their temporary path, and a sleep lets the others run", function()
    local stats, log = {}, {}
    with_multi(fake_multi(function(request, tmp)
      log[#log + 1] = request.url
      return { status = 200, headers = {}, bytes = 1, sha256 = "x", tmp = tmp }
    end, stats), function()
      local t = curl_t()
      local sched = t:scheduler(2)
      if not sched then return end
      local t0 = core.now()
      local woke
      batch.run(sched, t, { "sleeper", "worker" }, function(item, io)
        if item == "sleeper" then
          io:sleep(0.3)
          woke = core.now() - t0
          log[#log + 1] = "woke"
        else
          for k = 1, 5 do
            local res = assert(io:download({ method = "GET", url = "http://x/" .. k }, "/tmp/t" .. k))
            assert.equal("/tmp/t" .. k, res.tmp)
          end
        end
      end)
      assert.same({ "http://x/1", "http://x/2", "http://x/3", "http://x/4", "http://x/5", "woke" }, log)
      assert.is_true(woke >= 0.29, "woke after " .. woke)
    end)
  end)

  it("with libcurl turns a raising task into its failure and finishes the others", function()
    with_multi(fake_multi(function() return { status = 200, headers = {}, body = "" } end, {}), function()
      local t = curl_t()
      local sched = t:scheduler(3)
      if not sched then return end
      local done = {}
      local failures = batch.run(sched, t, { 1, 2, 3, 4 }, function(item, io)
        io:send { method = "GET", url = "http://x/" }
        if item == 3 then error({ odd = true }) end
        done[#done + 1] = item
      end)
      table.sort(done)
      assert.same({ 1, 2, 4 }, done)
      assert.equal("protocol", failures[3].kind)
    end)
  end)
end)

--------------------------------------------------------------------------
-- records{ concurrency = N }
--------------------------------------------------------------------------

local SPAN = 1600 -- every slice edge for N = 1, 2, 4, 8, 16 is a multiple of 100 s

-- 700 records at pseudo-random times in the window, and one on every edge of 16 slices
local function seed(provider, t0)
  local list, x = {}, 12345
  for i = 1, 700 do
    x = (x * 1103515245 + 12345) % 2147483648
    list[#list + 1] = { callEndTime = t0 + x % (SPAN + 1) }
    if i % 40 == 0 then
      list[#list + 1] = { callEndTime = t0 + (i / 40 - 1) * 100 }
    end
  end
  list[#list + 1] = { callEndTime = t0 + SPAN }
  provider:seed_records(list)
end

local function collect(client, t0, n)
  local out = {}
  for rec in client:records { start_time = t0, end_time = t0 + SPAN, concurrency = n } do
    out[#out + 1] = rec
  end
  return out
end

-- same ids as the sequential run, each once; slice by slice in time order, by id within a slice
local function check(all, got, t0, n)
  assert.equal(#all, #got)
  local want, seen = {}, {}
  for _, r in ipairs(all) do want[r.id] = true end
  for _, r in ipairs(got) do
    assert.is_true(want[r.id], "unknown id " .. tostring(r.id))
    assert.is_nil(seen[r.id], "id twice: " .. tostring(r.id))
    seen[r.id] = true
  end
  local edges = slices.edges(t0, t0 + SPAN, n)
  local slice, last_id = 1, -1
  for _, r in ipairs(got) do
    local t = mock.parse_time(r.callEndTime)
    -- the record's slice is the current one, or a later one (a record on an edge belongs to both)
    while t > edges[slice + 1] do
      slice, last_id = slice + 1, -1
    end
    assert.is_true(t >= edges[slice], "record out of its slice's order")
    assert.is_true(r.id > last_id, "ids not ascending within a slice")
    last_id = r.id
  end
end

describe("records{ concurrency = N }", function()
  it("with a transport function pages slice after slice: every record once, edges deduplicated", function()
    local client, provider = j.client()
    local t0 = os.time() - 2 * 86400
    seed(provider, t0)
    local all = collect(client, t0, 1)
    assert.equal(718, #all)
    for _, n in ipairs { 2, 4, 8, 16 } do
      local before = j.count(provider, "records_page")
      check(all, collect(client, t0, n), t0, n)
      assert.is_true(j.count(provider, "records_page") - before >= n)
    end
  end)

  it("with libcurl pages the slices at once through the multi, same records as sequential", function()
    local provider = mock.new {}
    local t0 = os.time() - 2 * 86400
    seed(provider, t0)
    local stats = {}
    with_multi(fake_multi(function(request) return provider.transport(request) end, stats), function()
      local client = assert(clicktocall.new { base_url = "http://mock", app_secret = "TEST",
                                              user_data = j.USER_DATA })
      if not require("clicktocall.transport.curl").new({}):scheduler(1) then
        return -- plain Lua 5.1: the built-in transport pages slice after slice, through the network
      end
      -- the sequential answer, through the mock directly
      local seq = assert(clicktocall.new { base_url = "http://mock", app_secret = "TEST", user_data = j.USER_DATA,
                                           transport = provider.transport })
      local all = collect(seq, t0, 1)
      for _, n in ipairs { 4, 8, 16 } do
        stats.max = 0
        check(all, collect(client, t0, n), t0, n)
        assert.is_true(stats.max > 1, "never more than one page in flight")
        assert.is_true(stats.max <= n)
      end
      client:close()
    end)
  end)

  it("stops at limit, and breaking out early closes the scheduler", function()
    local client, provider = j.client()
    local t0 = os.time() - 2 * 86400
    seed(provider, t0)
    local n = 0
    for _ in client:records { start_time = t0, end_time = t0 + SPAN, concurrency = 4, limit = 150 } do
      n = n + 1
    end
    assert.equal(150, n)
  end)

  it("raises the error object of a failing slice", function()
    local client, provider = j.client { retries = 0 }
    local t0 = os.time() - 2 * 86400
    seed(provider, t0)
    provider:fail("records_page", 500)
    local ok, err = pcall(function()
      for _ in client:records { start_time = t0, end_time = t0 + SPAN, concurrency = 4 } do end
    end)
    assert.is_false(ok)
    assert.equal("http", err.kind)
  end)

  it("refuses a concurrency that is not an integer from 1 to 16, sending nothing", function()
    for _, bad in ipairs { 0, 17, 2.5, "4", -1 } do
      local client, provider = j.client()
      local ok, err = pcall(function()
        for _ in client:records { start_time = "2026-01-01 00:00:00", end_time = "2026-01-02 00:00:00",
                                  concurrency = bad } do end
      end)
      assert.is_false(ok)
      assert.equal("argument", err.kind)
      assert.matches("concurrency", err.message, 1, true)
      assert.equal(0, #provider.requests)
    end
  end)

  it("cuts the window into equal slices that touch at their edges", function()
    assert.same({ 0, 25, 50, 75, 100 }, slices.edges(0, 100, 4))
    assert.same({ 10, 13 }, slices.edges(10, 13, 1))
    assert.same({ 0, 1, 2 }, slices.edges(0, 2, 16)) -- never a slice shorter than a second
    assert.same({ 5, 5 }, slices.edges(5, 5, 8))
  end)
end)
