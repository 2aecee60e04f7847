-- examples/sync_postgres.lua against a throwaway PostgreSQL cluster of its own (initdb in a temporary
-- directory, run as nobody, a free loopback port) and the simulator: a first run killed (kill -9) while it
-- waits for its second page, a second run that stores the rest, each row checked against what the provider
-- serves; then the upsert, run again from scratch over a changed row: the provider's values come back, no
-- row twice. The table has the indexes a CRM needs.
local postgres = require "spec.helpers.postgres"
local nginx = require "spec.helpers.nginx"
local sim = require "spec.helpers.sim"
local j = require "spec.helpers.jobs"
local clicktocall = require "clicktocall"
local cjson_null = require("cjson").null

local N = 450 -- five pages: four of 100 and one of 50
local ROOT = nginx.repo_root()

describe("examples/sync_postgres.lua with a real PostgreSQL #integration", function()
  local s, pg, dir

  setup(function()
    s = assert(sim.start())
    local err
    pg, err = postgres.start()
    assert(pg, err)
    dir = j.mkdtemp()
  end)

  teardown(function()
    if pg then pg:stop() end
    if s then s:stop() end
    j.rmtree(dir)
  end)

  local function command(state, extra)
    return ("env CLICKTOCALL_BASE_URL=%s CLICKTOCALL_APP_SECRET=%s CLICKTOCALL_USER_DATA=%s"
      .. " CLICKTOCALL_POSTGRES='%s' %s LUA_PATH='%s/lua/?.lua;;' LUA_CPATH='%s/build/%s/?.so;;' %s"
      .. " %s/examples/sync_postgres.lua '%s'"):format(s.base_url, s.secret, s.user_data, pg.uri,
      extra or "", ROOT, ROOT, j.BUILD, j.LUA, ROOT, state)
  end

  local function rows()
    local r = pg:query("SELECT count(*) FROM call_records") -- nil before the first run made the table
    return r and tonumber(r[1][1]) or 0
  end

  -- the table as the provider serves the records, row by row
  local function same_as_provider(since, n)
    local c = assert(clicktocall.new { base_url = s.base_url, app_secret = s.secret, user_data = s.user_data })
    local want = {}
    for rec in c:records { start_time = since, end_time = os.time() } do want[#want + 1] = rec end
    c:close()
    local got = assert(pg:query("SELECT id, session_id, caller, callee, "
      .. "to_char(call_end_time AT TIME ZONE 'UTC' + interval '8 hours', 'YYYY-MM-DD HH24:MI:SS'), duration, "
      .. "recording_url FROM call_records ORDER BY id"))
    assert.equal(n or N, #want)
    assert.equal(#want, #got)
    for i, rec in ipairs(want) do
      local row = got[i]
      assert.equal(string.format("%d", rec.id), row[1])
      assert.equal(rec.sessionId, row[2])
      assert.equal(rec.callerNum, row[3])
      assert.equal(rec.calleeNum, row[4])
      assert.equal(rec.callEndTime, row[5])
      assert.equal(tonumber(rec.duration), tonumber(row[6]))
      assert.equal(rec.recordFileDownloadUrl, row[7])
    end
  end

  it("killed halfway, run again: every record once, row by row as the provider has it; the upsert", function()
    local now = os.time()
    local since = now - 6 * 3600
    s:seed { count = N, start_time = now - 5 * 3600, end_time = now - 60 }
    local state = dir .. "/state.json"
    -- the first page at once, the second held by the simulator until the run is killed
    s:fault { path = "/call/record/voice", kind = "latency", ms = 1, count = 1 }
    s:fault { path = "/call/record/voice", kind = "latency", ms = 600000, count = 1 }
    j.shell(("(sh -c 'echo $$ > %s/pid; exec %s' >%s/out1 2>&1; echo $? >%s/rc1.tmp; mv %s/rc1.tmp %s/rc1)"
             .. " >/dev/null 2>&1 &")
      :format(dir, command(state, "CLICKTOCALL_SINCE=" .. since):gsub("'", "'\\''"), dir, dir, dir, dir))
    -- (rc1 appears whole: written aside, then renamed, so the wait below never reads it half-written)
    -- halfway: the first page stored, the second asked for and not answered
    assert(nginx.wait_for(function()
      local pending = 0
      for _, r in ipairs(s:requests("/call/record/voice")) do
        if r.finished == nil or r.finished == cjson_null then pending = pending + 1 end
      end
      return pending == 1 and rows() == 100
    end, 60, "the first page stored and the second one asked for"))
    local pid = assert(tonumber(j.read(dir .. "/pid")))
    j.shell("kill -9 " .. pid)
    assert(nginx.wait_for(function() return j.read(dir .. "/rc1") ~= nil end, 30, "the killed run to end"))
    assert.equal("137", j.read(dir .. "/rc1"):match("%d+"))
    assert.is_nil(j.read(dir .. "/out1"):find("sync:", 1, true)) -- no summary: it never finished
    assert.equal(100, rows())

    -- the second run stores the rest, and only the rest
    local out2 = j.shell(command(state) .. " 2>&1; echo \"exit=$?\"")
    assert.matches("exit=0", out2)
    assert.matches("sync: 350 new records in 5 pages %(100 skipped%), 450 rows in call_records", out2)
    same_as_provider(since)
    local out3 = j.shell(command(state) .. " 2>&1; echo \"exit=$?\"")
    assert.matches("sync: 0 new records in %d+ pages? %(%d+ skipped%), 450 rows in call_records", out3)

    -- indexes by session id and by end time, besides the primary key
    local idx = assert(pg:query("SELECT indexdef FROM pg_indexes WHERE tablename = 'call_records' ORDER BY 1"))
    local defs = {}
    for _, r in ipairs(idx) do defs[#defs + 1] = r[1] end
    defs = table.concat(defs, "\n")
    assert.matches("UNIQUE INDEX call_records_pkey ON public.call_records USING btree %(id%)", defs)
    assert.matches("INDEX call_records_session_id ON public.call_records USING btree %(session_id%)", defs)
    assert.matches("INDEX call_records_call_end_time ON public.call_records USING btree %(call_end_time%)", defs)

    -- the upsert: a new state from the same start delivers every record again over a changed row
    assert(pg:query("UPDATE call_records SET caller = 'changed', duration = NULL "
      .. "WHERE id = (SELECT min(id) FROM call_records)"))
    os.remove(state)
    local out4 = j.shell(command(state, "CLICKTOCALL_SINCE=" .. since) .. " 2>&1; echo \"exit=$?\"")
    assert.matches("exit=0", out4)
    assert.matches("sync: 450 new records in 5 pages %(0 skipped%), 450 rows in call_records", out4)
    same_as_provider(since)
  end)

  it("a page is one transaction: an upsert failing mid-page leaves none of that page's rows, nor its state",
     function()
    s:reset()
    local state = dir .. "/tx.json"
    -- an empty window: the table made (it may hold an earlier test's rows), then emptied
    assert.matches("exit=0", j.shell(command(state, "CLICKTOCALL_SINCE=" .. os.time()) .. " 2>&1; echo \"exit=$?\""))
    os.remove(state)
    assert(pg:query("TRUNCATE call_records"))
    local now = os.time()
    local since = now - 6 * 3600
    s:seed { count = 250, start_time = now - 5 * 3600, end_time = now - 60 }
    local c = assert(clicktocall.new { base_url = s.base_url, app_secret = s.secret, user_data = s.user_data })
    local ids = {}
    for rec in c:records { start_time = since, end_time = now } do ids[#ids + 1] = rec.id end
    c:close()
    assert.equal(250, #ids)
    -- the 150th record (the second page's 50th) cannot be stored
    assert(pg:query(("ALTER TABLE call_records ADD CONSTRAINT not_this_one CHECK (id <> %d)"):format(ids[150])))
    local out = j.shell(command(state, "CLICKTOCALL_SINCE=" .. since) .. " 2>&1; echo \"exit=$?\"")
    assert.matches("not_this_one", out)
    assert.matches("exit=1", out)
    -- the first page committed; of the second, none of the 49 stored before the failure
    assert.equal(100, rows())
    local st = assert(require("clicktocall.json").decode(assert(j.read(state))))
    assert.equal(100, #st.ids)
    assert(pg:query("ALTER TABLE call_records DROP CONSTRAINT not_this_one"))
    local again = j.shell(command(state) .. " 2>&1; echo \"exit=$?\"")
    assert.matches("exit=0", again)
    assert.matches("sync: 150 new records in 3 pages %(100 skipped%), 250 rows in call_records", again)
    same_as_provider(since, 250)
  end)

  it("a database it cannot reach: one line naming the setting, exit 1, the state untouched", function()
    local state = dir .. "/unreached.json"
    local cmd = command(state):gsub(pg.uri:gsub("%p", "%%%0"), "postgresql://ctc@127.0.0.1:"
      .. nginx.free_port() .. "/crm")
    local out = j.shell(cmd .. " 2>&1; echo \"exit=$?\"")
    assert.matches("^could not connect to CLICKTOCALL_POSTGRES: [^\n]+\nexit=1\n$", out)
    assert.is_nil(j.read(state))
  end)
end)
