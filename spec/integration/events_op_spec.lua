-- Every on_event event names its call in event.op ("bind_seat", "dial", "balance", "records_page",
-- "download"): for each call and job, for request, response and retry events, with the libcurl
-- transport against the simulator and with a function transport (clicktocall.mock).
local sim = require "spec.helpers.sim"
local j = require "spec.helpers.jobs"
local mock = require "clicktocall.mock"
local clicktocall = require "clicktocall"

local function backends()
  return {
    {
      name = "the libcurl transport (simulator)",
      start = function()
        local s = assert(sim.start())
        return {
          options = { base_url = s.base_url, app_secret = s.secret, user_data = s.user_data },
          seed = function(n, t0, t1) s:seed { count = n, start_time = t0, end_time = t1, recorded = true } end,
          fail_balance_once = function()
            s:fault { path = "/management/customer/isallow", kind = "status", status = 503, count = 1 }
          end,
          fail_download_once = function()
            s:fault { path = "/recordings/*", kind = "status", status = 503, count = 1 }
          end,
          stop = function() s:stop() end,
        }
      end,
    },
    {
      name = "a function transport (clicktocall.mock)",
      start = function()
        local p = mock.new { user_data = j.USER_DATA, secret = "TEST" }
        return {
          options = { base_url = "http://mock", app_secret = "TEST", user_data = j.USER_DATA,
                      transport = p.transport },
          seed = function(n, t0, t1)
            p:seed_records(n, { start_time = clicktocall.format_time(t0), end_time = clicktocall.format_time(t1),
                                recorded = true })
          end,
          fail_balance_once = function() p:fail("balance", 503) end,
          fail_download_once = function() p:fail("download", 503) end,
          stop = function() end,
        }
      end,
    },
  }
end

for _, backend in ipairs(backends()) do
  describe("event.op with " .. backend.name .. " #integration", function()
    local b, client, events, dir

    setup(function()
      b = backend.start()
      local o = { sleep = function() end,
                  on_event = function(e) events[#events + 1] = e end }
      for k, v in pairs(b.options) do o[k] = v end
      client = assert(clicktocall.new(o))
      dir = j.mkdtemp()
    end)

    teardown(function()
      if client then client:close() end
      if b then b.stop() end
      j.rmtree(dir)
    end)

    before_each(function()
      events = {}
    end)

    -- every event of the call names one of ops, and each of ops is named at least once
    local function all_named(ops, want_types)
      local allowed, seen, types = {}, {}, {}
      for _, op in ipairs(ops) do allowed[op] = true end
      assert.is_true(#events > 0, "no events")
      for i, e in ipairs(events) do
        assert.is_string(e.op, ("event %d (%s %s) has no op"):format(i, tostring(e.type), tostring(e.url)))
        assert.is_true(allowed[e.op], ("event %d (%s) has op %s"):format(i, tostring(e.type), e.op))
        seen[e.op] = true
        types[e.type] = true
      end
      for _, op in ipairs(ops) do
        assert.is_true(seen[op], op .. " was never named")
      end
      for _, t in ipairs(want_types or { "request", "response" }) do
        assert.is_true(types[t], "no " .. t .. " event")
      end
    end

    it("the four calls", function()
      assert(client:bind_seat { seat = "PP1", phone = "13500000002" })
      all_named { "bind_seat" }
      events = {}
      assert(client:dial { caller = "13500000002", callee = "13918000010", seat = "PP1" })
      all_named { "dial" }
      events = {}
      assert(client:balance())
      all_named { "balance" }
      events = {}
      local now = os.time()
      assert(client:records_page { start_time = now - 3600, end_time = now + 3600 })
      all_named { "records_page" }
    end)

    it("a retry, and a failed attempt's response", function()
      b.fail_balance_once()
      assert(client:balance())
      all_named({ "balance" }, { "request", "response", "retry" })
      events = {}
      b.fail_download_once()
      local now = os.time()
      b.seed(1, now - 1200, now - 1200)
      local rec
      for r in client:records { start_time = now - 1300, end_time = now - 1100 } do rec = r end
      events = {}
      assert(client:download_recording(rec, dir .. "/one.wav"))
      all_named({ "download" }, { "request", "response", "retry" })
    end)

    it("records, with one slice and with several", function()
      local now = os.time()
      b.seed(150, now - 3000, now - 2000)
      for _ in client:records { start_time = now - 3000, end_time = now - 2000 } do end
      all_named { "records_page" }
      events = {}
      for _ in client:records { start_time = now - 3000, end_time = now - 2000, concurrency = 3 } do end
      all_named { "records_page" }
    end)

    it("the jobs: archive_recordings and sync", function()
      local now = os.time()
      b.seed(3, now - 900, now - 600)
      local summary = assert(client:archive_recordings { start_time = now - 1000, end_time = now - 500,
                                                         dir = dir, concurrency = 2 })
      assert.is_true(summary.downloaded >= 1)
      all_named { "records_page", "download" }
      events = {}
      assert(client:sync { state = dir .. "/state.json", since = now - 1000, on_record = function() return true end })
      all_named { "records_page" }
    end)
  end)
end
