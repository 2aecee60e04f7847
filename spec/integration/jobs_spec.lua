-- The jobs against the bundled simulator, over the built-in libcurl transport: archive_recordings with
-- faults, re-runs counted on the server, kill -9 then a re-run, overlapping runs, records{ concurrency }
-- with records on every slice edge, and examples/sync_sqlite.lua run twice and checked row by row.
local sim = require "spec.helpers.sim"
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"
local json = require "clicktocall.json"

local DAY = 86400

local function recording_requests(s)
  local n = 0
  for _, r in ipairs(s:requests()) do
    if r.uri:find("^/recordings/") then n = n + 1 end
  end
  return n
end

local function no_temp_files(dir)
  for _, name in ipairs(j.tree(dir)) do
    if name:match("%.ctc%-[^/]*%.part$") then return false, name end
  end
  return true
end

describe("jobs against the simulator", function()
  local s, dir
  setup(function() s = assert(sim.start()) end)
  teardown(function() if s then s:stop() end end)
  before_each(function()
    s:reset()
    dir = j.mkdtemp()
  end)
  after_each(function() j.rmtree(dir) end)

  it("gives every recording and the manifest the mode asked for over libcurl too (created with it)", function()
    local now = os.time()
    s:post("/_sim/seed", { count = 6, start_time = now - DAY, end_time = now - 60, recorded = true })
    local c = s:client { retries = 0 }
    assert.equal(6, assert(c:archive_recordings { start_time = now - DAY, end_time = now, dir = dir,
                                                  mode = 384 }).downloaded)
    c:close()
    local modes = {}
    local out = j.shell("cd '" .. dir .. "' && find . -type f ! -name '.*' -exec stat -c '%a' {} +")
    for m in out:gmatch("%d+") do modes[m] = (modes[m] or 0) + 1 end
    assert.same({ ["600"] = 7 }, modes) -- six recordings and the manifest
  end)

  it("archives every recording, lists a cut-short and a 404 one as failed, and a re-run downloads nothing",
     function()
    local now = os.time()
    s:post("/_sim/seed", { count = 30, start_time = now - DAY, end_time = now - 60, recorded = true })
    local c = s:client { retries = 0 }
    local recs = assert(c:records_page { start_time = now - DAY, end_time = now })
    local function path_of(rec) return rec.recordFileDownloadUrl:match("^https?://[^/]+(/.*)$") end
    s:fault { path = path_of(recs[5]), kind = "status", status = 404, count = 10 }
    s:fault { path = path_of(recs[9]), kind = "cut", count = 10 }
    local summary = assert(c:archive_recordings { start_time = now - DAY, end_time = now, dir = dir })
    assert.equal(28, summary.downloaded)
    assert.equal(2, #summary.failed)
    assert.equal(28 * 8044, summary.bytes)
    local kinds = {}
    for _, f in ipairs(summary.failed) do kinds[f.sessionId] = f.err end
    assert.equal(404, kinds[recs[5].sessionId].status)
    assert.equal("network", kinds[recs[9].sessionId].kind)
    assert.is_true(no_temp_files(dir))
    assert.equal(28, #j.lines(dir .. "/manifest.jsonl"))
    -- the two failures are fetched by the next run; the others are not asked for again
    s:post("/_sim/fault/clear")
    local before = recording_requests(s)
    local again = assert(c:archive_recordings { start_time = now - DAY, end_time = now, dir = dir })
    assert.equal(2, again.downloaded)
    assert.equal(28, again.skipped)
    assert.equal(before + 2, recording_requests(s))
    local third = assert(c:archive_recordings { start_time = now - DAY, end_time = now, dir = dir })
    assert.equal(0, third.downloaded)
    assert.equal(30, third.skipped)
    assert.equal(before + 2, recording_requests(s))
    c:close()
  end)

  it("after kill -9 in the middle, a re-run finishes the job and leaves no temporary file of ours", function()
    local now = os.time()
    s:post("/_sim/seed", { count = 40, start_time = now - DAY, end_time = now - 60, recorded = true })
    -- every recording 150 ms late, so the child is surely mid-job when it is killed
    s:fault { path = "/recordings/*", kind = "latency", ms = 150, count = 1000 }
    local script = j.script(dir, "child.lua", ([[
local clicktocall = require "clicktocall"
local c = assert(clicktocall.new { base_url = %q, app_secret = %q, user_data = %q })
c:archive_recordings { start_time = %d, end_time = %d, dir = %q, concurrency = 4 }
]]):format(s.base_url, s.secret, s.user_data, now - DAY, now, dir .. "/out"))
    core.mkdir(dir .. "/out")
    local pid = tonumber(j.shell(("%s '%s' >/dev/null 2>&1 & echo $!"):format(j.LUA, script)):match("%d+"))
    local manifest = dir .. "/out/manifest.jsonl"
    local got_some = j.wait_until(function() return #j.lines(manifest) >= 3 end, 30)
    j.shell("kill -9 " .. pid)
    assert.is_true(got_some, "the child never wrote 3 manifest lines")
    assert.is_true(j.wait_until(function() return not core.pid_alive(pid) end, 10))
    local done_before = #j.lines(manifest)
    assert.is_true(done_before < 40, "the child finished before it was killed")
    s:post("/_sim/fault/clear")
    local c = s:client()
    local summary = assert(c:archive_recordings { start_time = now - DAY, end_time = now, dir = dir .. "/out" })
    assert.same({}, summary.failed)
    assert.equal(40, summary.downloaded + summary.skipped)
    assert.is_true(summary.skipped >= done_before - 0)
    local ok, name = no_temp_files(dir .. "/out")
    assert.is_true(ok, name)
    -- every line whole and every file there with its size
    local n = 0
    for _, line in ipairs(j.lines(manifest)) do
      local e = json.decode(line)
      if e then
        n = n + 1
        local f = assert(io.open(dir .. "/out/" .. e.file, "rb"))
        assert.equal(e.bytes, f:seek("end"))
        f:close()
      end
    end
    assert.is_true(n >= 40)
    c:close()
  end)

  it("two overlapping runs: the second is busy while another process holds the lock", function()
    local now = os.time()
    s:post("/_sim/seed", { count = 3, start_time = now - DAY + 600, end_time = now - 60, recorded = true })
    local script = j.script(dir, "holder.lua", ([[
local core = require "clicktocall.core"
local a = assert(core.lock_file(%q))
local b = assert(core.lock_file(%q))
local f = io.open(%q, "w") f:write("locked") f:close()
while not io.open(%q) do core.sleep(0.02) end
a:unlock() b:unlock()
]]):format(dir .. "/out/.clicktocall.lock", dir .. "/state.json.lock", dir .. "/locked", dir .. "/release"))
    core.mkdir(dir .. "/out")
    local pid = tonumber(j.shell(("%s '%s' >/dev/null 2>&1 & echo $!"):format(j.LUA, script)):match("%d+"))
    local locked = j.wait_until(function() return core.file_kind(dir .. "/locked") == "file" end, 10)
    local c = s:client()
    local a_sum, a_err = c:archive_recordings { start_time = now - DAY, end_time = now, dir = dir .. "/out" }
    local s_sum, s_err = c:sync { state = dir .. "/state.json", on_record = function() end }
    j.write(dir .. "/release", "")
    j.wait_until(function() return not core.pid_alive(pid) end, 10)
    assert.is_true(locked)
    assert.is_nil(a_sum)
    assert.equal("busy", a_err.kind)
    assert.is_nil(s_sum)
    assert.equal("busy", s_err.kind)
    assert.equal(0, recording_requests(s))
    -- once the other is gone (or killed: the kernel drops its lock), the job runs
    assert.equal(3, assert(c:archive_recordings { start_time = now - DAY, end_time = now, dir = dir .. "/out" })
      .downloaded)
    assert.equal(3, assert(c:sync { state = dir .. "/state.json", on_record = function() end }).delivered)
    c:close()
  end)

  it("records{ concurrency = 1, 4, 8, 16 } give the sequential iterator's ids, records on every edge once",
     function()
    local t0 = os.time() - 2 * DAY
    -- one record a second over 1600 s: every slice edge for 4, 8 and 16 holds one
    s:post("/_sim/seed", { count = 1601, start_time = t0, end_time = t0 + 1600 })
    local c = s:client()
    local seq = {}
    for rec in c:records { start_time = t0, end_time = t0 + 1600 } do seq[#seq + 1] = rec.id end
    assert.equal(1601, #seq)
    table.sort(seq)
    for _, n in ipairs { 1, 4, 8, 16 } do
      local got = {}
      for rec in c:records { start_time = t0, end_time = t0 + 1600, concurrency = n } do got[#got + 1] = rec.id end
      table.sort(got)
      assert.same(seq, got)
    end
    c:close()
  end)

  it("examples/sync_sqlite.lua keeps an SQLite table in step, run twice, row by row", function()
    local now = os.time()
    s:post("/_sim/seed", { count = 230, start_time = now - 20 * 3600, end_time = now - 60 })
    local db, state = dir .. "/calls.db", dir .. "/state.json"
    local cmd = ("CLICKTOCALL_BASE_URL=%s CLICKTOCALL_APP_SECRET=%s CLICKTOCALL_USER_DATA=%s LUA_PATH='./lua/?.lua;;'"
      .. " LUA_CPATH='./build/%s/?.so;;' %s examples/sync_sqlite.lua '%s' '%s' 2>&1; echo \"exit=$?\"")
      :format(s.base_url, s.secret, s.user_data, j.BUILD, j.LUA, db, state)
    local out1 = j.shell(cmd)
    assert.matches("exit=0", out1)
    assert.matches("sync: 230 new records in 3 pages %(0 skipped%), 230 rows", out1)
    local out2 = j.shell(cmd)
    assert.matches("exit=0", out2)
    assert.matches("sync: 0 new records in 1 page %(%d+ skipped%), 230 rows", out2)
    -- row by row against what the provider serves
    local c = s:client()
    local want = {}
    for rec in c:records { start_time = now - DAY, end_time = now } do want[#want + 1] = rec end
    local luasql = require "luasql.sqlite3"
    local env = luasql.sqlite3()
    local con = assert(env:connect(db))
    local cur = assert(con:execute("SELECT id, session_id, caller, callee, call_end_time, duration, recording_url "
      .. "FROM call_records ORDER BY CAST(id AS INTEGER)"))
    local row, i = cur:fetch({}, "a"), 0
    while row do
      i = i + 1
      local rec = want[i]
      assert.equal(string.format("%d", rec.id), row.id)
      assert.equal(rec.sessionId, row.session_id)
      assert.equal(rec.callerNum, row.caller)
      assert.equal(rec.calleeNum, row.callee)
      assert.equal(rec.callEndTime, row.call_end_time)
      assert.equal(tonumber(rec.duration), tonumber(row.duration))
      assert.equal(rec.recordFileDownloadUrl, row.recording_url)
      row = cur:fetch({}, "a")
    end
    cur:close()
    con:close()
    env:close()
    assert.equal(230, i)
    c:close()
  end)
end)
