-- clicktocall.metrics in plain Lua: what on_event counts (requests, their time, retries), what an instrumented
-- client adds (calls by outcome, dials the guard refused, the balance, the jobs), the text format checked by
-- `promtool check metrics` after every step, and the textfile written atomically.
local clicktocall = require "clicktocall"
local metrics = require "clicktocall.metrics"
local j = require "spec.helpers.jobs"

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local PROMTOOL = (function()
  local p = io.popen("command -v promtool")
  local path = p:read("*l")
  p:close()
  return path
end)()

-- `promtool check metrics` on a text: its output (nothing when the exposition is clean) and its exit
local function promtool(text)
  assert(PROMTOOL, "promtool is not installed (Debian's prometheus package: run `make bootstrap`)")
  local dir = j.mkdtemp()
  j.write(dir .. "/m.prom", text)
  local out = j.shell(("promtool check metrics < %s 2>&1; echo \"exit=$?\""):format(q(dir .. "/m.prom")))
  j.rmtree(dir)
  return out
end

local function clean(text)
  local out = promtool(text)
  assert.equal("exit=0\n", out, "promtool check metrics:\n" .. out .. "\non:\n" .. text)
end

-- the value of one series, as rendered (nil when the line is absent)
local function value(text, series)
  for line in text:gmatch("[^\n]+") do
    local name, v = line:match("^(.-) (%S+)$")
    if name == series then
      return tonumber(v)
    end
  end
  return nil
end

describe("clicktocall.metrics", function()
  it("new{} takes only its options, with a sentence for each mistake", function()
    for _, bad in ipairs {
      { { colour = 1 }, "unknown option 'colour'" },
      { { dict = "ctc" }, "dict needs OpenResty" },
      { { buckets = { 1, 0.5 } }, "ascending" },
      { { buckets = {} }, "ascending" },
      { { on_event = 1 }, "on_event must be a function" },
      { 5, "options must be a table" },
    } do
      local m, err = metrics.new(bad[1])
      assert.is_nil(m)
      assert.equal("argument", err.kind)
      assert.truthy(err.message:find(bad[2], 1, true), err.message)
    end
  end)

  it("a fresh exposition: HELP and TYPE of every family, the refused dials at 0, clean for promtool", function()
    local text = metrics.new():render()
    assert.equal(0, value(text, "clicktocall_dials_refused_total"))
    for _, name in ipairs { "clicktocall_requests_total counter", "clicktocall_request_duration_seconds histogram",
                            "clicktocall_balance_seconds gauge", "clicktocall_archive_expiring_recordings gauge",
                            "clicktocall_sync_lag_seconds gauge" } do
      assert.truthy(text:find("# TYPE " .. name .. "\n", 1, true), name)
    end
    clean(text)
  end)

  it("on_event counts each response by op and outcome, its time in the histogram, and each retry", function()
    local seen = {}
    local m = assert(metrics.new { on_event = function(e) seen[#seen + 1] = e end })
    local ev = {
      { type = "request", op = "balance", attempt = 1 },
      { type = "response", op = "balance", attempt = 1, status = 503, elapsed = 0.02, error = "[http] HTTP 503" },
      { type = "retry", op = "balance", attempt = 1, status = 503, error = "[http] HTTP 503", delay = 0.1 },
      { type = "request", op = "balance", attempt = 2 },
      { type = "response", op = "balance", attempt = 2, status = 200, elapsed = 0.2 },
      { type = "response", op = "dial", attempt = 1, elapsed = 3,
        error = "[timeout][CURLE_OPERATION_TIMEDOUT] timed out (28)" },
      { type = "response", op = "download", attempt = 1, status = 200, elapsed = 1000 },
    }
    for _, e in ipairs(ev) do m.on_event(e) end
    assert.equal(#ev, #seen) -- the caller's hook saw every event, after the metrics
    local text = m:render()
    assert.equal(1, value(text, 'clicktocall_requests_total{op="balance",outcome="http"}'))
    assert.equal(1, value(text, 'clicktocall_requests_total{op="balance",outcome="ok"}'))
    assert.equal(1, value(text, 'clicktocall_requests_total{op="dial",outcome="timeout"}'))
    assert.equal(1, value(text, 'clicktocall_retries_total{op="balance",reason="http"}'))
    -- cumulative buckets: 0.02 is under le=0.025, 0.2 under le=0.25; _count is the +Inf bucket
    assert.equal(0, value(text, 'clicktocall_request_duration_seconds_bucket{op="balance",le="0.01"}'))
    assert.equal(1, value(text, 'clicktocall_request_duration_seconds_bucket{op="balance",le="0.025"}'))
    assert.equal(1, value(text, 'clicktocall_request_duration_seconds_bucket{op="balance",le="0.1"}'))
    assert.equal(2, value(text, 'clicktocall_request_duration_seconds_bucket{op="balance",le="0.25"}'))
    assert.equal(2, value(text, 'clicktocall_request_duration_seconds_bucket{op="balance",le="+Inf"}'))
    assert.equal(2, value(text, 'clicktocall_request_duration_seconds_count{op="balance"}'))
    assert.near(0.22, value(text, 'clicktocall_request_duration_seconds_sum{op="balance"}'), 1e-12)
    -- longer than the last bucket: only in +Inf
    assert.equal(0, value(text, 'clicktocall_request_duration_seconds_bucket{op="download",le="300"}'))
    assert.equal(1, value(text, 'clicktocall_request_duration_seconds_bucket{op="download",le="+Inf"}'))
    clean(text)
  end)

  it("escapes label values: backslash, double quote, line feed", function()
    local m = metrics.new()
    m:call('a"b\\c\nd', nil, 0.5)
    local text = m:render()
    assert.equal(1, value(text, 'clicktocall_calls_total{op="a\\"b\\\\c\\nd",outcome="ok"}'))
    clean(text)
  end)

  it("a dry run's plan counts as no run of its job", function()
    local m = metrics.new()
    m:job("sync", { dry_run = true, new = 3, delivered = 0, skipped = 1, pages = 1, through = 1796436000 })
    m:job("archive", { dry_run = true, to_download = 2, expiring = { {}, {} } })
    local text = m:render()
    assert.is_nil(text:find('clicktocall_job_runs_total{', 1, true), text)
    assert.is_nil(text:find("\nclicktocall_sync_through_timestamp_seconds ", 1, true), text)
    clean(text)
  end)

  describe("an instrumented client (clicktocall.mock)", function()
    local dir, m, client, provider, raw

    before_each(function()
      dir = j.mkdtemp()
      m = assert(metrics.new())
      raw, provider = j.client { on_event = m.on_event, dial_guard = "file:" .. dir .. "/guard" }
      client = m:instrument(raw)
    end)

    after_each(function()
      client:close()
      j.rmtree(dir)
    end)

    it("counts each call by outcome, the retries, the refused dial and the balance read", function()
      assert(client:bind_seat { seat = "PP1", phone = "13500000002" })
      assert(client:dial { caller = "13500000002", callee = "13918000010", seat = "PP1" })
      local sid, err = client:dial { caller = "13500000002", callee = "13918000010", seat = "PP1" }
      assert.is_nil(sid)
      assert.equal("duplicate", err.kind) -- the guard: nothing sent
      sid, err = client:dial { caller = "135", callee = "13918000010", seat = "PP1" }
      assert.is_nil(sid)
      assert.equal("argument", err.kind)
      provider:fail("balance", 503)
      local left = assert(client:balance())
      provider:fail("dial", "api_error")
      assert.is_nil(client:dial { caller = "13500000002", callee = "13918000011", seat = "PP1" })
      local text = m:render()
      assert.equal(1, value(text, 'clicktocall_calls_total{op="bind_seat",outcome="ok"}'))
      assert.equal(1, value(text, 'clicktocall_calls_total{op="dial",outcome="ok"}'))
      assert.equal(1, value(text, 'clicktocall_calls_total{op="dial",outcome="duplicate"}'))
      assert.equal(1, value(text, 'clicktocall_calls_total{op="dial",outcome="argument"}'))
      assert.equal(1, value(text, 'clicktocall_calls_total{op="dial",outcome="api"}'))
      assert.equal(1, value(text, 'clicktocall_calls_total{op="balance",outcome="ok"}'))
      assert.equal(1, value(text, "clicktocall_dials_refused_total"))
      -- what went on the wire: the refused and the invalid dial sent nothing
      assert.equal(1, value(text, 'clicktocall_requests_total{op="dial",outcome="ok"}'))
      assert.equal(1, value(text, 'clicktocall_requests_total{op="dial",outcome="api"}'))
      assert.equal(1, value(text, 'clicktocall_requests_total{op="balance",outcome="http"}'))
      assert.equal(1, value(text, 'clicktocall_retries_total{op="balance",reason="http"}'))
      assert.equal(left, value(text, "clicktocall_balance_seconds"))
      assert.is_true(math.abs(value(text, "clicktocall_balance_read_timestamp_seconds") - os.time()) <= 5)
      assert.equal(1, value(text, 'clicktocall_call_duration_seconds_count{op="balance"}'))
      clean(text)
    end)

    it("methods it does not count pass through: records, close; results come back unchanged", function()
      local now = os.time()
      provider:seed_records(3, { start_time = clicktocall.format_time(now - 600),
                                 end_time = clicktocall.format_time(now - 300) })
      local n = 0
      for _ in client:records { start_time = now - 700, end_time = now } do n = n + 1 end
      assert.equal(3, n)
      local recs, next_id = client:records_page { start_time = now - 700, end_time = now }
      assert.equal(3, #recs)
      assert.is_nil(next_id)
      local text = m:render()
      assert.equal(1, value(text, 'clicktocall_calls_total{op="records_page",outcome="ok"}'))
      assert.equal(2, value(text, 'clicktocall_requests_total{op="records_page",outcome="ok"}'))
      clean(text)
    end)

    it("an archive that uploads: uploaded counted, its failures by stage (download, upload)", function()
      local mm = metrics.new()
      local function failed(stage) return { id = 1, sessionId = "s", stage = stage, err = { kind = "http" } } end
      local f1, f2, f3 = failed("upload"), failed("upload"), failed("download")
      mm:job("archive", { downloaded = 5, uploaded = 3, skipped = 1, no_recording = 0, bytes = 500,
                          failed = { f1, f2, f3 }, expiring = { f3 } })
      local text = mm:render()
      assert.equal(3, value(text, 'clicktocall_archive_recordings_total{result="uploaded"}'))
      assert.equal(3, value(text, 'clicktocall_archive_recordings_total{result="failed"}'))
      assert.equal(2, value(text, 'clicktocall_archive_failures_total{stage="upload"}'))
      assert.equal(1, value(text, 'clicktocall_archive_failures_total{stage="download"}'))
      assert.truthy(text:find("# TYPE clicktocall_archive_failures_total counter\n", 1, true))
      clean(text)
      -- the next run: no failure; the counters add up, both stages stay in the exposition
      mm:job("archive", { downloaded = 0, uploaded = 2, skipped = 6, no_recording = 0, bytes = 0, failed = {},
                          expiring = {} })
      text = mm:render()
      assert.equal(5, value(text, 'clicktocall_archive_recordings_total{result="uploaded"}'))
      assert.equal(2, value(text, 'clicktocall_archive_failures_total{stage="upload"}'))
      assert.equal(1, value(text, 'clicktocall_archive_failures_total{stage="download"}'))
      assert.equal(0, value(text, "clicktocall_archive_failed_recordings"))
      clean(text)
    end)

    it("the jobs: archive's results and its expiring failures, sync's records, cursor and lag", function()
      local now = os.time()
      -- two recordings 6.5 days old (they expire within 24 h), one of which cannot be downloaded
      provider:seed_records(2, { start_time = clicktocall.format_time(now - 6.5 * 86400),
                                 end_time = clicktocall.format_time(now - 6.5 * 86400 + 60), recorded = true })
      provider:fail("download", 503, math.huge)
      local archive = dir .. "/calls"
      os.execute("mkdir " .. q(archive))
      local summary = assert(client:archive_recordings { start_time = now - 7 * 86400, end_time = now,
                                                         dir = archive, concurrency = 1 })
      assert.equal(2, #summary.failed)
      provider:clear_faults("download")
      local text = m:render()
      assert.equal(1, value(text, 'clicktocall_job_runs_total{job="archive",outcome="ok"}'))
      assert.equal(2, value(text, 'clicktocall_archive_recordings_total{result="failed"}'))
      assert.equal(2, value(text, 'clicktocall_archive_failures_total{stage="download"}'))
      assert.is_nil(value(text, 'clicktocall_archive_failures_total{stage="upload"}')) -- no upload asked
      assert.equal(0, value(text, 'clicktocall_archive_recordings_total{result="downloaded"}'))
      assert.equal(2, value(text, "clicktocall_archive_failed_recordings"))
      assert.equal(2, value(text, "clicktocall_archive_expiring_recordings"))
      clean(text)
      -- the next run downloads them: the gauges of the last run go to 0, the counters add up
      summary = assert(client:archive_recordings { start_time = now - 7 * 86400, end_time = now, dir = archive })
      assert.equal(2, summary.downloaded)
      text = m:render()
      assert.equal(2, value(text, 'clicktocall_archive_recordings_total{result="downloaded"}'))
      assert.equal(summary.bytes, value(text, "clicktocall_archive_bytes_total"))
      assert.equal(0, value(text, "clicktocall_archive_expiring_recordings"))
      assert.equal(0, value(text, "clicktocall_archive_failed_recordings"))
      assert.equal(2, value(text, 'clicktocall_job_duration_seconds_count{job="archive"}'))
      clean(text)

      local s = assert(client:sync { state = dir .. "/state.json", since = now - 7 * 86400,
                                     on_record = function() return true end })
      text = m:render()
      assert.equal(2, value(text, 'clicktocall_sync_records_total{result="delivered"}'))
      assert.equal(s.through, value(text, "clicktocall_sync_through_timestamp_seconds"))
      assert.is_true(value(text, "clicktocall_sync_lag_seconds") >= 0)
      assert.is_true(value(text, "clicktocall_job_last_success_timestamp_seconds{job=\"sync\"}") >= now)
      -- a run that cannot start: counted by its kind, the cursor stays
      local none, err = client:sync { state = dir .. "/state.json", on_record = function() return true end,
                                      lookback = -1 }
      assert.is_nil(none)
      assert.equal("argument", err.kind)
      text = m:render()
      assert.equal(1, value(text, 'clicktocall_job_runs_total{job="sync",outcome="argument"}'))
      assert.equal(s.through, value(text, "clicktocall_sync_through_timestamp_seconds"))
      clean(text)
    end)
  end)

  describe("write_textfile", function()
    local dir
    before_each(function() dir = j.mkdtemp() end)
    after_each(function() j.rmtree(dir) end)

    it("writes the exposition whole, replacing the last one, and leaves nothing else", function()
      local m = metrics.new()
      j.write(dir .. "/ctc.prom", "old\n")
      m:balance(42)
      assert.is_true(m:write_textfile(dir .. "/ctc.prom"))
      assert.same({ "ctc.prom" }, j.tree(dir))
      local text = j.read(dir .. "/ctc.prom")
      assert.equal(m:render(), text)
      assert.equal(42, value(text, "clicktocall_balance_seconds"))
      clean(text)
      -- the old file is replaced by a rename: a reader holding it open still reads the old text whole
      local held = assert(io.open(dir .. "/ctc.prom", "rb"))
      m:balance(43)
      assert.is_true(m:write_textfile(dir .. "/ctc.prom"))
      assert.equal(text, held:read("*a"))
      held:close()
      assert.equal(43, value(j.read(dir .. "/ctc.prom"), "clicktocall_balance_seconds"))
      assert.same({ "ctc.prom" }, j.tree(dir))
    end)

    it("a directory that is not there: kind io, a sentence with the path, nothing written", function()
      local ok, err = metrics.new():write_textfile(dir .. "/missing/ctc.prom")
      assert.is_nil(ok)
      assert.equal("io", err.kind)
      assert.truthy(err.message:find(dir .. "/missing/ctc.prom", 1, true), err.message)
      assert.same({}, j.tree(dir))
      local _, aerr = metrics.new():write_textfile(dir .. "/")
      assert.equal("argument", aerr.kind)
    end)
  end)
end)
