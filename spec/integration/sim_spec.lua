-- The simulator's job-scale features, driven over HTTP: recordings of a chosen size (generated, streamed,
-- with their sha256), slow and cut-short recordings, 404/410, a per-request latency, the in-flight
-- counters and the request log's start/finish times, records at exact times, and the helper's options.
local sim = require "spec.helpers.sim"
local nginx = require "spec.helpers.nginx"
local core = require "clicktocall.core"
local cjson = require("cjson").new()
local socket = require "socket"

local function socket_time() return socket.gettime() end

local UD = sim.USER_DATA
local WINDOW = { starTime = "2000-01-01 00:00:00", endTime = "2099-12-31 23:59:59" }

-- a provider call through the curl transport: the decoded answer
local function call(s, path, body)
  local res, err = s.http:perform { method = "POST", url = s.base_url .. path, max_body = 64 * 1024 * 1024,
    headers = { ["Content-Type"] = "application/json", Authorization = core.base64(s.secret) },
    body = cjson.encode(body) }
  assert(res, err and err.message)
  assert.equal(200, res.status)
  return cjson.decode(res.body)
end

local function records(s, body)
  body = body or {}
  body.userData = body.userData or s.user_data
  body.starTime = body.starTime or WINDOW.starTime
  body.endTime = body.endTime or WINDOW.endTime
  local v = call(s, "/call/record/voice", body)
  assert.is_true(v.meta.success, v.meta.message)
  return v.data
end

local function all_records(s, window)
  local out, max_id = {}, 0
  repeat
    local page = records(s, { maxId = max_id, starTime = window and window[1], endTime = window and window[2] })
    for _, r in ipairs(page) do out[#out + 1] = r end
    if #page > 0 then max_id = page[#page].id end
  until #page < 100
  return out
end

-- GET a URL: res (or nil), err, bytes, sha256, the first bytes. The curl transport keeps the body (a
-- sink of its own goes to files only), so this holds a recording in memory: fine for a spec.
local function fetch(s, url)
  local res, err = s.http:perform { method = "GET", url = url, max_body = 2 ^ 31, timeout = 120 }
  if not res then return nil, err, 0 end
  local hasher = core.sha256()
  hasher:update(res.body)
  return res, err, #res.body, hasher:hex(), res.body:sub(1, 64)
end

-- curl's own count of the body bytes a cut-short answer delivered, and its exit status (18: partial file)
local function curl_bytes(url)
  local ok, out = nginx.run("curl -s -o /dev/null -w '%{size_download}' '" .. url .. "'")
  return tonumber(out:match("^(%d+)")), ok
end

local function le32(s, i)
  local a, b, c, d = s:byte(i, i + 3)
  return a + b * 256 + c * 65536 + d * 16777216
end

local function recorded_of(s, seed)
  local got = s:seed(seed)
  local out = {}
  for _, r in ipairs(all_records(s)) do
    if r.id >= got.first_id and r.id <= got.last_id and r.recordFlag == "1" then out[#out + 1] = r end
  end
  return out
end

local function worker_rss_kib(s)
  local f = assert(io.open(s.prefix .. "/logs/nginx.pid"))
  local master = f:read("*l")
  f:close()
  local ok, out = nginx.run("ps -o pid= --ppid " .. master)
  assert(ok, out)
  local rss, hwm = 0, 0
  for pid in out:gmatch("%d+") do
    local st = io.open("/proc/" .. pid .. "/status")
    if st then
      local text = st:read("*a")
      st:close()
      rss = math.max(rss, tonumber(text:match("VmRSS:%s*(%d+)")) or 0)
      hwm = math.max(hwm, tonumber(text:match("VmHWM:%s*(%d+)")) or 0)
    end
  end
  return rss, hwm
end

-- the most intervals [started, finished] of the log that overlap at one instant
local function max_overlap(log)
  local ev = {}
  for _, e in ipairs(log) do
    ev[#ev + 1] = { e.started, 1 }
    ev[#ev + 1] = { e.finished, -1 }
  end
  table.sort(ev, function(a, b) if a[1] ~= b[1] then return a[1] < b[1] end return a[2] < b[2] end)
  local n, m = 0, 0
  for _, x in ipairs(ev) do
    n = n + x[2]
    if n > m then m = n end
  end
  return m
end

-- `n` balance calls at once, from n curl processes
local function parallel_balance(s, n)
  local cmd = ("for i in $(seq %d); do curl -s -o /dev/null -H 'Authorization: %s' -d '%s' %s & done; wait")
    :format(n, core.base64(s.secret), cjson.encode { userData = s.user_data },
            s.base_url .. "/management/customer/isallow")
  local ok, out = nginx.run(cmd)
  assert(ok, out)
end

local function wait_idle(s)
  return assert(nginx.wait_for(function()
    local st = s:stats()
    return st.in_flight == 0 and st
  end, 5, "no request in flight"))
end

describe("simulator #integration", function()
  local s

  setup(function()
    s = assert(sim.start())
  end)

  teardown(function()
    if s then s:stop() end
  end)

  before_each(function()
    s:reset()
  end)

  describe("recordings of a chosen size", function()
    it("default: the 8044-byte WAV, its sha256 given by recording_info", function()
      local rec = recorded_of(s, { times = { os.time() - 3600 }, recorded = true })[1]
      local res, err, n, sha, head = fetch(s, rec.recordFileDownloadUrl)
      assert(res, err and err.message)
      assert.equal(200, res.status)
      assert.equal(8044, n)
      assert.equal("RIFF", head:sub(1, 4))
      local info = assert(s:recording_info(rec.sessionId))
      assert.same({ 8044, sha, false, 200 }, { info.bytes, info.sha256, info.generated, info.status })
    end)

    it("option recording_bytes: a valid WAV header, deterministic bytes, the sha256 of recording_info",
      function()
        local size = 3 * 65536 + 1001  -- not a whole number of chunks
        assert.equal(size, s:options { recording_bytes = size }.recording_bytes)
        local recs = recorded_of(s, { times = { os.time() - 60, os.time() - 30 }, recorded = true })
        local shas = {}
        for i, rec in ipairs(recs) do
          local res, err, n, sha, head = fetch(s, rec.recordFileDownloadUrl)
          assert(res, err and err.message)
          assert.equal(tostring(size), res.headers["content-length"])
          assert.equal(size, n)
          assert.equal("RIFF", head:sub(1, 4))
          assert.equal("WAVEfmt ", head:sub(9, 16))
          assert.equal(size - 8, le32(head, 5))
          assert.equal("data", head:sub(37, 40))
          assert.equal(size - 44, le32(head, 41))
          local info = assert(s:get("/_sim/recording_info/" .. rec.sessionId .. ".wav"))
          assert.same({ size, sha, true }, { info.bytes, info.sha256, info.generated })
          local _, _, n2, sha2 = fetch(s, rec.recordFileDownloadUrl)  -- the same bytes every time
          assert.same({ size, sha }, { n2, sha2 })
          shas[i] = sha
        end
        assert.are_not.equal(shas[1], shas[2])  -- each session's bytes differ
        -- back to the default
        assert.equal(cjson.null, s:options { recording_bytes = cjson.null }.recording_bytes)
        assert.equal(8044, s:recording_info(recs[1].sessionId).bytes)
      end)

    it("per seed recording_bytes wins over the option; a dialled call takes the option", function()
      s:options { recording_bytes = 1000 }
      local big = recorded_of(s, { times = { os.time() - 60 }, recorded = true, recording_bytes = 70000 })[1]
      local plain = recorded_of(s, { times = { os.time() - 60 }, recorded = true })[1]
      assert.equal(70000, select(3, fetch(s, big.recordFileDownloadUrl)))
      assert.equal(1000, select(3, fetch(s, plain.recordFileDownloadUrl)))
      call(s, "/management/add/setingphone", { userData = UD, setingNbr = "PP1", userPhone = "+8613500000002" })
      local sid = call(s, "/rest/voiceCall/api", { userData = UD, setingNbr = "PP1", callerNbr = "+8613500000002",
                                                 calleeNbr = "+8613918000010" }).data
      assert.equal(1000, s:recording_info(sid).bytes)
    end)

    it("100 MiB streams with the worker's memory flat", function()
      local size = 100 * 1024 * 1024
      local rec = recorded_of(s, { times = { os.time() - 60 }, recorded = true, recording_bytes = size })[1]
      local rss0 = worker_rss_kib(s)
      local res, err, n, sha = fetch(s, rec.recordFileDownloadUrl)
      assert(res, err and err.message)
      assert.equal(size, n)
      local _, hwm = worker_rss_kib(s)
      -- a body built in memory would be 100 MiB or more; streamed it is a few 64 KiB pieces
      assert.is_true(hwm - rss0 < 16 * 1024, ("worker peak grew by %d KiB"):format(hwm - rss0))
      assert.equal(sha, s:recording_info(rec.sessionId).sha256)
    end)

    it("refuses a bad size", function()
      for _, bad in ipairs { 43, -1, 1.5, "1000", true } do
        local res = s.http:perform { method = "POST", url = s.base_url .. "/_sim/options",
                                     body = cjson.encode { recording_bytes = bad } }
        assert.equal(400, res.status)
        res = s.http:perform { method = "POST", url = s.base_url .. "/_sim/seed",
          body = cjson.encode { count = 1, start_time = 0, end_time = 0, recording_bytes = bad } }
        assert.equal(400, res.status)
      end
    end)
  end)

  describe("slow, cut short, gone", function()
    it("fault slow_recording sends at the rate asked for, then the next download is fast", function()
      s:options { recording_bytes = 60000 }
      local rec = recorded_of(s, { times = { os.time() - 60 }, recorded = true })[1]
      s:fault { path = "/recordings/*", kind = "slow_recording", rate = 100000 }
      local clock = socket_time
      local t0 = clock()
      local res, _, n, sha = fetch(s, rec.recordFileDownloadUrl)
      local slow = clock() - t0
      assert.equal(200, res.status)
      assert.equal(60000, n)
      assert.equal(s:recording_info(rec.sessionId).sha256, sha)
      assert.is_true(slow >= 0.5, "60000 bytes at 100000 B/s took " .. slow .. " s")
      t0 = clock()
      fetch(s, rec.recordFileDownloadUrl)
      assert.is_true(clock() - t0 < slow)
      assert.equal("slow_recording", s:requests()[#s:requests() - 1].fault)
    end)

    it("option recording_rate paces every recording", function()
      s:options { recording_bytes = 50000, recording_rate = 100000 }
      local rec = recorded_of(s, { times = { os.time() - 60 }, recorded = true })[1]
      local t0 = socket_time()
      local _, _, n = fetch(s, rec.recordFileDownloadUrl)
      assert.equal(50000, n)
      assert.is_true(socket_time() - t0 >= 0.4)
    end)

    it("cut: Content-Length of the chosen size, half of it (or `bytes`) sent, then closed",
      function()
        local size = 5 * 65536 + 7
        s:options { recording_bytes = size }
        local rec = recorded_of(s, { times = { os.time() - 60 }, recorded = true })[1]
        s:fault { path = "/recordings/*", kind = "cut", count = 2 }
        local res, err = fetch(s, rec.recordFileDownloadUrl)
        assert.is_nil(res)
        assert.equal("network", err.kind)
        assert.same({ math.floor(size / 2), false }, { curl_bytes(rec.recordFileDownloadUrl) })
        s:fault { path = "/recordings/*", kind = "cut", bytes = 100 }
        assert.same({ 100, false }, { curl_bytes(rec.recordFileDownloadUrl) })
        local n
        res, err, n = fetch(s, rec.recordFileDownloadUrl)
        assert(res, err and err.message)
        assert.equal(size, n)
      end)

    it("404 for an unknown or unrecorded session, 410 once 7 days are past the call's end", function()
      local t_end = os.time() - 7 * 86400 + 60    -- a minute before it expires
      local rec = recorded_of(s, { times = { t_end }, recorded = true, recording_bytes = 1000 })[1]
      local res = fetch(s, rec.recordFileDownloadUrl)
      assert.equal(200, res.status)
      assert.equal(200, s:recording_info(rec.sessionId).status)
      assert.equal(t_end + 7 * 86400, s:recording_info(rec.sessionId).expires_at)
      s:post("/_sim/clock", { offset_seconds = 120 })
      res = fetch(s, rec.recordFileDownloadUrl)
      assert.equal(410, res.status)
      local info = assert(s:recording_info(rec.sessionId))
      assert.same({ 410, 1000 }, { info.status, info.bytes })
      res = fetch(s, s.base_url .. "/recordings/00000000-0000-4000-a000-000000000000_300000001.wav")
      assert.equal(404, res.status)
      assert.is_nil((s:recording_info("00000000-0000-4000-a000-000000000000_300000001")))
      local unrec = s:seed { times = { os.time() }, recorded = false }
      local r = records(s, { maxId = unrec.first_id - 1 })[1]
      assert.equal("0", r.recordFlag)
      res = fetch(s, s.base_url .. "/recordings/" .. r.sessionId .. ".wav")
      assert.equal(404, res.status)
    end)
  end)

  describe("latency and requests in flight", function()
    it("latency_ms delays every API call, not the recordings (recording_latency_ms those)", function()
      s:options { latency_ms = 800 }
      local rec = recorded_of(s, { times = { os.time() - 60 }, recorded = true })[1]
      for _ = 1, 2 do
        local t0 = socket_time()
        call(s, "/management/customer/isallow", { userData = UD })
        assert.is_true(socket_time() - t0 >= 0.8)
      end
      local t0 = socket_time()
      fetch(s, rec.recordFileDownloadUrl)
      assert.is_true(socket_time() - t0 < 0.8)
      s:options { latency_ms = 0, recording_latency_ms = 800 }
      t0 = socket_time()
      fetch(s, rec.recordFileDownloadUrl)
      assert.is_true(socket_time() - t0 >= 0.8)
      t0 = socket_time()
      call(s, "/management/customer/isallow", { userData = UD })
      assert.is_true(socket_time() - t0 < 0.8)
    end)

    it("requests wait side by side: stats and the log's started/finished show how many at once", function()
      s:options { latency_ms = 1000 }  -- far longer than starting 6 curl processes takes
      s:stats_clear()
      s:post("/_sim/requests/clear")
      parallel_balance(s, 6)
      local st = wait_idle(s)
      assert.equal(6, st.max_in_flight)
      assert.equal(6, st.api.max_in_flight)
      assert.equal(6, st.requests)
      assert.same({ 0, 0 }, { st.recordings.requests, st.recordings.max_in_flight })
      local log = s:requests()
      assert.equal(6, #log)
      for _, e in ipairs(log) do
        assert.is_number(e.started)
        assert.is_number(e.finished)
        assert.is_true(e.finished - e.started >= 0.99)
      end
      assert.equal(6, max_overlap(log))
      -- one after another: never more than one at once
      s:stats_clear()
      s:post("/_sim/requests/clear")
      s:options { latency_ms = 50 }
      for _ = 1, 3 do call(s, "/management/customer/isallow", { userData = UD }) end
      st = wait_idle(s)
      assert.same({ 1, 3 }, { st.max_in_flight, st.requests })
      assert.equal(1, max_overlap(s:requests()))
    end)

    it("counts recordings apart, with the body bytes sent; a reset while requests run keeps the count right",
      function()
        s:options { recording_bytes = 10000 }
        local rec = recorded_of(s, { times = { os.time() - 60 }, recorded = true })[1]
        s:stats_clear()
        fetch(s, rec.recordFileDownloadUrl)
        fetch(s, rec.recordFileDownloadUrl)
        local st = wait_idle(s)
        assert.same({ 2, 20000, 0 }, { st.recordings.requests, st.recordings.body_bytes, st.api.requests })
        -- a reset while two requests wait: they still count down to 0, never below
        s:options { latency_ms = 1500 }
        local p = io.popen(("unset LD_PRELOAD; for i in 1 2; do curl -s -o /dev/null -d '{}' "
                            .. "%s/management/customer/isallow & done; wait"):format(s.base_url))
        assert(nginx.wait_for(function() return s:stats().in_flight == 2 end, 5, "two requests in flight"))
        s:reset()
        st = s:stats()
        assert.same({ 2, 2, 0 }, { st.in_flight, st.max_in_flight, st.requests })
        p:read("*a")
        p:close()
        st = wait_idle(s)
        assert.same({ 0, 0 }, { st.in_flight, st.api.in_flight })
      end)
  end)

  describe("records at exact times", function()
    it("seed times: one record per time, sorted, on slice edges and on the window's edges", function()
      local t0 = 1704038400                          -- 2024-01-01 00:00:00 UTC+8
      local edges = { t0, t0 + 3600, t0 + 3600, t0 + 7200, "2024-01-01 01:30:00" }
      local got = s:seed { times = edges, recorded = true }
      assert.equal(4, got.last_id - got.first_id)
      local recs = all_records(s)
      local ends = {}
      for _, r in ipairs(recs) do ends[#ends + 1] = r.callEndTime end
      assert.same({ "2024-01-01 00:00:00", "2024-01-01 01:00:00", "2024-01-01 01:00:00", "2024-01-01 01:30:00",
                    "2024-01-01 02:00:00" }, ends)
      -- both window ends are inclusive: [00:00, 01:00] and [01:00, 02:00] both hold the 01:00 records
      local a = all_records(s, { "2024-01-01 00:00:00", "2024-01-01 01:00:00" })
      local b = all_records(s, { "2024-01-01 01:00:00", "2024-01-01 02:00:00" })
      assert.same({ 3, 4 }, { #a, #b })
      assert.equal(a[2].id, b[1].id)
      assert.equal(a[3].id, b[2].id)
    end)

    it("tens of thousands of records over a range: k of n ends at start + floor(k*(end-start)/(n-1))", function()
      local got = s:seed { count = 40001, start_time = "2024-01-01 00:00:00", end_time = "2024-01-01 11:06:40" }
      -- 40000 s over 40000 steps: one record a second, so every slice edge of whole seconds has one
      local page = records(s, { maxId = got.first_id - 1 + 19999, starTime = "2024-01-01 05:33:20",
                                endTime = "2024-01-01 05:33:21" })
      assert.same({ "2024-01-01 05:33:20", "2024-01-01 05:33:21" }, { page[1].callEndTime, page[2].callEndTime })
      assert.equal(2, #page)
      assert.equal(40001, #all_records(s, { "2024-01-01 00:00:00", "2024-01-01 23:59:59" }))
    end)

    it("session_ids: any string as sessionId (hostile ones too), the recording at /recordings/r<id>.wav",
      function()
        local now = os.time()
        local hostile = { "../../etc/passwd", ".hidden", "a/b", "\1\n\t", "", "x\0y", "ü/../é" }
        local times = {}
        for i = 1, #hostile do times[i] = now - 100 + (i % 3) end
        local got = s:seed { times = times, session_ids = hostile, recorded = true, recording_bytes = 4000 }
        local recs = records(s, { maxId = got.first_id - 1 })
        assert.equal(#hostile, #recs)
        local seen = {}
        for _, r in ipairs(recs) do
          seen[#seen + 1] = r.sessionId
          local path = ("/recordings/r%d.wav"):format(r.id)
          assert.equal(s.base_url .. path, r.recordFileDownloadUrl)
          local res, _, n, sha = fetch(s, r.recordFileDownloadUrl)
          assert.same({ 200, 4000 }, { res.status, n })
          local q = assert(s:recording_info(r.sessionId))
          assert.same({ r.sessionId, sha, path }, { q.session_id, q.sha256, q.url_path })
          assert.same(q, s:recording_info(r.id))
        end
        -- ids follow the times, and the order given for equal times
        assert.same({ "a/b", "x\0y", "../../etc/passwd", "\1\n\t", "ü/../é", ".hidden", "" }, seen)
        -- each sessionId once
        local res = s.http:perform { method = "POST", url = s.base_url .. "/_sim/seed",
                                     body = cjson.encode { times = { now }, session_ids = { "a/b" } } }
        assert.equal(400, res.status)
        res = s.http:perform { method = "POST", url = s.base_url .. "/_sim/seed",
                               body = cjson.encode { times = { now, now }, session_ids = { "z", "z" } } }
        assert.equal(400, res.status)
        assert.equal(404, fetch(s, s.base_url .. "/recordings/r999999.wav").status)
        assert.is_nil((s:recording_info(999999)))
        assert.is_nil((s:recording_info("no such session")))
      end)

    it("refuses bad times", function()
      for _, bad in ipairs { {}, { "2024-13-01 00:00:00" }, { true }, "2024-01-01 00:00:00" } do
        local res = s.http:perform { method = "POST", url = s.base_url .. "/_sim/seed",
                                     body = cjson.encode { times = bad } }
        assert.equal(400, res.status)
      end
      local res = s.http:perform { method = "POST", url = s.base_url .. "/_sim/seed",
                                   body = cjson.encode { times = { 1, 2 }, count = 3 } }
      assert.equal(400, res.status)
    end)
  end)

  describe("options", function()
    it("answers every option; unknown names and bad values are refused, nothing changed", function()
      local o = s:options {}
      assert.same({ "formula", true, cjson.null, cjson.null, cjson.null, cjson.null },
                  { o.dial_duration, o.dial_recorded, o.recording_bytes, o.recording_rate, o.latency_ms,
                    o.recording_latency_ms })
      for _, bad in ipairs { { latency_ms = -1 }, { latency_ms = 600001 }, { recording_rate = "fast" },
                             { nope = 1 }, { latency_ms = 10, recording_bytes = 1 } } do
        local res = s.http:perform { method = "POST", url = s.base_url .. "/_sim/options", body = cjson.encode(bad) }
        assert.equal(400, res.status)
      end
      assert.equal(cjson.null, s:options {}.latency_ms)
      assert.equal(30, s:options { latency_ms = 30 }.latency_ms)
      assert.equal(cjson.null, s:options { latency_ms = 0 }.latency_ms)
      s:options { latency_ms = 30 }
      s:reset()
      assert.equal(cjson.null, s:options {}.latency_ms)
    end)
  end)

  describe("numbering (ids) and lateness (listing_delay)", function()
    local function post_status(path, body)
      local res = s.http:perform { method = "POST", url = s.base_url .. path, body = cjson.encode(body) }
      return res.status, res.body
    end

    local function bind_and_dial(n)
      assert.is_true(call(s, "/management/add/setingphone", { userData = s.user_data, setingNbr = "PP1",
                                                              userPhone = "+8613500000002" }).meta.success)
      local sids = {}
      for k = 1, n do
        sids[k] = call(s, "/rest/voiceCall/api", { userData = s.user_data, setingNbr = "PP1",
                                                   callerNbr = "+8613500000002",
                                                   calleeNbr = "+861391800001" .. k }).data
      end
      return sids
    end

    it("ids: at_dial by default; bad values refused, nothing changed; reset clears it", function()
      assert.equal("at_dial", s:options {}.ids)
      for _, bad in ipairs { { ids = "later" }, { ids = 1 }, { listing_delay = -1 }, { listing_delay = 2592001 },
                             { ids = "at_hangup", listing_delay = "1h" } } do
        assert.equal(400, (post_status("/_sim/options", bad)))
      end
      assert.equal("at_dial", s:options {}.ids)
      assert.equal(cjson.null, s:options {}.listing_delay)
      assert.equal("at_hangup", s:options { ids = "at_hangup" }.ids)
      assert.equal(600, s:options { listing_delay = 600 }.listing_delay)
      s:reset()
      assert.equal("at_dial", s:options {}.ids)
      assert.equal(400, (post_status("/_sim/seed", { times = { os.time() }, listing_delay = -5 })))
    end)

    it("at_dial: a long call placed first keeps the lower id though it ends last", function()
      s:options { dial_duration = 600 }
      local long = bind_and_dial(1)[1]
      s:options { dial_duration = 10 }
      bind_and_dial(2)
      local recs = all_records(s)
      assert.equal(3, #recs)
      assert.equal(long, recs[1].sessionId)
      assert.is_true(recs[1].callEndTime > recs[3].callEndTime)
    end)

    it("at_hangup: a call waits without an id until it has ended, then is numbered in end order; its "
       .. "recording comes once it has an id", function()
      s:options { ids = "at_hangup", dial_duration = 600 }
      local long = bind_and_dial(1)[1]
      s:options { dial_duration = 10 }
      local short = bind_and_dial(2)
      assert.equal(3, s:get("/_sim/state").pending)
      assert.same({}, all_records(s))
      s:post("/_sim/clock", { offset_seconds = 100 }) -- the short calls have ended
      local recs = all_records(s)
      assert.equal(2, #recs)
      assert.same({ short[1], short[2] }, { recs[1].sessionId, recs[2].sessionId })
      local res = s.http:perform { method = "GET", url = s.base_url .. "/recordings/" .. long .. ".wav" }
      assert.equal(404, res.status)
      s:post("/_sim/clock", { offset_seconds = 700 })
      recs = all_records(s)
      assert.equal(3, #recs)
      assert.equal(long, recs[3].sessionId)
      assert.is_true(recs[3].id > recs[2].id)
      assert.equal(0, s:get("/_sim/state").pending)
      res = s.http:perform { method = "GET", url = recs[3].recordFileDownloadUrl }
      assert.equal(200, res.status)
    end)

    it("listing_delay: a seed's records are listed only that long after their end; at_hangup numbers a "
       .. "times seed's later records when they are due", function()
      local now = os.time()
      local a = s:seed { times = { now - 100 }, listing_delay = 300 }
      local b = s:seed { times = { now - 50 } }
      assert.same({ b.first_id }, (function()
        local ids = {}
        for _, r in ipairs(all_records(s)) do ids[#ids + 1] = r.id end
        return ids
      end)())
      s:post("/_sim/clock", { offset_seconds = 201 })
      local recs = all_records(s)
      assert.same({ a.first_id, b.first_id }, { recs[1].id, recs[2].id })
      s:reset()
      s:options { ids = "at_hangup" }
      now = os.time()
      local c = s:seed { times = { now - 100, now - 80 }, listing_delay = 90 }
      assert.equal(1, c.pending)
      assert.equal(c.first_id, c.last_id)
      local d = s:seed { times = { now - 10 } }
      assert.equal(d.first_id, c.last_id + 1)
      s:post("/_sim/clock", { offset_seconds = 20 })
      recs = all_records(s)
      assert.equal(3, #recs)
      assert.equal(d.first_id + 1, recs[3].id) -- numbered when it was listed, after d
      assert.equal(400, (post_status("/_sim/seed", { count = 2, start_time = now - 10, end_time = now + 100 })))
    end)
  end)
end)

describe("recordings over https #integration", function()
  it("sim.start{ tls = true } and the recording_base option: https URLs, trusted only through ca_file",
    function()
      local s = assert(sim.start { tls = true, workers = 1 })
      local trusting
      -- busted keeps one finally per test: it must stop both
      finally(function()
        if trusting then trusting:close() end
        s:stop()
      end)
      assert.matches("^https://127%.0%.0%.1:%d+$", s.tls_base_url)
      assert.equal(s.tls_base_url, s:options { recording_base = s.tls_base_url, recording_bytes = 5000 }
        .recording_base)
      local rec = recorded_of(s, { times = { os.time() - 60 }, recorded = true })[1]
      assert.equal(s.tls_base_url .. "/recordings/" .. rec.sessionId .. ".wav", rec.recordFileDownloadUrl)
      local res, err = s.http:perform { method = "GET", url = rec.recordFileDownloadUrl }
      assert.is_nil(res)
      assert.matches("certificate", err.message)    -- self-signed: not trusted by default
      trusting = assert(core.curl_transport { ca_file = s.ca_file })
      res = assert(trusting:perform { method = "GET", url = rec.recordFileDownloadUrl })
      assert.same({ 200, 5000 }, { res.status, #res.body })
      -- back on this server; a bad base is refused
      assert.equal(cjson.null, s:options { recording_base = cjson.null }.recording_base)
      assert.equal(s.base_url, all_records(s)[1].recordFileDownloadUrl:sub(1, #s.base_url))
      for _, bad in ipairs { "ftp://x", "http://", "http://x/", 5, "http://a b" } do
        res = s.http:perform { method = "POST", url = s.base_url .. "/_sim/options",
                               body = cjson.encode { recording_base = bad } }
        assert.equal(400, res.status)
      end
    end)
end)

describe("sim.start options #integration", function()
  it("secret, user_data and workers", function()
    local s = assert(sim.start { secret = "it's a s3cret", user_data = "u-123", workers = 1 })
    finally(function() s:stop() end)
    assert.same({ "it's a s3cret", "u-123" }, { s.secret, s.user_data })
    local v = call(s, "/management/customer/isallow", { userData = "u-123" })
    assert.is_true(v.meta.success)
    local st = s:get("/_sim/state")
    assert.equal("u-123", st.default_user_data)
    -- the default secret is refused now
    local res = assert(s.http:perform { method = "POST", url = s.base_url .. "/management/customer/isallow",
      headers = { Authorization = core.base64(sim.SECRET) }, body = cjson.encode { userData = "u-123" } })
    assert.is_false(cjson.decode(res.body).meta.success)
    local ok, out = nginx.run("ps -o pid= --ppid $(cat " .. s.prefix .. "/logs/nginx.pid) | wc -l")
    assert(ok, out)
    assert.equal(1, tonumber(out:match("%d+")))
  end)
end)
