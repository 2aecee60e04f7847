-- archive_recordings{ upload } with transport "ngx" inside nginx when the store misbehaves (issue #21.5, the
-- cosocket side of spec/integration/s3_faults_spec.lua): a wrong secret (403 SignatureDoesNotMatch), 404 no
-- bucket, 500 retried, 503 with Retry-After (waited as asked; longer than retry_after_max: failed), the
-- connection cut mid-body, a store slower than the timeout, and a store that would keep a truncated body (the
-- signed payload hash refuses it). Each time every recording's failure is listed, its local copy kept whole, no
-- object stored, and the next run (the fault cleared) uploads from the local copy without a second download.
-- Everything the runs report (summaries, errors, events, JSON log lines, manifests) is swept for the secret.
local sim = require "spec.helpers.sim"
local s3h = require "spec.helpers.s3"
local nginx = require "spec.helpers.nginx"
local j = require "spec.helpers.jobs"
local h = require "spec.helpers"
local core = require "clicktocall.core"
local storm = require "bench.storm"
local cjson = require("cjson").new()

local DAY = 86400
local SECRET = "CANARY-ngx/S3+Secret-" .. tostring(os.time())

-- One archive per request, with a client of its own: the body (JSON) says the window, the directory, the
-- client's options and the upload's. The answer holds the summary, every event and JSON log line, the
-- waits asked for (each really waited with ngx.sleep) and the time taken.
local APP = [[
server {
  listen 127.0.0.1:${port1};
  default_type application/json;
  location = /archive {
    content_by_lua_block {
      local cjson = require "cjson"
      ngx.req.read_body()
      local a = cjson.decode(ngx.req.get_body_data())
      local run = { sleeps = {}, events = {}, lines = {} }
      local co = { base_url = "${sim}", app_secret = "TEST", user_data = "${user_data}", transport = "ngx",
                   timeout = 5, retries = 2,
                   sleep = function(d) run.sleeps[#run.sleeps + 1] = d; ngx.sleep(d) end,
                   on_event = require("clicktocall.log").json(function(line) run.lines[#run.lines + 1] = line end,
                     { also = function(e)
                         local ok, s = pcall(cjson.encode, e)
                         run.events[#run.events + 1] = ok and s or tostring(e.type)
                       end }) }
      for k, v in pairs(a.client or {}) do co[k] = v end
      local c = assert(require("clicktocall").new(co))
      local u = { url = "s3://calls/ctc/", endpoint = "${endpoint}", region = "${region}",
                  access_key = "${access_key}", secret_key = "${secret_key}", path_style = true }
      for k, v in pairs(a.upload or {}) do u[k] = v end
      ngx.update_time()
      local t0 = ngx.now()
      local s, err = c:archive_recordings { start_time = a.from, end_time = a.to, dir = a.dir, upload = u }
      ngx.update_time()
      local out = { ok = s ~= nil, took = ngx.now() - t0, sleeps = run.sleeps, events = run.events,
                    lines = run.lines }
      if s then
        out.downloaded, out.uploaded, out.skipped, out.failed = s.downloaded, s.uploaded, s.skipped, {}
        for i, f in ipairs(s.failed) do
          out.failed[i] = { id = f.id, sessionId = f.sessionId, stage = f.stage, kind = f.err.kind,
                            status = f.err.status, message = f.err.message, retry_after = f.err.retry_after }
        end
      else
        out.kind, out.message = err.kind, err.message
      end
      ngx.say(cjson.encode(out))
    }
  }
}
]]

local sha = j.sha256

local manifest = j.manifest

describe("archive_recordings{ upload } inside nginx: the store's faults #integration #openresty", function()
  local s, store, app, http, dir
  local have_core = io.open("build/luajit/clicktocall/core.so") ~= nil
  local reported = {} -- everything the runs reported, swept for the secret at the end
  local runs = 0
  local forms = storm.canary_forms(SECRET)

  setup(function()
    if not have_core then return end
    s = assert(sim.start())
    store = assert(s3h.start { buckets = { "calls" }, secret_key = SECRET })
    local err
    app, err = nginx.start { http = APP, ports = 1, workers = 1,
      vars = { sim = s.base_url, user_data = s.user_data, endpoint = store.endpoint, region = store.region,
               access_key = store.access_key, secret_key = SECRET },
      lua_cpath = nginx.repo_root() .. "/build/luajit/?.so;" }
    assert(app, err)
    http = core.curl_transport()
  end)
  teardown(function()
    if http then http:close() end
    if app then app:stop() end
    if store then store:stop() end
    if s then s:stop() end
    if not have_core then return end
    local n = 0
    for _, v in ipairs(reported) do
      n = n + 1
      assert.is_false(storm.leaks(forms, v), "the secret key in: " .. v)
    end
    assert.is_true(n > 10 * runs, "the sweep saw " .. n .. " strings from " .. runs .. " runs")
  end)

  local function new_dir()
    dir = j.mkdtemp()
    j.shell("chmod 0777 '" .. dir .. "'")
  end
  before_each(function()
    if not have_core then return end
    s:reset()
    store:fault(nil)
    store:clear_requests()
    new_dir()
  end)
  after_each(function() if dir then j.rmtree(dir) end end)

  local function fresh()
    s:reset()
    store:clear_requests()
    j.rmtree(dir)
    new_dir()
  end

  local function recordings_fetched()
    local n = 0
    for _, r in ipairs(s:requests()) do if r.uri:find("^/recordings/") then n = n + 1 end end
    return n
  end

  -- One archive inside nginx of `n` fresh recordings (0: those seeded already) -> run (the answer, with
  -- run.puts: the endpoint's PUTs)
  local function archive(n, upload_over, client_over)
    local now = os.time()
    if n > 0 then
      s:post("/_sim/seed", { count = n, start_time = now - DAY + 600, end_time = now - 60, recorded = true })
    end
    local res = assert(http:perform { method = "POST", url = app:url("/archive"), timeout = 120,
      headers = { ["Content-Type"] = "application/json" },
      body = cjson.encode { from = now - DAY, to = now, dir = dir, upload = upload_over or nil,
                            client = client_over or nil } })
    assert.equal(200, res.status, res.body)
    local run = cjson.decode(res.body)
    runs = runs + 1
    for _, v in ipairs(h.strings { res.body, run, j.read(dir .. "/manifest.jsonl") }) do
      reported[#reported + 1] = v
    end
    assert.is_true(run.ok, run.message)
    run.puts = {}
    for _, r in ipairs(store:requests()) do
      if r.method == "PUT" then run.puts[#run.puts + 1] = r end
    end
    return run
  end

  -- every recording failed at the upload as `kind` (and `status`, S3's `code`), each local copy whole, no
  -- `uploaded`, no object (unless `may_store`: a slow store may keep what it received after the client gave up)
  local function all_failed(run, n, kind, status, code, may_store)
    assert.same({ n, 0, n }, { run.downloaded, run.uploaded, #run.failed })
    for _, f in ipairs(run.failed) do
      assert.equal(kind, f.kind, f.message)
      assert.equal("upload", f.stage) -- the recording whole locally, not in the store
      if status then assert.equal(status, f.status) end
      if code then assert.matches("%(" .. code .. "%)", f.message) end
      assert.truthy(f.id and f.sessionId)
    end
    local m, count = manifest(dir)
    assert.equal(n, count)
    for _, e in pairs(m) do
      assert.is_nil(e.uploaded)
      assert.equal(e.sha256, sha(assert(j.read(dir .. "/" .. e.file))))
      if not may_store then assert.is_nil(store:object("calls", "ctc/" .. e.file)) end
    end
  end

  -- the fault cleared, the next run uploads every local copy and downloads nothing again
  local function next_run_uploads(n)
    store:fault(nil)
    local fetched = recordings_fetched()
    local run = archive(0)
    assert.same({ 0, n, 0 }, { run.downloaded, run.uploaded, #run.failed })
    assert.equal(fetched, recordings_fetched())
    local m, count = manifest(dir)
    assert.equal(n, count)
    for _, e in pairs(m) do
      assert.equal("ctc/" .. e.file, e.uploaded.key)
      assert.equal(e.sha256, sha(assert(store:object("calls", e.uploaded.key))))
    end
  end

  it("403 SignatureDoesNotMatch (a wrong secret key): not retried, failed, copies kept, uploaded next run",
     function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    local run = archive(3, nil, nil)
    assert.same({ 3, 3 }, { run.downloaded, run.uploaded }) -- the right key works
    fresh()
    run = archive(3, { secret_key = "not-the-" .. SECRET })
    all_failed(run, 3, "http", 403, "SignatureDoesNotMatch")
    assert.equal(3, #run.puts)
    assert.same({}, run.sleeps)
    next_run_uploads(3)
  end)

  it("404 NoSuchBucket: not retried, failed, uploaded next run", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    store:fault("no_bucket", { method = "PUT" })
    local run = archive(2)
    all_failed(run, 2, "http", 404, "NoSuchBucket")
    assert.equal(2, #run.puts)
    assert.same({}, run.sleeps)
    next_run_uploads(2)
  end)

  it("500: retried into an upload; a store that keeps failing fails each recording after the retries", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    store:fault("error500", { method = "PUT", times = 1 })
    local run = archive(2)
    assert.same({ 2, 2, 0 }, { run.downloaded, run.uploaded, #run.failed })
    assert.equal(3, #run.puts)
    assert.equal(1, #run.sleeps)
    store:fault("error500", { method = "PUT" })
    fresh()
    run = archive(2)
    all_failed(run, 2, "http", 500, "InternalError")
    assert.equal(2 * 3, #run.puts) -- the first try and two retries each
    next_run_uploads(2)
  end)

  it("503 with Retry-After: waited as asked, then uploaded; longer than retry_after_max: failed", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    store:fault("retry_after", { method = "PUT", seconds = 2, times = 1 })
    local run = archive(1)
    assert.same({ 1, 1, 0 }, { run.downloaded, run.uploaded, #run.failed })
    assert.same({ 2 }, run.sleeps)
    assert.equal(2, #run.puts)
    -- the second PUT started only after the asked delay (the store's own clock)
    assert.is_true(run.puts[2].started - run.puts[1].finished >= 1.9,
                   ("retried after %.2f s"):format(run.puts[2].started - run.puts[1].finished))
    local retried = 0
    for _, line in ipairs(run.events) do
      local e = cjson.decode(line)
      if e.type == "retry" and e.op == "upload" then
        retried = retried + 1
        assert.same({ 503, 2 }, { e.status, e.delay })
      end
    end
    assert.equal(1, retried)
    store:fault("retry_after", { method = "PUT", seconds = 120 })
    fresh()
    run = archive(2, nil, { retry_after_max = 30 })
    all_failed(run, 2, "http", 503, "SlowDown")
    for _, f in ipairs(run.failed) do assert.equal(120, f.retry_after) end
    assert.same({}, run.sleeps)
    assert.equal(2, #run.puts)
    next_run_uploads(2)
  end)

  it("the connection cut mid-body: kind network, nothing stored, copies kept, uploaded next run", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    store:fault("cut", { method = "PUT", after = 1000 })
    local run = archive(2, nil, { retries = 1 })
    all_failed(run, 2, "network")
    assert.equal(4, #run.puts)
    for _, p in ipairs(run.puts) do assert.same({ 1000, "cut" }, { p.bytes, p.code }) end
    next_run_uploads(2)
  end)

  it("a store slower than the timeout: kind timeout, copies kept, uploaded next run", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    store:fault("slow", { method = "PUT", ms = 2500 })
    local run = archive(2, nil, { retries = 0, download_timeout = 1 })
    assert.is_true(run.took < 2.4 * 2, "gave up at the timeout: " .. run.took)
    all_failed(run, 2, "timeout", nil, nil, true)
    -- the store finishes them later (it keeps what it received); wait for that before the next run
    assert(nginx.wait_for(function()
      local n = 0
      for _, r in ipairs(store:requests()) do
        if r.method == "PUT" and r.finished then n = n + 1 end
      end
      return n == 2
    end, 10, "the slow store to finish"))
    for _, e in pairs(manifest(dir)) do os.remove(store.dir .. "/calls/" .. s3h.file_name("ctc/" .. e.file)) end
    next_run_uploads(2)
  end)

  it("a store keeping a truncated body cannot: the signed payload hash refuses it (400), uploaded next run",
     function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    store:fault("accept_short", { method = "PUT" })
    local run = archive(2)
    all_failed(run, 2, "http", 400, "XAmzContentSHA256Mismatch")
    assert.equal(2, #run.puts) -- a 400 is not retried
    for _, p in ipairs(run.puts) do assert.equal("XAmzContentSHA256Mismatch", p.code) end
    next_run_uploads(2)
  end)
  it("a large upload refused before its body is read (403, then closed): the store's answer, not the broken pipe",
     function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    -- the endpoint drains a refused body up to 16 MiB; past that it answers and closes, as S3 does
    local now = os.time()
    s:post("/_sim/seed", { count = 1, start_time = now - DAY + 600, end_time = now - 60, recorded = true,
                           recording_bytes = 17 * 1024 * 1024 })
    store:fault("forbidden", { method = "PUT" })
    local run = archive(0)
    all_failed(run, 1, "http", 403, "AccessDenied")
    assert.equal(1, #run.puts) -- a 403 is not retried (a broken pipe would be, twice)
    assert.same({}, run.sleeps)
    next_run_uploads(1)
  end)
end)
