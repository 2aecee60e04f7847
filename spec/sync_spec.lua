-- client:sync{} against the mock provider: the state file, resuming, the window, the lock, hooks, bad input.
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"
local mock = require "clicktocall.mock"
local json = require "clicktocall.json"

local DAY = 86400

local function state_of(path)
  return assert(json.decode(assert(j.read(path))))
end

describe("sync", function()
  local dir, state
  before_each(function()
    dir = j.mkdtemp()
    state = dir .. "/ctc-sync.json"
  end)
  after_each(function() j.rmtree(dir) end)

  it("delivers every record once in id order, then (version 2) re-reads the last lookback from maxId 0 and "
     .. "skips what it delivered; the state keeps only those ids", function()
    local client, provider = j.client()
    local now = os.time()
    local recs = provider:seed_records(250, { start_time = now - 20 * 3600, end_time = now - 60 })
    local got = {}
    local summary = assert(client:sync { state = state, on_record = function(r) got[#got + 1] = r.id end })
    assert.equal(250, summary.delivered)
    assert.equal(0, summary.skipped)
    assert.equal(3, summary.pages)
    assert.equal(recs[250].id, summary.max_id)
    assert.equal(state, summary.state)
    for i = 1, 250 do assert.equal(recs[i].id, got[i]) end
    local s = state_of(state)
    assert.equal(2, s.version)
    assert.equal(j.USER_DATA, s.user_data)
    assert.is_nil(s.from)
    assert.is_true(math.abs(s.through - now) <= 5)
    assert.equal(summary.through, s.through)
    -- only the ids the next run sees again: those that ended in the last hour (the default lookback)
    local recent = {}
    for i = 1, 250 do
      if mock.parse_time(recs[i].callEndTime) >= s.through - 3600 then recent[#recent + 1] = recs[i].id end
    end
    assert.is_true(#recent > 5 and #recent < 30, #recent)
    assert.same(recent, s.ids)
    got = {}
    local again = assert(client:sync { state = state, on_record = function(r) got[#got + 1] = r.id end })
    assert.equal(0, again.delivered)
    assert.equal(#recent, again.skipped)
    assert.same({}, got)
    local more = provider:seed_records(3, { start_time = now - 30, end_time = now - 10 })
    s = state_of(state)
    local third = assert(client:sync { state = state, on_record = function(r) got[#got + 1] = r.id end })
    assert.equal(3, third.delivered)
    assert.same({ more[1].id, more[2].id, more[3].id }, got)
    -- the ask: every id (maxId 0), from lookback before through to now
    local last = provider:last_request("records_page").body
    assert.equal(0, tonumber(last.maxId))
    assert.equal(mock.format_time(s.through - 3600), last.starTime)
  end)

  it("starts at since on the first run, then lookback seconds before through", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records { { callEndTime = now - 5 * DAY }, { callEndTime = now - 3 * DAY } }
    local got = {}
    assert(client:sync { state = state, since = now - 4 * DAY, lookback = 3600,
                         on_record = function(r) got[#got + 1] = r.id end })
    assert.same({ 2 }, got)
    assert.equal(mock.format_time(now - 4 * DAY), provider:last_request("records_page").body.starTime)
    local through = state_of(state).through
    assert.is_true(math.abs(through - now) <= 5)
    -- since is for the first run only
    assert(client:sync { state = state, since = now - 10 * DAY, lookback = 3600, on_record = function() end })
    assert.equal(mock.format_time(through - 3600), provider:last_request("records_page").body.starTime)
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

  it("on_record raising mid-page: kind callback with cause; (version 2) the state records what was delivered "
     .. "and keeps through; the next run delivers only the rest", function()
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
    local s = state_of(state)
    assert.equal(149, #s.ids)
    assert.equal(s.from, s.through) -- the first window's start, not moved
    assert.is_true(math.abs(s.from - (now - DAY)) <= 5)
    local second = {}
    local again = assert(client:sync { state = state, on_record = function(r) second[#second + 1] = r.id end })
    assert.equal(101, again.delivered)
    assert.equal(149, again.skipped)
    assert.equal(recs[150].id, second[1])
    assert.equal(recs[250].id, second[101])
  end)

  it("on_page: once a page, after its on_record calls and before its state is written", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records(250, { start_time = now - 20 * 3600, end_time = now - 60 })
    local events, seen = {}, {}
    local summary = assert(client:sync {
      state = state,
      on_record = function() events[#events + 1] = "r" end,
      on_page = function(so_far)
        -- the state file as on_page sees it: the previous page's, not this one's
        local text = j.read(state)
        seen[#seen + 1] = { delivered = so_far.delivered, pages = so_far.pages, records = #events,
                            ids = text and #state_of(state).ids or -1 }
        events[#events + 1] = "p"
        return true
      end,
    })
    assert.equal(250, summary.delivered)
    assert.same({ { delivered = 100, pages = 1, records = 100, ids = -1 },
                  { delivered = 200, pages = 2, records = 201, ids = 100 },
                  { delivered = 250, pages = 3, records = 252, ids = 200 } }, seen)
    assert.equal("p", events[101])
    assert.equal("p", events[#events])
    -- a run that delivers nothing still calls it once a page (a transaction with no rows commits fine)
    local n = 0
    assert(client:sync { state = state, on_record = function() end, on_page = function() n = n + 1 end })
    assert.equal(1, n)
  end)

  for _, how in ipairs { "returning nil, err", "raising" } do
    it("on_page " .. how .. ": kind callback, and its page's state is not written, so the page comes again",
       function()
      local client, provider = j.client()
      local now = os.time()
      local recs = provider:seed_records(250, { start_time = now - 20 * 3600, end_time = now - 60 })
      local pages = 0
      local summary, err = client:sync {
        state = state, on_record = function() end,
        on_page = function()
          pages = pages + 1
          if pages == 2 then
            if how == "raising" then error({ why = "commit failed" }) end
            return nil, "commit failed"
          end
          return true
        end,
      }
      assert.is_nil(summary)
      assert.equal("callback", err.kind)
      assert.matches("on_page", err.message)
      if how == "raising" then
        assert.same({ why = "commit failed" }, err.cause)
      else
        assert.equal("commit failed", err.cause)
      end
      local s = state_of(state)
      assert.equal(100, #s.ids) -- the first page's only
      assert.equal(s.from, s.through)
      local got = {}
      local again = assert(client:sync { state = state, on_record = function(r) got[#got + 1] = r.id end })
      assert.equal(150, again.delivered)
      assert.equal(100, again.skipped)
      assert.equal(recs[101].id, got[1])
    end)
  end

  it("with on_page, on_record failing mid-page records none of that page: its rows were not committed",
     function()
    local client, provider = j.client()
    local now = os.time()
    local recs = provider:seed_records(250, { start_time = now - 20 * 3600, end_time = now - 60 })
    local summary, err = client:sync { state = state, on_page = function() return true end,
      on_record = function(r) if r.id == recs[150].id then return nil, "db down" end end }
    assert.is_nil(summary)
    assert.equal("callback", err.kind)
    assert.equal(100, #state_of(state).ids)
    local again = assert(client:sync { state = state, on_record = function() end })
    assert.equal(150, again.delivered)
  end)

  it("refuses an on_page that is not a function, sending nothing", function()
    local client, provider = j.client()
    local s, err = client:sync { state = state, on_record = function() end, on_page = true }
    assert.is_nil(s)
    assert.equal("argument", err.kind)
    assert.matches("on_page", err.message)
    assert.equal(0, #provider.requests)
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

  it("a failed listing returns nil, err; (version 2) the state holds the ids delivered and keeps through",
     function()
    local client, provider = j.client { retries = 0 }
    local now = os.time()
    local recs = provider:seed_records(150, { start_time = now - 3600, end_time = now - 60 })
    local fail = true
    provider:fail("records_page", function(_, serve)
      if fail and provider:count("records_page") >= 2 then
        return { status = 502, headers = {}, body = "bad gateway" }
      end
      return serve()
    end, math.huge)
    local summary, err = client:sync { state = state, on_record = function() end }
    assert.is_nil(summary)
    assert.equal("http", err.kind)
    local s = state_of(state)
    assert.equal(100, #s.ids)
    assert.equal(recs[100].id, s.ids[100])
    assert.equal(s.from, s.through)
    fail = false
    local got = {}
    summary = assert(client:sync { state = state, on_record = function(r) got[#got + 1] = r.id end })
    assert.equal(50, summary.delivered)
    assert.equal(100, summary.skipped)
    assert.equal(recs[101].id, got[1])
  end)

  it("converts a version 1 state: its from starts the window, read from maxId 0, so a record v1 passed over "
     .. "is delivered", function()
    local client, provider = j.client()
    local now = os.time()
    -- version 1 delivered ids up to 3; id 1 (a long call) ended after its last run and was passed over
    local recs = provider:seed_records { { callEndTime = now - 100 }, { callEndTime = now - 2000 },
                                         { callEndTime = now - 1900 }, { callEndTime = now - 50 } }
    local from = now - 3000
    j.write(state, ('{"version":1,"max_id":3,"from":%d,"user_data":"%s"}\n'):format(from, j.USER_DATA))
    local got = {}
    local summary = assert(client:sync { state = state, on_record = function(r) got[#got + 1] = r.id end })
    assert.same({ recs[1].id, recs[2].id, recs[3].id, recs[4].id }, got) -- 2 and 3 once more: at least once
    assert.equal(mock.format_time(from), provider:last_request("records_page").body.starTime)
    assert.equal(0, tonumber(provider:last_request("records_page").body.maxId))
    local s = state_of(state)
    assert.equal(2, s.version)
    assert.equal(summary.through, s.through)
    assert.is_nil(s.max_id)
    assert.same({ recs[1].id, recs[2].id, recs[3].id, recs[4].id }, s.ids)
    -- and a version 1 file without user_data
    j.write(state, ('{"version":1,"max_id":0,"from":%d}'):format(from))
    summary = assert(client:sync { state = state, on_record = function() end })
    assert.equal(4, summary.delivered)
  end)

  it("a clock set back behind through: the run still reads the last lookback seconds, and through follows "
     .. "the clock", function()
    local client, provider = j.client()
    local now = os.time()
    local rec = provider:seed_records { { callEndTime = now - 100 } }
    j.write(state, ('{"version":2,"through":%d,"ids":[],"user_data":"%s"}'):format(now + 2 * DAY, j.USER_DATA))
    local got = {}
    local summary = assert(client:sync { state = state, on_record = function(r) got[#got + 1] = r.id end })
    assert.same({ rec[1].id }, got)
    assert.is_true(math.abs(mock.parse_time(provider:last_request("records_page").body.starTime) - (now - 3600)) <= 5)
    assert.is_true(math.abs(summary.through - now) <= 5)
    assert.equal(summary.through, state_of(state).through)
  end)

  it("refuses a corrupt, foreign, unknown-version or ill-formed state file, naming it, and leaves it as it was",
     function()
    local client, provider = j.client()
    local ud = j.USER_DATA
    for _, text in ipairs {
      "not json", "", "{}", "[1,2]", '{"version":2,"through":1}', '{"version":2,"ids":[]}',
      '{"version":2,"through":1.5,"ids":[]}', '{"version":2,"through":"1","ids":[]}',
      '{"version":2,"through":1,"ids":5}', '{"version":2,"through":1,"ids":[1,"x"]}',
      '{"version":2,"through":1,"ids":[-1]}', '{"version":2,"through":1,"ids":[1.5]}',
      '{"version":2,"through":1,"ids":["12a"]}', '{"version":2,"through":1,"ids":[true]}',
      '{"version":2,"through":1,"ids":[123456789012345678901234]}',
      '{"version":2,"through":1,"from":"x","ids":[]}',
      '{"version":2,"through":1,"ids":[1],"user_data":"someone-else"}',
      '{"version":3,"through":1,"ids":[]}', '{"version":"2","through":1,"ids":[]}',
      '{"version":2,"max_id":1,"from":1}', '{"version":1,"from":1}', '{"version":1,"max_id":"x","from":1}',
      '{"version":1,"max_id":1,"from":1,"user_data":"someone-else"}',
      '{"version":2,"through":1,"ids":[1,2' } do
      j.write(state, text)
      local summary, err = client:sync { state = state, on_record = function() end }
      assert.is_nil(summary, text)
      assert.equal("argument", err.kind)
      assert.matches(state, err.message, 1, true)
      assert.equal(text, j.read(state))
    end
    assert.equal(0, #provider.requests)
    -- a good one, for contrast
    j.write(state, ('{"version":2,"through":%d,"ids":[1,"9007199254740993"],"user_data":"%s"}'):format(os.time(), ud))
    assert(client:sync { state = state, on_record = function() end })
    local _, err = client:sync { state = state, on_record = function() end, user_data = "other" }
    assert.equal("argument", err.kind)
    assert.matches("another user_data", err.message, 1, true)
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

  it("keeps ids past 2^53 exact in the state: two ids one apart stay two, and are skipped next run", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records { { id = "9007199254740993", callEndTime = now - 60 },
                            { id = "9007199254740994", callEndTime = now - 50 } }
    local summary = assert(client:sync { state = state, on_record = function() end })
    assert.equal(2, summary.delivered)
    assert.equal("9007199254740994", tostring(summary.max_id):gsub("%.0$", ""))
    assert.matches('"ids":[9007199254740993,9007199254740994]', j.read(state), 1, true)
    local again = assert(client:sync { state = state, on_record = function() end })
    assert.equal(0, again.delivered)
    assert.equal(2, again.skipped)
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
      { "lookback", function(d) return { state = d .. "/s.json", on_record = print, lookback = 31 * DAY } end },
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

-- Both ways a provider may number records: when the call is placed (a long call that ends after shorter,
-- later ones has the lower id: version 1's cursor passed it for ever) and when the record is listed. The
-- provider's clock and os.time (what sync reads) are one simulated clock, moved 5 minutes between runs.
for _, mode in ipairs { "at_dial", "at_hangup" } do
  describe("sync, ids given " .. mode .. ":", function()
    local dir, state, clock
    before_each(function()
      dir = j.mkdtemp()
      state = dir .. "/ctc-sync.json"
      clock = j.fake_clock(1767225600) -- 2026-01-01 08:00 on the provider's clock
    end)
    after_each(function()
      clock.restore()
      j.rmtree(dir)
    end)

    -- runs sync every 5 minutes until `until_t`; -> times each id was delivered, the run that delivered it
    local function run_until(client, until_t, lookback)
      local count, run_of, runs = {}, {}, 0
      while clock.t < until_t do
        clock:advance(300)
        runs = runs + 1
        assert(client:sync { state = state, lookback = lookback, on_record = function(r)
          local k = tostring(r.id)
          count[k] = (count[k] or 0) + 1
          run_of[k] = runs
        end })
      end
      return count, run_of
    end

    local function id_ending(provider, t)
      for _, r in ipairs(provider:records()) do
        if r.callEndTime == mock.format_time(t) then return r.id end
      end
    end

    it("a long call that ends after shorter, later ones is delivered exactly once", function()
      local client, provider = j.client(nil, { ids = mode, clock = clock.now })
      local t = clock.t
      -- placed first, a 20-minute call; then ten short calls placed after it, all ended before it
      provider:seed_records { { callEndTime = t + 1200, duration = "1195" } }
      local short = {}
      for k = 1, 10 do short[k] = { callEndTime = t + 60 * k, duration = "40" } end
      provider:seed_records(short)
      local count = run_until(client, t + 2400)
      local n = 0
      for id, c in pairs(count) do
        n = n + 1
        assert.equal(1, c, "id " .. id)
      end
      assert.equal(11, n)
      local long = id_ending(provider, t + 1200)
      assert.equal(1, count[tostring(long)])
      if mode == "at_dial" then
        assert.equal(1, long) -- the lowest id, though it ended last
      else
        assert.equal(11, long)
      end
    end)

    it("a record reaching the provider 50 minutes after its end is delivered with the default lookback, "
       .. "once; with a lookback shorter than that it is not", function()
      for _, lookback in ipairs { 3600, 1800 } do
        os.remove(state)
        local client, provider = j.client(nil, { ids = mode, clock = clock.now })
        local t = clock.t
        -- placed first (at_dial: the lowest id), ended at t + 120, listed only 50 minutes later
        provider:seed_records({ { callEndTime = t + 120 } }, { listing_delay = 3000 })
        local punctual = {}
        for k = 1, 30 do punctual[k] = { callEndTime = t + 120 * k + 60 } end
        provider:seed_records(punctual)
        local count, run_of = run_until(client, t + 4500, lookback ~= 3600 and lookback or nil)
        local late = tostring(id_ending(provider, t + 120))
        for k = 1, 30 do
          assert.equal(1, count[tostring(id_ending(provider, t + 120 * k + 60))])
        end
        if lookback == 3600 then
          assert.equal(1, count[late])
          -- by the first run after it was listed (t + 3120): the run at t + 3300, the 11th
          assert.equal(11, run_of[late])
        else
          assert.is_nil(count[tostring(late)])
        end
      end
    end)

    it("the boundaries, to the second, with lookback 0: a record ending at the second a run starts is delivered "
       .. "once, listed then or a second later; one ending a second before and listed late is not", function()
      local client, provider = j.client(nil, { ids = mode, clock = clock.now })
      local t = clock.t + 300
      provider:seed_records { { callEndTime = t } }                            -- listed at once
      provider:seed_records({ { callEndTime = t } }, { listing_delay = 1 })     -- listed at t + 1
      provider:seed_records({ { callEndTime = t - 1 } }, { listing_delay = 2 }) -- ended before t, listed at t + 1
      local count, run_of = run_until(client, t + 900, 0)
      local n = 0
      for _, c in pairs(count) do
        n = n + 1
        assert.equal(1, c)
      end
      assert.equal(2, n)
      local at_once, later = {}, {}
      for _, r in ipairs(provider:records()) do
        if r.callEndTime == mock.format_time(t) then
          at_once[#at_once + 1] = run_of[tostring(r.id)]
        else
          later[#later + 1] = run_of[tostring(r.id)]
        end
      end
      table.sort(at_once, function(a, b) return (a or 0) < (b or 0) end)
      assert.same({ 1, 2 }, at_once) -- the run at t, then the one at t + 300 (window [t, t + 300])
      assert.same({}, later)         -- lookback 0: a record must be listed by the time its call ends
    end)

    it("two runs in a row deliver nothing twice; over hours of traffic each record comes once and the state "
       .. "holds only the last lookback's ids", function()
      local client, provider = j.client(nil, { ids = mode, clock = clock.now })
      local t = clock.t
      -- 600 calls placed every 18 s, talking 30 s to 30 min: ids (at_dial) far from end-time order;
      -- every fifth reaches the provider 10 minutes late
      local on_time, late = {}, {}
      for k = 1, 600 do
        local rec = { callEndTime = t + 18 * k + 30 + (k * 7919) % 1800 }
        if k % 5 == 0 then late[#late + 1] = rec else on_time[#on_time + 1] = rec end
      end
      provider:seed_records(on_time)
      provider:seed_records(late, { listing_delay = 600 })
      local count, delivered = {}, 0
      while clock.t < t + 5 * 3600 do
        clock:advance(300)
        local summary = assert(client:sync { state = state, on_record = function(r)
          local k = tostring(r.id)
          count[k] = (count[k] or 0) + 1
        end })
        delivered = delivered + summary.delivered
        local kept = #state_of(state).ids
        local again = assert(client:sync { state = state, on_record = function(r)
          error("delivered twice: " .. tostring(r.id))
        end })
        assert.equal(0, again.delivered)
        assert.equal(kept, again.skipped) -- the window [through - lookback, now] holds just the ids kept
        assert.equal(clock.t, again.through)
        -- bounded by the records of the last lookback (plus those listed since), never the history
        local s = state_of(state)
        local recent = 0
        for _, r in ipairs(provider:records()) do
          if mock.parse_time(r.callEndTime) >= clock.t - 3600 then recent = recent + 1 end
        end
        assert.is_true(#s.ids <= recent, #s.ids .. " > " .. recent)
      end
      assert.equal(600, delivered)
      for id, c in pairs(count) do assert.equal(1, c, "id " .. id) end
    end)
  end)
end

describe("sync killed with -9 between a page's on_record calls and its state write", function()
  for _, mode in ipairs { "at_dial", "at_hangup" } do
    it("(ids " .. mode .. ") leaves a whole state file; the next run delivers the rest, again at most that page",
       function()
      local dir = j.mkdtemp()
      local now = os.time()
      -- the same provider in the child and here: seeded alike, so the same ids; end times out of placing order
      local setup = ([[
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"
local client, provider = j.client(nil, { ids = %q })
local recs = {}
for k = 1, 250 do recs[k] = { callEndTime = %d - 60 - ((k * 37) %% 250) * 240 } end
provider:seed_records(recs)
]]):format(mode, now)
      local script = j.script(dir, "child.lua", setup .. ([[
local log = assert(io.open(%q, "a"))
local n = 0
client:sync { state = %q, on_record = function(rec)
  n = n + 1
  if n == 150 then
    -- on the second page: tell the spec, then wait to be killed (the state write comes after the page)
    local m = assert(io.open(%q, "w"))
    m:write(string.format("%%d\n", core.getpid()))
    m:close()
    local deadline = core.now() + 60
    while core.now() < deadline do core.sleep(0.05) end
    io.write("not killed")
    os.exit(1)
  end
  log:write(tostring(rec.id), "\n")
  log:flush()
end }
]]):format(dir .. "/delivered", dir .. "/state.json", dir .. "/marker"))
      j.shell(("%s '%s' > '%s/out' 2>&1 &"):format(j.LUA, script, dir))
      local pid
      assert.is_true(j.wait_until(function()
        pid = tonumber((j.read(dir .. "/marker") or ""):match("^(%d+)\n"))
        return pid ~= nil
      end, 60), j.read(dir .. "/out"))
      os.execute("kill -9 " .. pid)
      assert.is_true(j.wait_until(function() return not core.pid_alive(pid) end, 10))
      assert.is_nil((j.read(dir .. "/out") or ""):find("not killed", 1, true))
      local state = json.decode(assert(j.read(dir .. "/state.json")))
      assert.equal(2, state.version)
      assert.equal(100, #state.ids) -- the first page, written whole; through not moved
      assert.equal(state.from, state.through)
      -- as a kill during a state write would leave it: a temporary file of a pid that is gone
      local dead = tonumber(j.shell("sh -c 'echo $$'"):match("%d+"))
      local stale = (".ctc-%x-0badf00d-1.part"):format(dead)
      j.write(dir .. "/" .. stale, '{"version":2,')
      local before = {}
      for _, id in ipairs(j.lines(dir .. "/delivered")) do before[id] = true end
      local n_before = #j.lines(dir .. "/delivered")
      -- the second run, here, on the same state
      local chunk = assert((loadstring or load)(setup .. "return client, provider"))
      local client = chunk()
      local again, twice = {}, 0
      local summary = assert(client:sync { state = dir .. "/state.json", on_record = function(rec)
        again[tostring(rec.id)] = true
        if before[tostring(rec.id)] then twice = twice + 1 end
      end })
      local left = core.file_kind(dir .. "/" .. stale)
      j.rmtree(dir)
      assert.equal("missing", left)
      assert.equal(149, n_before)
      assert.equal(150, summary.delivered)
      assert.equal(100, summary.skipped)
      assert.equal(49, twice) -- the killed page's records delivered before the kill: at most that page
      for id = 1, 250 do assert.is_true(before[tostring(id)] or again[tostring(id)], "never delivered: " .. id) end
    end)
  end
end)
