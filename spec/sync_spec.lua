-- client:sync{} against the mock provider: the state file, resuming, the window, the lock, hooks, bad input.
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"
local mock = require "clicktocall.mock"
local flatjson = require "clicktocall.flatjson"

local DAY = 86400

local function state_of(path)
  return assert(flatjson.decode(assert(j.read(path))))
end

describe("sync", function()
  local dir, state
  before_each(function()
    dir = j.mkdtemp()
    state = dir .. "/ctc-sync.json"
  end)
  after_each(function() j.rmtree(dir) end)

  it("delivers every record once in id order, writes the state, and a second run delivers only new ones", function()
    local client, provider = j.client()
    local now = os.time()
    local recs = provider:seed_records(250, { start_time = now - 20 * 3600, end_time = now - 60 })
    local got = {}
    local summary = assert(client:sync { state = state, on_record = function(r) got[#got + 1] = r.id end })
    assert.equal(250, summary.delivered)
    assert.equal(3, summary.pages)
    assert.equal(recs[250].id, summary.max_id)
    assert.equal(state, summary.state)
    for i = 1, 250 do assert.equal(recs[i].id, got[i]) end
    local s = state_of(state)
    assert.equal(1, s.version)
    assert.equal(recs[250].id, s.max_id)
    assert.equal(j.USER_DATA, s.user_data)
    -- the window start: lookback (a day) behind now
    assert.is_true(math.abs(s.from - (now - DAY)) <= 5)
    got = {}
    local again = assert(client:sync { state = state, on_record = function(r) got[#got + 1] = r.id end })
    assert.equal(0, again.delivered)
    assert.same({}, got)
    local more = provider:seed_records(3, { start_time = now - 30, end_time = now - 10 })
    s = state_of(state) -- the second run moved the start up with the clock
    local third = assert(client:sync { state = state, on_record = function(r) got[#got + 1] = r.id end })
    assert.equal(3, third.delivered)
    assert.same({ more[1].id, more[2].id, more[3].id }, got)
    -- the ask: ids above the last one delivered before, from the state's start to now
    local last = provider:last_request("records_page").body
    assert.equal(tostring(recs[250].id), tostring(last.maxId))
    assert.equal(mock.format_time(s.from), last.starTime)
  end)

  it("starts at since on the first run, and the window start keeps lookback seconds behind now", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records { { callEndTime = now - 5 * DAY }, { callEndTime = now - 3 * DAY } }
    local got = {}
    assert(client:sync { state = state, since = now - 4 * DAY, lookback = 3600,
                         on_record = function(r) got[#got + 1] = r.id end })
    assert.same({ 2 }, got)
    assert.equal(mock.format_time(now - 4 * DAY), provider:last_request("records_page").body.starTime)
    assert.is_true(math.abs(state_of(state).from - (now - 3600)) <= 5)
    -- since is for the first run only
    assert(client:sync { state = state, since = now - 10 * DAY, lookback = 3600, on_record = function() end })
    assert.is_true(math.abs(mock.parse_time(provider:last_request("records_page").body.starTime) - (now - 3600)) <= 5)
  end)

  it("a late record (a high id, an old call end within lookback) is still found", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records { { callEndTime = now - 600 } }
    assert(client:sync { state = state, on_record = function() end })
    -- arrives at the provider after the run, though the call ended before it
    local late = provider:seed_records { { callEndTime = now - 1200 } }
    local got = {}
    assert(client:sync { state = state, on_record = function(r) got[#got + 1] = r.id end })
    assert.same({ late[1].id }, got)
  end)

  it("on_record raising mid-page: kind callback with cause; the state keeps the last whole page; a run resumes",
     function()
    local client, provider = j.client()
    local now = os.time()
    local recs = provider:seed_records(250, { start_time = now - 20 * 3600, end_time = now - 60 })
    local boom = { why = "db down" }
    local got = {}
    local summary, err = client:sync { state = state, on_record = function(r)
      if r.id == recs[150].id then error(boom) end
      got[#got + 1] = r.id
    end }
    assert.is_nil(summary)
    assert.equal("callback", err.kind)
    assert.equal(boom, err.cause)
    assert.equal(149, #got)
    assert.equal(recs[100].id, state_of(state).max_id) -- page 1 was handled whole, page 2 was not
    local second = {}
    local again = assert(client:sync { state = state, on_record = function(r) second[#second + 1] = r.id end })
    assert.equal(150, again.delivered) -- at least once: 101..149 again, then the rest
    assert.equal(recs[101].id, second[1])
    assert.equal(recs[250].id, second[150])
    assert.equal(recs[250].id, state_of(state).max_id)
  end)

  it("on_record returning nil, err stops the run with kind callback and err.cause", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records(3, { start_time = now - 3600, end_time = now - 60 })
    local summary, err = client:sync { state = state, on_record = function() return nil, "constraint" end }
    assert.is_nil(summary)
    assert.equal("callback", err.kind)
    assert.equal("constraint", err.cause)
    assert.equal("missing", core.file_kind(state))
  end)

  it("a failed listing returns nil, err and keeps the state of the pages handled whole", function()
    local client, provider = j.client { retries = 0 }
    local now = os.time()
    local recs = provider:seed_records(150, { start_time = now - 3600, end_time = now - 60 })
    provider:fail("records_page", function(_, serve)
      if provider:count("records_page") >= 2 then
        return { status = 502, headers = {}, body = "bad gateway" }
      end
      return serve()
    end, math.huge)
    local summary, err = client:sync { state = state, on_record = function() end }
    assert.is_nil(summary)
    assert.equal("http", err.kind)
    assert.equal(recs[100].id, state_of(state).max_id)
  end)

  it("refuses a corrupt or foreign state file, naming it, and leaves it as it was", function()
    local client, provider = j.client()
    for _, text in ipairs { "not json", '{"version":2,"max_id":1,"from":1}', '{"version":1,"from":1}',
                            '{"version":1,"max_id":1,"from":1,"user_data":"someone-else"}', "" } do
      j.write(state, text)
      local summary, err = client:sync { state = state, on_record = function() end }
      assert.is_nil(summary, text)
      assert.equal("argument", err.kind)
      assert.matches(state, err.message, 1, true)
      assert.equal(text, j.read(state))
    end
    assert.equal(0, #provider.requests)
  end)

  it("is busy while another run holds the state file", function()
    local client, provider = j.client()
    local held = assert(core.lock_file(state .. ".lock"))
    local summary, err = client:sync { state = state, on_record = function() end }
    assert.is_nil(summary)
    assert.equal("busy", err.kind)
    assert.is_true(err.retryable)
    assert.equal(0, #provider.requests)
    assert.equal("missing", core.file_kind(state))
    held:unlock()
    assert(client:sync { state = state, on_record = function() end })
  end)

  it("keeps ids past 2^53 exact in the state", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records { { id = "9007199254740993", callEndTime = now - 60 } }
    local summary = assert(client:sync { state = state, on_record = function() end })
    assert.equal("9007199254740993", tostring(summary.max_id):gsub("%.0$", ""))
    assert.matches('"max_id":9007199254740993,', j.read(state), 1, true)
    assert(client:sync { state = state, on_record = function() end })
    -- (the raw body: cjson would read the number as a double)
    assert.matches('"maxId":"?9007199254740993[",}]', provider:last_request("records_page").raw_body)
  end)

  describe("refuses bad input as an argument error naming the field, sending and writing nothing:", function()
    local cases = {
      { "state", function() return { on_record = print } end },
      { "state", function(d) return { state = d .. "/missing/s.json", on_record = print } end },
      { "state", function(d) return { state = d, on_record = print } end },
      { "on_record", function(d) return { state = d .. "/s.json" } end },
      { "on_record", function(d) return { state = d .. "/s.json", on_record = "print" } end },
      { "lookback", function(d) return { state = d .. "/s.json", on_record = print, lookback = -1 } end },
      { "lookback", function(d) return { state = d .. "/s.json", on_record = print, lookback = "1h" } end },
      { "since", function(d) return { state = d .. "/s.json", on_record = print, since = "soon" } end },
      { "user_data", function(d) return { state = d .. "/s.json", on_record = print, user_data = "" } end },
      { "verbose", function(d) return { state = d .. "/s.json", on_record = print, verbose = true } end },
    }
    for i, case in ipairs(cases) do
      it(case[1] .. " (#" .. i .. ")", function()
        local client, provider = j.client()
        local summary, err = client:sync(case[2](dir))
        assert.is_nil(summary)
        assert.equal("argument", err.kind)
        assert.matches(case[1], err.message, 1, true)
        assert.equal(0, #provider.requests)
        assert.same({}, j.tree(dir))
      end)
    end
  end)
end)

describe("sync killed with -9 in the middle", function()
  it("leaves a whole state file at the last page handled whole; the next run delivers the rest", function()
    local dir = j.mkdtemp()
    local now = os.time()
    -- the same provider in the child and here: seeded alike, so the same ids
    local setup = ([[
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"
local client, provider = j.client()
provider:seed_records(250, { start_time = %d, end_time = %d })
]]):format(now - 20 * 3600, now - 60)
    local script = j.script(dir, "child.lua", setup .. ([[
local log = assert(io.open(%q, "a"))
local n = 0
client:sync { state = %q, on_record = function(rec)
  log:write(tostring(rec.id), "\n")
  log:flush()
  n = n + 1
  if n == 150 then os.execute("kill -9 " .. string.format("%%d", core.getpid())) end
end }
io.write("not killed")
]]):format(dir .. "/delivered", dir .. "/state.json"))
    local out = j.shell(("%s '%s' 2>&1"):format(j.LUA, script))
    assert.is_nil(out:find("not killed", 1, true), out)
    local state = flatjson.decode(assert(j.read(dir .. "/state.json")))
    assert.equal(100, state.max_id)
    -- as a kill during a state write would leave it: a temporary file of a pid that is gone
    local dead = tonumber(j.shell("sh -c 'echo $$'"):match("%d+"))
    local stale = (".ctc-%x-0badf00d-1.part"):format(dead)
    j.write(dir .. "/" .. stale, '{"version":1,')
    local delivered = {}
    for _, id in ipairs(j.lines(dir .. "/delivered")) do delivered[tonumber(id)] = true end
    -- the second run, here, on the same state
    local chunk = assert((loadstring or load)(setup .. "return client"))
    local client = chunk()
    local again = {}
    local summary = assert(client:sync { state = dir .. "/state.json", on_record = function(rec)
      again[#again + 1] = rec.id
      delivered[rec.id] = true
    end })
    local left = core.file_kind(dir .. "/" .. stale)
    j.rmtree(dir)
    assert.equal("missing", left)
    assert.equal(150, summary.delivered)
    assert.equal(101, again[1]) -- at least once: 101..150 come again
    for id = 1, 250 do assert.is_true(delivered[id], "never delivered: " .. id) end
  end)
end)
