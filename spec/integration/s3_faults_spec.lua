-- archive_recordings{ upload } when the store misbehaves (issue #21.5), against the simulator and the
-- signature-checking S3 endpoint (spec/helpers/s3.lua) over libcurl: a store refusing (403 bad signature, 403
-- AccessDenied, 404 no bucket, 500, 503 with Retry-After), the connection cut mid-body, a store slower than the
-- timeout, and a store that would keep a truncated body (it cannot: the signed payload hash). Each time: every
-- recording's failure listed with its kind (and S3's code), its local copy kept and whole, its manifest line
-- without `uploaded`, nothing half-stored; a fault that clears is retried into an upload. Everything the runs
-- report (errors, events, JSON log lines, summaries, manifests) is swept for the secret key in all its forms.
local sim = require "spec.helpers.sim"
local s3h = require "spec.helpers.s3"
local nginx = require "spec.helpers.nginx"
local j = require "spec.helpers.jobs"
local h = require "spec.helpers"
local core = require "clicktocall.core"
local log = require "clicktocall.log"
local storm = require "bench.storm"

local DAY = 86400
local SECRET = "CANARY-s3/Secret+Key-" .. tostring(os.time())

local sha = j.sha256

local manifest = j.manifest

describe("archive_recordings{ upload }: the store's faults #integration", function()
  local s, store, dir
  local reported = {} -- everything the runs reported, swept for the secret at the end
  local forms = storm.canary_forms(SECRET)

  setup(function()
    s = assert(sim.start())
    store = assert(s3h.start { buckets = { "calls" }, secret_key = SECRET })
  end)
  teardown(function()
    if store then store:stop() end
    if s then s:stop() end
    local n = 0
    for _, v in ipairs(reported) do
      n = n + 1
      assert.is_false(storm.leaks(forms, v), "the secret key in: " .. v)
    end
    assert.is_true(n > 100, "the sweep saw " .. n .. " strings")
  end)
  before_each(function()
    s:reset()
    store:fault(nil)
    store:clear_requests()
    dir = j.mkdtemp()
  end)
  after_each(function() j.rmtree(dir) end)

  -- a second run in the same spec: the window, the store's log and the directory afresh (the fault stays)
  local function fresh()
    s:reset()
    store:clear_requests()
    j.rmtree(dir)
    dir = j.mkdtemp()
  end

  -- One archive of `n` fresh recordings (0: those seeded already) with the store as set up, its reports kept
  -- -> summary, run (run.sleeps: the waits the client asked for; run.puts: the endpoint's PUTs)
  local function archive(n, upload_over, client_over)
    local now = os.time()
    if n > 0 then
      -- well inside the window, which later runs of the same spec start a little later
      s:post("/_sim/seed", { count = n, start_time = now - DAY + 600, end_time = now - 60, recorded = true })
    end
    local run = { sleeps = {}, events = {}, lines = {} }
    local co = { retries = 2, sleep = function(d) run.sleeps[#run.sleeps + 1] = d end,
                 on_event = log.json(function(line) run.lines[#run.lines + 1] = line end,
                                     { also = function(e) run.events[#run.events + 1] = e end }) }
    for k, v in pairs(client_over or {}) do co[k] = v end
    local u = { url = "s3://calls/ctc/", endpoint = store.endpoint, region = store.region,
                access_key = store.access_key, secret_key = SECRET, path_style = true }
    for k, v in pairs(upload_over or {}) do u[k] = v end
    local summary, err = s:client(co):archive_recordings { start_time = now - DAY, end_time = now, dir = dir,
                                                            upload = u }
    for _, v in ipairs(h.strings { summary, err, run.events, run.lines, j.read(dir .. "/manifest.jsonl") }) do
      reported[#reported + 1] = v
    end
    run.puts = {}
    for _, r in ipairs(store:requests()) do
      if r.method == "PUT" then run.puts[#run.puts + 1] = r end
    end
    return assert(summary, err and err.message), run
  end

  -- every recording failed as `kind` (and `status`, S3's `code`), each local copy whole, no `uploaded`, no object
  local function all_failed(summary, n, kind, status, code)
    assert.same({ n, 0, n }, { summary.downloaded, summary.uploaded, #summary.failed })
    for _, f in ipairs(summary.failed) do
      assert.equal(kind, f.err.kind, f.err.message)
      if status then assert.equal(status, f.err.status) end
      if code then assert.matches("%(" .. code .. "%)", f.err.message) end
      assert.truthy(f.id and f.sessionId)
    end
    local m, count = manifest(dir)
    assert.equal(n, count)
    for _, e in pairs(m) do
      assert.is_nil(e.uploaded)
      assert.equal(e.sha256, sha(assert(j.read(dir .. "/" .. e.file))))
      assert.is_nil(store:object("calls", "ctc/" .. e.file))
    end
  end

  it("403 SignatureDoesNotMatch (a wrong secret key): not retried, each recording failed, copies kept", function()
    local summary, run = archive(3, { secret_key = "not-the-" .. SECRET })
    all_failed(summary, 3, "http", 403, "SignatureDoesNotMatch")
    assert.equal(3, #run.puts)
    assert.equal(0, #run.sleeps)
  end)

  it("403 AccessDenied and 404 NoSuchBucket: not retried", function()
    store:fault("forbidden", { method = "PUT" })
    local summary, run = archive(2)
    all_failed(summary, 2, "http", 403, "AccessDenied")
    assert.equal(2, #run.puts)
    store:fault(nil)
    fresh()
    summary, run = archive(2, { url = "s3://no-such-bucket/ctc/" })
    assert.same({ 2, 0, 2 }, { summary.downloaded, summary.uploaded, #summary.failed })
    for _, f in ipairs(summary.failed) do
      assert.same({ "http", 404 }, { f.err.kind, f.err.status })
      assert.matches("%(NoSuchBucket%)", f.err.message)
    end
    assert.equal(2, #run.puts)
  end)

  it("500: retried; a store that keeps failing fails each recording after the retries", function()
    store:fault("error500", { method = "PUT", times = 1 })
    local summary, run = archive(2)
    assert.same({ 2, 2, 0 }, { summary.downloaded, summary.uploaded, #summary.failed })
    assert.equal(3, #run.puts)
    assert.equal(1, #run.sleeps)
    store:fault("error500", { method = "PUT" })
    fresh()
    summary, run = archive(2)
    all_failed(summary, 2, "http", 500, "InternalError")
    assert.equal(2 * 3, #run.puts) -- the first try and two retries each
  end)

  it("503 with Retry-After: waits as long as the store asks, then uploads; longer than retry_after_max: fails",
     function()
    store:fault("retry_after", { method = "PUT", seconds = 3, times = 1 })
    local summary, run = archive(2)
    assert.same({ 2, 2, 0 }, { summary.downloaded, summary.uploaded, #summary.failed })
    assert.same({ 3 }, run.sleeps)
    local retried = 0
    for _, e in ipairs(run.events) do
      if e.type == "retry" and e.op == "upload" then
        retried = retried + 1
        assert.same({ 503, 3 }, { e.status, e.delay })
      end
    end
    assert.equal(1, retried)
    store:fault("retry_after", { method = "PUT", seconds = 120 })
    fresh()
    summary, run = archive(2)
    all_failed(summary, 2, "http", 503, "SlowDown")
    for _, f in ipairs(summary.failed) do assert.equal(120, f.err.retry_after) end
    assert.equal(0, #run.sleeps)
  end)

  it("the connection cut mid-body: kind network, nothing stored; cut once, the retry uploads", function()
    store:fault("cut", { method = "PUT", after = 1000 })
    local summary, run = archive(2, nil, { retries = 1 })
    all_failed(summary, 2, "network")
    assert.equal(4, #run.puts)
    for _, p in ipairs(run.puts) do assert.same({ 1000, "cut" }, { p.bytes, p.code }) end
    store:fault("cut", { method = "PUT", after = 1000, times = 1 })
    fresh()
    summary = archive(2)
    assert.same({ 2, 2, 0 }, { summary.downloaded, summary.uploaded, #summary.failed })
    for _, e in pairs(manifest(dir)) do
      assert.equal(e.sha256, sha(assert(store:object("calls", e.uploaded.key))))
    end
  end)

  it("a store slower than the timeout: kind timeout, the local copy kept", function()
    store:fault("slow", { method = "PUT", ms = 2500 })
    local t0 = core.now()
    local summary, run = archive(2, nil, { retries = 0, download_timeout = 1 })
    assert.is_true(core.now() - t0 < 2.4 * 2, "gave up at the timeout")
    assert.same({ 2, 0, 2 }, { summary.downloaded, summary.uploaded, #summary.failed })
    for _, f in ipairs(summary.failed) do assert.equal("timeout", f.err.kind, f.err.message) end
    for _, e in pairs(manifest(dir)) do
      assert.is_nil(e.uploaded)
      assert.equal(e.sha256, sha(assert(j.read(dir .. "/" .. e.file))))
    end
    assert.equal(0, #run.puts) -- still held by the slow store when the client gave up
    -- the store finishes them later (it may keep what it received); the next run uploads the same bytes again
    assert(nginx.wait_for(function()
      local n = 0
      for _, r in ipairs(store:requests()) do
        if r.method == "PUT" and r.finished then n = n + 1 end
      end
      return n == 2
    end, 10, "the slow store to finish"))
    store:fault(nil)
    summary = archive(0)
    assert.same({ 0, 2, 0 }, { summary.downloaded, summary.uploaded, #summary.failed })
    for _, e in pairs(manifest(dir)) do
      assert.equal(e.sha256, sha(assert(store:object("calls", e.uploaded.key))))
    end
  end)

  it("a store keeping a truncated body cannot: the signed payload hash refuses it (400), nothing stored", function()
    store:fault("accept_short", { method = "PUT" })
    local summary, run = archive(2)
    all_failed(summary, 2, "http", 400, "XAmzContentSHA256Mismatch")
    assert.equal(2, #run.puts) -- a 400 is not retried
    for _, p in ipairs(run.puts) do assert.equal("XAmzContentSHA256Mismatch", p.code) end
  end)

  it("a fault on one recording's key fails that recording only, listed with its id", function()
    local now = os.time()
    s:post("/_sim/seed", { count = 3, start_time = now - DAY + 600, end_time = now - 60, recorded = true })
    local rows = {}
    for rec in s:client():records { start_time = now - DAY, end_time = now } do rows[#rows + 1] = rec end
    assert.equal(3, #rows)
    local victim = rows[2]
    store:fault("forbidden", { method = "PUT", match = victim.sessionId })
    local summary = archive(0)
    assert.same({ 3, 2, 1 }, { summary.downloaded, summary.uploaded, #summary.failed })
    assert.equal(victim.sessionId, summary.failed[1].sessionId)
    assert.same({ "http", 403 }, { summary.failed[1].err.kind, summary.failed[1].err.status })
    for id, e in pairs(manifest(dir)) do
      if e.sessionId == victim.sessionId then
        assert.is_nil(e.uploaded)
        assert.equal("file", core.file_kind(dir .. "/" .. e.file))
      else
        assert.truthy(e.uploaded, id)
      end
    end
  end)
end)
