-- sync (state version 2) against the bundled simulator over the built-in libcurl transport, with the
-- simulator numbering records both ways (option ids "at_dial", "at_hangup"): a long call that ends after
-- shorter, later ones; a record listed 50 minutes after its end; runs back to back; a kill -9 between a page's
-- on_record calls and its state write. Time is the simulator's clock moved by /_sim/clock, and os.time (what
-- sync reads) moved by as much.
local sim = require "spec.helpers.sim"
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"
local json = require "clicktocall.json"

local SEAT, PHONE = "PP7568032251", "13918337711"

for _, mode in ipairs { "at_dial", "at_hangup" } do
  describe("sync against the simulator, ids " .. mode .. ":", function()
    local s, dir, state, c
    local real_time = os.time
    local offset = 0
    setup(function() s = assert(sim.start { workers = 2 }) end)
    teardown(function() if s then s:stop() end end)
    before_each(function()
      s:reset()
      s:options { ids = mode }
      dir = j.mkdtemp()
      state = dir .. "/state.json"
      offset = 0
      os.time = function(d) -- luacheck: ignore 122
        if d ~= nil then return real_time(d) end
        return real_time() + offset
      end
      c = s:client()
    end)
    after_each(function()
      os.time = real_time -- luacheck: ignore 122
      c:close()
      j.rmtree(dir)
    end)

    local function advance(seconds)
      offset = offset + seconds
      s:post("/_sim/clock", { offset_seconds = offset })
    end

    -- every 5 minutes until `t`: a run, then at once a second one that must deliver nothing
    -- -> times each id was delivered, the run that delivered it, { sessionId -> id }
    local function run_until(t, lookback)
      local count, run_of, by_sid, runs = {}, {}, {}, 0
      while os.time() < t do
        advance(300)
        runs = runs + 1
        local summary = assert(c:sync { state = state, lookback = lookback, on_record = function(r)
          local k = tostring(r.id)
          count[k] = (count[k] or 0) + 1
          run_of[k] = runs
          by_sid[r.sessionId] = r.id
        end })
        local again = assert(c:sync { state = state, lookback = lookback, on_record = function(r)
          error("delivered twice: " .. tostring(r.id))
        end })
        assert.equal(0, again.delivered)
        assert.is_true((again.through or 0) >= (summary.through or 0))
      end
      return count, run_of, by_sid
    end

    it("a long call dialled before shorter ones, ending after them, is delivered exactly once", function()
      assert(c:bind_seat { seat = SEAT, phone = PHONE })
      s:options { dial_duration = 1200 }
      local long = assert(c:dial { caller = PHONE, callee = "13918000010", seat = SEAT })
      s:options { dial_duration = 20 }
      local short = {}
      for k = 1, 5 do
        short[k] = assert(c:dial { caller = PHONE, callee = "1391800001" .. k, seat = SEAT })
        advance(60)
      end
      local count, _, by_sid = run_until(os.time() + 1800)
      local n = 0
      for id, k in pairs(count) do
        n = n + 1
        assert.equal(1, k, "id " .. id)
      end
      assert.equal(6, n)
      assert.is_not_nil(by_sid[long])
      for k = 1, 5 do
        assert.is_not_nil(by_sid[short[k]])
        if mode == "at_dial" then
          assert.is_true(by_sid[long] < by_sid[short[k]]) -- below every later call: version 1 passed it over
        else
          assert.is_true(by_sid[long] > by_sid[short[k]])
        end
      end
    end)

    it("a record listed 50 minutes after its end is delivered once with the default lookback", function()
      local t = os.time()
      -- seeded first (at_dial: the lowest id), listed 3000 s after its end
      s:seed { times = { t + 120 }, listing_delay = 3000 }
      local punctual = {}
      for k = 1, 20 do punctual[k] = t + 180 * k + 30 end
      s:seed { times = punctual }
      local count, run_of = run_until(t + 4200)
      local n = 0
      for id, k in pairs(count) do
        n = n + 1
        assert.equal(1, k, "id " .. id)
      end
      assert.equal(21, n)
      -- the late one: listed at t + 3120, so delivered by the run at t + 3300 (the 11th)
      local late
      for rec in c:records { start_time = t + 120, end_time = t + 120 } do late = rec.id end
      assert.equal(11, run_of[tostring(late)])
    end)

    it("killed with -9 between a page's on_record calls and its state write: the next run delivers the rest, "
       .. "again at most that page", function()
      local now = os.time()
      s:seed { count = 250, start_time = now - 20 * 3600, end_time = now - 60 }
      local script = j.script(dir, "child.lua", ([[
local core = require "clicktocall.core"
local clicktocall = require "clicktocall"
local c = assert(clicktocall.new { base_url = %q, app_secret = %q, user_data = %q })
local log = assert(io.open(%q, "a"))
local n = 0
c:sync { state = %q, on_record = function(rec)
  n = n + 1
  if n == 150 then
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
]]):format(s.base_url, s.secret, s.user_data, dir .. "/delivered", state, dir .. "/marker"))
      j.shell(("%s '%s' > '%s/out' 2>&1 &"):format(j.LUA, script, dir))
      local pid
      assert.is_true(j.wait_until(function()
        pid = tonumber((j.read(dir .. "/marker") or ""):match("^(%d+)\n"))
        return pid ~= nil
      end, 60), j.read(dir .. "/out"))
      os.execute("kill -9 " .. pid)
      assert.is_true(j.wait_until(function() return not core.pid_alive(pid) end, 10))
      local st = json.decode(assert(j.read(state)))
      assert.equal(100, #st.ids)
      assert.equal(st.from, st.through)
      local before = {}
      for _, id in ipairs(j.lines(dir .. "/delivered")) do before[id] = true end
      local twice, after = 0, {}
      local summary = assert(c:sync { state = state, on_record = function(rec)
        after[tostring(rec.id)] = true
        if before[tostring(rec.id)] then twice = twice + 1 end
      end })
      assert.equal(150, summary.delivered)
      assert.equal(100, summary.skipped)
      assert.equal(49, twice)
      for rec in c:records { start_time = now - 86400, end_time = now } do
        local k = tostring(rec.id)
        assert.is_true(before[k] or after[k], "never delivered: " .. k)
      end
    end)
  end)
end
