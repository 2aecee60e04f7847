-- `clicktocall archive --upload` and `doctor --upload` (issue #21.4) as a user runs them: bin/clicktocall in its
-- own process against the simulator and the signature-checking S3 endpoint (spec/helpers/s3.lua), the keys only
-- from the environment. Every output is searched for both secrets at the end.
-- #noasan: the command is another process, never under the sanitizer's runtime.
local cjson = require("cjson").new()
local core = require "clicktocall.core"
local cli = require "spec.helpers.cli"
local s3 = require "spec.helpers.s3"

local CANARY = "CANARY-s3cr3t-UPL"
local AWS_CANARY = "CANARY/aws+Secret-KEY-7f3e"

local function sha256(s)
  local h = core.sha256()
  h:update(s)
  return h:hex()
end

-- the manifest's last line for each id
local function manifest(dir)
  local by_id, order = {}, {}
  for line in (cli.read(dir .. "/manifest.jsonl") or ""):gmatch("[^\n]+") do
    local e = cjson.decode(line)
    if not by_id[e.id] then order[#order + 1] = e.id end
    by_id[e.id] = e
  end
  local t = {}
  for i, id in ipairs(order) do t[i] = by_id[id] end
  return t
end

local function count(text, pattern)
  local n = 0
  for _ in text:gmatch(pattern) do n = n + 1 end
  return n
end

-- the value of one series in a Prometheus text (nil when absent)
local function metric(text, series)
  for line in text:gmatch("[^\n]+") do
    local name, v = line:match("^(.-) (%S+)$")
    if name == series then return tonumber(v) end
  end
  return nil
end

local function promtool_clean(path)
  local p = io.popen(("promtool check metrics < %s 2>&1; echo \"exit=$?\""):format(cli.quote(path)))
  local out = p:read("*a")
  p:close()
  assert.equal("exit=0\n", out, "promtool check metrics:\n" .. out)
end

describe("clicktocall archive --upload #noasan", function()
  local sim, store, env
  local outputs = {}

  local function run(args, opts)
    opts = opts or {}
    opts.env = opts.env or env
    local r = cli.run(args, opts)
    outputs[#outputs + 1] = r.stdout
    outputs[#outputs + 1] = r.stderr
    return r
  end

  local function seed(n)
    sim:post("/_sim/seed", { count = n, start_time = "2026-11-30 00:00:00", end_time = "2026-11-30 23:00:00" })
  end

  local function puts()
    local n = 0
    for _, r in ipairs(store:requests()) do
      if r.method == "PUT" then n = n + 1 end
    end
    return n
  end

  lazy_setup(function()
    sim = assert(cli.start_sim { secret = CANARY })
    store = assert(s3.start { buckets = { "rec" }, secret_key = AWS_CANARY })
    env = cli.sim_env(sim, { AWS_ACCESS_KEY_ID = store.access_key, AWS_SECRET_ACCESS_KEY = AWS_CANARY,
                             AWS_REGION = store.region })
  end)

  lazy_teardown(function()
    if sim then sim:stop() end
    if store then store:stop() end
    cli.cleanup()
    -- raw, base64 and URL-safe base64, padded or not
    local storm = require "bench.storm"
    local forms, app_forms = storm.canary_forms(AWS_CANARY), storm.canary_forms(CANARY)
    assert.is_true(#outputs > 20)
    for _, o in ipairs(outputs) do
      assert.is_false(storm.leaks(forms, o), o)
      assert.is_false(storm.leaks(app_forms, o), o)
    end
  end)

  before_each(function()
    sim:post("/_sim/reset")
    store:fault(nil)
    store:clear_requests()
  end)

  it("uploads every recording, the bar counts uploads, the objects equal the files; a re-run uploads none",
     function()
    seed(12)
    local dir = cli.tmpdir()
    local args = { "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", dir,
                   "--upload", "s3://rec/calls/", "--endpoint", store.endpoint, "--path-style" }
    local r = run(args)
    assert.equal(0, r.code, r.stderr)
    -- seeded ids divisible by 10 have no recording (the simulator's ids go on across seeds): 10 or 11 of 12
    local n = tonumber(r.stdout:match("^downloaded (%d+), uploaded %d+ to s3://rec/calls/, skipped 0 %(already "
      .. "there%), %d without a recording, 0 failed; [^\n]* written to [^\n]*\n$"))
    assert.truthy(n and n >= 10, r.stdout)
    assert.matches(", uploaded " .. n .. " to", r.stdout)
    assert.equal(n, count(r.stderr, "uploaded %d+/" .. n .. " " .. store.endpoint:gsub("%p", "%%%0")
      .. "/rec/calls/2026%-11%-30/"))
    assert.matches("uploaded " .. n .. "/" .. n .. " ", r.stderr)
    local m = manifest(dir)
    assert.equal(n, #m)
    for _, e in ipairs(m) do
      assert.equal("calls/" .. e.file, e.uploaded.key)
      local body = assert(store:object("rec", e.uploaded.key))
      assert.equal(e.sha256, sha256(body))
      assert.equal(body, cli.read(dir .. "/" .. e.file)) -- the local copy kept
    end
    assert.equal(n, puts())
    -- read back with awscli: the listing has the 11 keys, and a copy has the manifest's SHA-256
    local ok, out = store:aws("s3 ls --recursive s3://rec/calls/")
    assert.is_true(ok, out)
    assert.equal(n, count(out, "calls/2026%-11%-30/"))
    local back = cli.tmpdir() .. "/back"
    ok, out = store:aws("s3 cp " .. cli.quote("s3://rec/" .. m[1].uploaded.key) .. " " .. cli.quote(back))
    assert.is_true(ok, out)
    assert.equal(m[1].sha256, sha256(cli.read(back)))

    store:clear_requests()
    r = run(args)
    assert.equal(0, r.code, r.stderr)
    assert.matches("^downloaded 0, uploaded 0 to s3://rec/calls/, skipped " .. n .. " .*, 0 failed; ", r.stdout)
    assert.equal(0, puts())
  end)

  it("the progress bar in a terminal (tmux) counts the recordings the store took", function()
    seed(8)
    store:options { latency_ms = 150 }
    finally(function() store:options { latency_ms = 0 } end)
    local t = cli.tmux({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", cli.tmpdir(),
                         "--concurrency", "1", "--upload", "s3://rec/bar/", "--endpoint", store.endpoint,
                         "--path-style" }, { env = env })
    finally(function() t:kill() end)
    local mid, seen = t:wait_for("%] [1-9]%d*/%d+ uploaded ", 30)
    assert.truthy(mid, seen)
    assert.matches("%[[#.]+%] %d+/%d+ uploaded  [%d.]+ %a+  [%d.]+ %a+/s  [%d:-]+ left  0 failed", mid)
    local done, text = t:wait_for("__EXIT__%d+", 60)
    assert.truthy(done, text)
    local n = done:match("(%d+)/%d+ uploaded")
    assert.matches(n .. "/" .. n .. " uploaded", done)
    assert.matches("__EXIT__0", done)
    outputs[#outputs + 1] = done
  end)

  it("takes AWS_ENDPOINT_URL and AWS_REGION; --no-keep-local removes each copy once uploaded; -o json", function()
    seed(5)
    local dir = cli.tmpdir()
    local e2 = {}
    for k, v in pairs(env) do e2[k] = v end
    e2.AWS_ENDPOINT_URL = store.endpoint
    local r = run({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", dir, "--upload",
                    "s3://rec/nk", "--path-style", "--no-keep-local", "-o", "json" }, { env = e2 })
    assert.equal(0, r.code, r.stderr)
    local summary = cjson.decode(r.stdout)
    assert.is_true(summary.uploaded >= 4)
    assert.equal(summary.downloaded, summary.uploaded)
    local m = manifest(dir)
    assert.equal(summary.uploaded, #m)
    for _, e in ipairs(m) do
      assert.equal("nk/" .. e.file, e.uploaded.key)
      assert.is_nil(cli.read(dir .. "/" .. e.file))
      assert.equal(e.sha256, sha256(assert(store:object("rec", e.uploaded.key))))
    end
  end)

  it("a store refusing: exit 5, each recording's failure listed with S3's code, the local copies kept", function()
    seed(3)
    store:fault("forbidden", { method = "PUT" })
    local dir = cli.tmpdir()
    local prom = cli.tmpdir() .. "/ctc_archive.prom"
    local r = run({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", dir,
                    "--upload", "s3://rec/f/", "--endpoint", store.endpoint, "--path-style", "--metrics-file", prom })
    assert.equal(5, r.code, r.stderr)
    local m = manifest(dir)
    assert.is_true(#m >= 2)
    -- the textfile tells the failed uploads from failed downloads
    local text = assert(cli.read(prom))
    outputs[#outputs + 1] = text
    promtool_clean(prom)
    assert.equal(#m, metric(text, 'clicktocall_archive_recordings_total{result="downloaded"}'))
    assert.equal(0, metric(text, 'clicktocall_archive_recordings_total{result="uploaded"}'))
    assert.equal(#m, metric(text, 'clicktocall_archive_recordings_total{result="failed"}'))
    assert.equal(#m, metric(text, 'clicktocall_archive_failures_total{stage="upload"}'))
    assert.equal(0, metric(text, 'clicktocall_archive_failures_total{stage="download"}'))
    assert.equal(#m, metric(text, "clicktocall_archive_failed_recordings"))
    assert.equal(#m, count(r.stdout, "failed: id %d+, session [^\n]*HTTP 403 %(AccessDenied%)"), r.stdout)
    assert.matches("uploaded 0 to s3://rec/f/", r.stdout)
    assert.matches(#m .. " recordings failed; run the same command again", r.stderr)
    for _, e in ipairs(m) do
      assert.is_nil(e.uploaded)
      assert.equal(e.sha256, sha256(assert(cli.read(dir .. "/" .. e.file))))
    end
    -- the next run uploads them from the local copies, downloading nothing again
    store:fault(nil)
    r = run({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", dir,
              "--upload", "s3://rec/f/", "--endpoint", store.endpoint, "--path-style", "--metrics-file", prom })
    assert.equal(0, r.code, r.stderr)
    assert.matches("^downloaded 0, uploaded " .. #m .. " to s3://rec/f/", r.stdout)
    text = assert(cli.read(prom))
    promtool_clean(prom)
    assert.equal(#m, metric(text, 'clicktocall_archive_recordings_total{result="uploaded"}'))
    assert.equal(0, metric(text, 'clicktocall_archive_recordings_total{result="downloaded"}'))
    assert.equal(0, metric(text, 'clicktocall_archive_failures_total{stage="upload"}'))
    assert.equal(0, metric(text, "clicktocall_archive_failed_recordings"))
  end)

  it("the summary says what was downloaded and what was uploaded: a download whose upload failed is not archived",
     function()
    seed(3)
    store:fault("forbidden", { method = "PUT" })
    local dir = cli.tmpdir()
    local args = { "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", dir,
                   "--upload", "s3://rec/line/", "--endpoint", store.endpoint, "--path-style" }
    local r = run(args)
    assert.equal(5, r.code, r.stderr)
    local m = manifest(dir)
    assert.is_true(#m >= 2)
    assert.matches("^downloaded " .. #m .. ", uploaded 0 to s3://rec/line/, skipped 0 %(already there%), %d+ without "
      .. "a recording, " .. #m .. " failed %(upload%); [^\n]* written to ", r.stdout)
    -- still refused: the re-run's uploads from the local copies fail again, and say so; -o json and csv add
    -- failed_download and failed_upload (nothing renamed)
    r = run(args)
    assert.equal(5, r.code, r.stderr)
    assert.matches("^downloaded 0, uploaded 0 to s3://rec/line/, skipped 0 .*, " .. #m .. " failed %(upload%); ",
      r.stdout)
    local json = { "-o", "json" }
    for _, a in ipairs(args) do json[#json + 1] = a end
    r = run(json)
    assert.equal(5, r.code, r.stderr)
    local summary = cjson.decode(r.stdout)
    assert.same({ 0, 0, #m, 0, #m }, { summary.downloaded, summary.uploaded, summary.failed, summary.failed_download,
                                       summary.failed_upload })
    assert.equal(#m, #summary.failures)
    json[2] = "csv"
    r = run(json)
    assert.equal(5, r.code, r.stderr)
    local rows = cli.parse_csv(r.stdout)
    assert.same({ "uploaded", "downloaded", "skipped", "no_recording", "failed", "bytes", "dir", "failed_download",
                  "failed_upload" }, rows[1])
    assert.same({ "0", "0", "0", tostring(#m), "0", tostring(#m) }, { rows[2][1], rows[2][2], rows[2][3],
                                                                     rows[2][5], rows[2][8], rows[2][9] })
    store:fault(nil)
    r = run(args)
    assert.equal(0, r.code, r.stderr)
    assert.matches("^downloaded 0, uploaded " .. #m .. " to s3://rec/line/, .*, 0 failed; ", r.stdout)
  end)

  it("refuses bad upload settings before anything is sent (exit 2), naming the flag or variable", function()
    local dir = cli.tmpdir()
    local base = { "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", dir }
    local function with(extra, e)
      local args = {}
      for i, a in ipairs(base) do args[i] = a end
      for _, a in ipairs(extra) do args[#args + 1] = a end
      return run(args, { env = e })
    end
    local no_keys = cli.sim_env(sim, { AWS_REGION = "us-east-1" })
    local cases = {
      { { "--upload", "s3://rec/x/" }, no_keys, "needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the "
        .. "environment" },
      { { "--upload", "s3://rec/x/" }, cli.sim_env(sim, { AWS_ACCESS_KEY_ID = "AKID",
        AWS_SECRET_ACCESS_KEY = "a-secret-key" }),
        "needs %-%-region or AWS_REGION" },
      { { "--endpoint", store.endpoint }, env, "%-%-endpoint goes with %-%-upload" },
      { { "--no-keep-local" }, env, "%-%-no%-keep%-local goes with %-%-upload" },
      { { "--upload", "https://rec/x/" }, env, "%-%-upload must be s3://bucket/prefix/" },
      { { "--upload", "s3://rec/x/", "--endpoint", "ftp://x" }, env, "%-%-endpoint %(or AWS_ENDPOINT_URL%)" },
    }
    for _, c in ipairs(cases) do
      local r = with(c[1], c[2])
      assert.equal(2, r.code, r.stderr)
      assert.matches(c[3], r.stderr)
    end
    assert.equal(0, puts())
    assert.equal(0, #require("spec.helpers.jobs").tree(dir))
  end)

  it("--dry-run says how many it would upload", function()
    seed(4)
    local r = run({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", cli.tmpdir(), "--dry-run",
                    "--upload", "s3://rec/d/", "--endpoint", store.endpoint, "--path-style" })
    assert.equal(0, r.code, r.stderr)
    local d, u = r.stdout:match("^dry run: would download (%d+) %(size unknown%), upload (%d+), skip 0")
    assert.truthy(d and tonumber(d) >= 3, r.stdout)
    assert.equal(d, u)
    assert.equal(0, puts())
  end)

  it("doctor --upload: a signed HEAD of the bucket; a wrong secret, a missing bucket, no store each FAIL", function()
    local function doctor(extra, e)
      local args = { "doctor", "--endpoint", store.endpoint, "--path-style" }
      for _, a in ipairs(extra) do args[#args + 1] = a end
      return run(args, { env = e or env })
    end
    local r = doctor({ "--upload", "s3://rec/calls/" })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("ok    store        bucket rec at " .. store.endpoint:gsub("%p", "%%%0")
      .. " answered a signed HEAD with 200: uploads go to s3://rec/calls/", r.stdout)
    local heads = 0
    for _, q in ipairs(store:requests()) do
      if q.method == "HEAD" and q.path == "/rec" and q.status == 200 then heads = heads + 1 end
    end
    assert.equal(1, heads)

    local wrong = {}
    for k, v in pairs(env) do wrong[k] = v end
    wrong.AWS_SECRET_ACCESS_KEY = "not-the-" .. AWS_CANARY
    r = doctor({ "--upload", "s3://rec/calls/" }, wrong)
    assert.equal(4, r.code)
    assert.matches("FAIL  store        bucket rec at [^\n]* refused the signed HEAD %(HTTP 403%): check "
      .. "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", r.stdout)
    assert.is_nil(r.stdout:find("not-the-", 1, true))

    r = doctor({ "--upload", "s3://nobucket/" })
    assert.equal(4, r.code)
    assert.matches("FAIL  store        bucket nobucket at [^\n]*: no such bucket %(HTTP 404%)", r.stdout)

    r = run({ "doctor", "--upload", "s3://rec/", "--endpoint", "http://127.0.0.1:" .. require("spec.helpers.nginx")
              .refused_port(), "--path-style" })
    assert.equal(4, r.code)
    assert.matches("FAIL  store        no answer from http://127%.0%.0%.1:%d+", r.stdout)
    -- -o json: the store is one more check
    r = doctor({ "--upload", "s3://rec/calls/", "-o", "json" })
    assert.equal(0, r.code)
    local checks = cjson.decode(r.stdout)
    assert.same({ check = checks[#checks].check, status = checks[#checks].status }, { check = "store", status = "ok" })
  end)
end)
