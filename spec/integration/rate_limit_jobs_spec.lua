-- The jobs respect rate_limit: archive_recordings{ concurrency = 4 } and records{ concurrency = 4 } over
-- libcurl (the curl scheduler: a task waiting its turn lets the others run) against the simulator. Every
-- recording and every page arrives, and the simulator never sees more than `rate` in any window, counted
-- from each request's arrival.
local sim = require "spec.helpers.sim"
local j = require "spec.helpers.jobs"
local clicktocall = require "clicktocall"

-- plain Lua 5.1 cannot yield across pcall: no scheduler, one download after another
local SEQUENTIAL = _VERSION == "Lua 5.1" and not rawget(_G, "jit")
local DAY = 86400

local busiest = sim.busiest

describe("rate_limit and the jobs, against the simulator", function()
  local s, dir
  setup(function() s = assert(sim.start()) end)
  teardown(function() if s then s:stop() end end)
  before_each(function()
    s:reset()
    dir = j.mkdtemp()
  end)
  after_each(function() j.rmtree(dir) end)

  -- no sleep option (s:client's does nothing): a task waiting its turn yields to the scheduler
  local function client(o)
    o.base_url, o.app_secret, o.user_data = s.base_url, s.secret, s.user_data
    return assert(clicktocall.new(o))
  end

  it("archive_recordings{ concurrency = 4 }: downloads wait their turn, at most 3 in any 0.5 s", function()
    local now = os.time()
    s:post("/_sim/seed", { count = 12, start_time = now - DAY, end_time = now - 60, recorded = true })
    s:post("/_sim/requests/clear")
    local waits = 0
    local c = client { retries = 0, on_event = function(e) if e.type == "rate_wait" then waits = waits + 1 end end,
                       rate_limit = { download = { rate = 3, per = 0.6 }, records_page = { rate = 1 },
                                      wait = 30, name = "archive-spec" } }
    local summary = assert(c:archive_recordings { start_time = now - DAY, end_time = now, dir = dir,
                                                  concurrency = 4 })
    assert.are.equal(12, summary.downloaded)
    assert.are.equal(0, #summary.failed)
    -- 12 in groups of 3: each later group waits, once in turn on plain Lua 5.1 (no scheduler), more at once
    assert.is_true(waits >= (SEQUENTIAL and 3 or 6), "waits: " .. waits)
    local recordings = {}
    for _, r in ipairs(s:requests()) do
      if r.uri:find("^/recordings/") then recordings[#recordings + 1] = r end
    end
    local worst, n = busiest(recordings, 0.5)
    assert.are.equal(12, n)
    assert.is_true(worst <= 3, "a 0.5 s window at the simulator held " .. worst .. " downloads")
  end)

  it("records{ concurrency = 4 }: every record, the pages at most 2 in any 0.4 s", function()
    local t0 = os.time() - 2 * DAY
    s:post("/_sim/seed", { count = 450, start_time = t0, end_time = t0 + 3600 })
    s:post("/_sim/requests/clear")
    local c = client { retries = 0, rate_limit = { records_page = { rate = 2, per = 0.5, wait = 30 },
                                                   name = "records-spec" } }
    local ids = {}
    for rec in c:records { start_time = t0, end_time = t0 + 3600, concurrency = 4 } do ids[#ids + 1] = rec.id end
    assert.are.equal(450, #ids)
    local worst, n = busiest(s:requests("/call/record/voice"), 0.4)
    assert.is_true(n >= 5, "pages: " .. n)
    assert.is_true(worst <= 2, "a 0.4 s window at the simulator held " .. worst .. " pages")
  end)
end)
