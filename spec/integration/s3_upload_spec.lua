-- archive_recordings{ upload } against the simulator and the signature-checking S3 endpoint
-- (spec/helpers/s3.lua: every request's SigV4 signature and payload hash verified with botocore's signer):
-- libcurl at concurrency 8 (uploads in flight at once), "ngx" inside nginx, objects read back and their
-- SHA-256 compared (also through Debian's awscli), re-runs, keep_local = false, a refusing store, a
-- kill -9 between the PUT and its manifest line (the next run uploads again), and virtual-hosted addressing
-- (path_style = false against http://localhost:<port>: the bucket in the Host, <bucket>.localhost).
local sim = require "spec.helpers.sim"
local s3h = require "spec.helpers.s3"
local nginx = require "spec.helpers.nginx"
local j = require "spec.helpers.jobs"
local h = require "spec.helpers"
local core = require "clicktocall.core"
local clicktocall = require "clicktocall"
local cjson = require("cjson").new()

local DAY = 86400
-- plain Lua 5.1 cannot yield across pcall: no scheduler there, the uploads go one after another
local SEQUENTIAL = _VERSION == "Lua 5.1" and not rawget(_G, "jit")

local sha = j.sha256

local function manifest(dir) return j.manifest(dir, true) end -- a kill -9 spec below

local function puts(store)
  local out = {}
  for _, r in ipairs(store:requests()) do
    if r.method == "PUT" then out[#out + 1] = r end
  end
  return out
end

-- the most PUTs the endpoint had open at one moment
local function most_at_once(list)
  local edges = {}
  for _, r in ipairs(list) do
    edges[#edges + 1] = { r.started, 1 }
    edges[#edges + 1] = { r.finished, -1 }
  end
  table.sort(edges, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  local n, most = 0, 0
  for _, e in ipairs(edges) do
    n = n + e[2]
    most = math.max(most, n)
  end
  return most
end

local function no_secret(secret, v)
  for _, s in ipairs(h.strings(v)) do
    assert.is_nil(s:find(secret, 1, true), "the secret key in: " .. s)
  end
end

describe("archive_recordings{ upload } against the S3 endpoint #integration", function()
  local s, store, dir
  setup(function()
    s = assert(sim.start())
    store = assert(s3h.start { buckets = { "calls" } })
  end)
  teardown(function()
    if store then store:stop() end
    if s then s:stop() end
  end)
  before_each(function()
    s:reset()
    store:fault(nil)
    store:options { latency_ms = 0 }
    store:clear_requests()
    dir = j.mkdtemp()
  end)
  after_each(function() j.rmtree(dir) end)

  local function upload(over)
    local u = { url = "s3://calls/ctc/", endpoint = store.endpoint, region = store.region,
                access_key = store.access_key, secret_key = store.secret_key, path_style = true }
    for k, v in pairs(over or {}) do u[k] = v end
    return u
  end

  it("uploads at concurrency 8 over libcurl, in flight at once; the objects are the files; a re-run skips", function()
    local now = os.time()
    s:post("/_sim/seed", { count = 24, start_time = now - DAY, end_time = now - 60, recorded = true })
    store:options { latency_ms = 30 }
    local c = s:client()
    local args = { start_time = now - DAY, end_time = now, dir = dir, concurrency = 8, upload = upload() }
    local summary = assert(c:archive_recordings(args))
    assert.same({}, summary.failed)
    assert.same({ 24, 24 }, { summary.downloaded, summary.uploaded })
    local list = puts(store)
    assert.equal(24, #list)
    for _, r in ipairs(list) do assert.equal(200, r.status) end
    if not SEQUENTIAL then
      assert.is_true(most_at_once(list) >= 4, "uploads were not in flight at once")
    end
    local m, n = manifest(dir)
    assert.equal(24, n)
    for _, e in pairs(m) do
      assert.equal("ctc/" .. e.file, e.uploaded.key)
      local obj = assert(store:object("calls", e.uploaded.key), e.uploaded.key)
      assert.equal(e.sha256, sha(obj))
      assert.equal(j.read(dir .. "/" .. e.file), obj)
    end
    -- read back by awscli too (an independent client)
    local _, any = next(m)
    local ok, out = store:aws("s3 cp " .. "s3://calls/" .. any.uploaded.key .. " " .. dir .. "/back.wav")
    assert.is_true(ok, out)
    assert.equal(any.sha256, sha(j.read(dir .. "/back.wav")))
    os.remove(dir .. "/back.wav")
    local again = assert(c:archive_recordings(args))
    assert.same({ 0, 0, 24 }, { again.downloaded, again.uploaded, again.skipped })
    assert.equal(24, #puts(store))
  end)

  it("removes the local copies with keep_local = false and never fetches them again", function()
    local now = os.time()
    s:post("/_sim/seed", { count = 5, start_time = now - DAY, end_time = now - 60, recorded = true })
    local c = s:client()
    local args = { start_time = now - DAY, end_time = now, dir = dir, upload = upload { keep_local = false } }
    assert.equal(5, assert(c:archive_recordings(args)).uploaded)
    for _, e in pairs(manifest(dir)) do
      assert.equal("missing", core.file_kind(dir .. "/" .. e.file))
      assert.equal(e.sha256, sha(assert(store:object("calls", e.uploaded.key))))
    end
    local again = assert(c:archive_recordings(args))
    assert.same({ 0, 0, 5 }, { again.downloaded, again.uploaded, again.skipped })
    local r = assert(clicktocall.verify_archive { dir = dir })
    assert.same({ 0, 5, 0 }, { r.ok, r.uploaded, r.missing })
  end)

  it("keeps the local copies when the store refuses, and uploads them next run without downloading", function()
    local now = os.time()
    s:post("/_sim/seed", { count = 4, start_time = now - DAY, end_time = now - 60, recorded = true })
    local c = s:client()
    local args = { start_time = now - DAY, end_time = now, dir = dir, upload = upload { keep_local = false } }
    store:fault("forbidden")
    local summary = assert(c:archive_recordings(args))
    assert.same({ 4, 0, 4 }, { summary.downloaded, summary.uploaded, #summary.failed })
    for _, f in ipairs(summary.failed) do assert.same({ "http", 403 }, { f.err.kind, f.err.status }) end
    for _, e in pairs(manifest(dir)) do
      assert.is_nil(e.uploaded)
      assert.equal("file", core.file_kind(dir .. "/" .. e.file))
    end
    store:fault(nil)
    local recordings = 0
    for _, r in ipairs(s:requests()) do if r.uri:find("^/recordings/") then recordings = recordings + 1 end end
    local again = assert(c:archive_recordings(args))
    assert.same({ 0, 4, 0 }, { again.downloaded, again.uploaded, #again.failed })
    local after = 0
    for _, r in ipairs(s:requests()) do if r.uri:find("^/recordings/") then after = after + 1 end end
    assert.equal(recordings, after)
  end)

  it("is refused with a wrong secret key (SignatureDoesNotMatch), the key in no error or event", function()
    local now = os.time()
    s:post("/_sim/seed", { count = 2, start_time = now - DAY, end_time = now - 60, recorded = true })
    local events = {}
    local c = s:client { on_event = function(e) events[#events + 1] = e end }
    local wrong = "WRONG/" .. store.secret_key
    local summary = assert(c:archive_recordings { start_time = now - DAY, end_time = now, dir = dir,
                                                  upload = upload { secret_key = wrong } })
    assert.equal(2, #summary.failed)
    assert.same({ "http", 403 }, { summary.failed[1].err.kind, summary.failed[1].err.status })
    assert.matches("SignatureDoesNotMatch", summary.failed[1].err.message)
    no_secret(wrong, { summary, events, j.read(dir .. "/manifest.jsonl") })
  end)

  it("uploads again after a kill -9 between the PUT and its manifest line (the same bytes, never a loss)", function()
    local now = os.time()
    s:post("/_sim/seed", { count = 3, start_time = now - DAY, end_time = now - 60, recorded = true })
    -- the child kills itself once the store answered its first PUT: before `uploaded` is written
    local script = j.script(dir, "child.lua", ([[
local clicktocall = require "clicktocall"
local core = require "clicktocall.core"
local c = assert(clicktocall.new { base_url = %q, app_secret = %q, user_data = %q,
  on_event = function(e)
    if e.op == "upload" and e.type == "response" and e.status == 200 then
      os.execute(("kill -9 %%d"):format(core.getpid()))
    end
  end })
c:archive_recordings { start_time = %d, end_time = %d, dir = %q, concurrency = 1, upload = {
  url = "s3://calls/ctc/", endpoint = %q, region = %q, access_key = %q, secret_key = %q, path_style = true } }
]]):format(s.base_url, s.secret, s.user_data, now - DAY, now, dir .. "/out", store.endpoint, store.region,
           store.access_key, store.secret_key))
    core.mkdir(dir .. "/out")
    j.shell(("%s '%s' >/dev/null 2>&1"):format(j.LUA, script))
    local list = puts(store)
    assert.equal(1, #list)
    local first = list[1].key
    local m = manifest(dir .. "/out")
    for _, e in pairs(m) do assert.is_nil(e.uploaded) end -- killed before its line
    local c = s:client()
    local summary = assert(c:archive_recordings { start_time = now - DAY, end_time = now, dir = dir .. "/out",
                                                  upload = upload() })
    assert.same({}, summary.failed)
    assert.equal(3, summary.uploaded)
    local again = 0
    for _, r in ipairs(puts(store)) do if r.key == first then again = again + 1 end end
    assert.equal(2, again) -- the same key PUT twice: an overwrite with the same bytes
    for _, e in pairs(manifest(dir .. "/out")) do
      assert.equal(e.sha256, sha(assert(store:object("calls", e.uploaded.key))))
    end
  end)
end)

describe("t:upload over libcurl against the S3 endpoint #integration", function()
  local store, dir
  local s3 = require "clicktocall.s3"
  setup(function() store = assert(s3h.start { buckets = { "calls" } }) end)
  teardown(function() if store then store:stop() end end)
  before_each(function()
    store:fault(nil)
    store:clear_requests()
    dir = j.mkdtemp()
  end)
  after_each(function() j.rmtree(dir) end)

  local function cfg()
    return assert(s3.config { url = "s3://calls/t/", endpoint = store.endpoint, region = store.region,
                              access_key = store.access_key, secret_key = store.secret_key, path_style = true })
  end

  -- a file of n pseudo-random bytes -> path, its SHA-256
  local function make_file(name, n)
    local parts, x = {}, 12345
    for i = 1, math.ceil(n / 4) do
      x = (x * 1103515245 + 12345) % 2147483648
      parts[i] = string.char(x % 256, math.floor(x / 256) % 256, math.floor(x / 65536) % 256,
                               math.floor(x / 16777216) % 128)
    end
    local bytes = table.concat(parts):sub(1, n)
    local path = dir .. "/" .. name
    j.write(path, bytes)
    return path, sha(bytes)
  end

  -- the process's open file descriptors
  -- this process's open descriptors, counted at rest: what dead objects of earlier tests held is closed first,
  -- so a collection during the test cannot make the count drop (seen on 5.1)
  local function fds()
    collectgarbage()
    collectgarbage()
    return #j.shell("ls /proc/" .. ("%d"):format(core.getpid()) .. "/fd"):gsub("[^\n]", "")
  end

  it("streams a file (3 MiB); a HEAD of the bucket and a POST on the same handle after it", function()
    local c = cfg()
    local path, hex = make_file("big.wav", 3 * 1024 * 1024 + 7)
    local t = core.curl_transport()
    local req = assert(s3.put_request(c, "t/big.wav", { file = path, size = 3 * 1024 * 1024 + 7, sha256 = hex }))
    local res = assert(t:upload(req))
    assert.equal(200, res.status)
    assert.is_string(res.headers.etag)
    assert.equal(hex, sha(assert(store:object("calls", "t/big.wav"))))
    local head = assert(t:perform(assert(s3.head_bucket_request(c))))
    assert.equal(200, head.status)
    -- libcurl's upload and no-body flags do not stick: this POST goes out as a POST
    local post = assert(t:perform { method = "POST", url = store.endpoint .. "/_s3/requests/clear", body = "{}",
                                    headers = { ["Content-Type"] = "application/json" } })
    assert.equal(200, post.status)
    t:close()
  end)

  it("fails with kind io, nothing sent, for a missing or short file, and leaks no descriptor", function()
    local c = cfg()
    local path, hex = make_file("a.wav", 1000)
    local t = core.curl_transport()
    local before = fds()
    for _, r in ipairs {
      assert(s3.put_request(c, "t/x", { file = dir .. "/none.wav", size = 10, sha256 = hex })),
      assert(s3.put_request(c, "t/x", { file = path, size = 1001, sha256 = hex })),
      assert(s3.put_request(c, "t/x", { file = dir, size = 0, sha256 = hex })),
    } do
      local res, err = t:upload(r)
      assert.is_nil(res)
      assert.same({ "io", false }, { err.kind, err.sent })
    end
    assert.equal(0, #store:requests())
    local res, err = t:upload { method = "PUT", url = store.endpoint .. "/calls/x" }
    assert.is_nil(res)
    assert.equal("argument", err.kind)
    assert.equal(before, fds())
    t:close()
  end)

  it("aborts a multi's upload whose file shrank after it started (kind io), and closes every file", function()
    local c = cfg()
    local before = fds()
    local m = assert(core.curl_multi {})
    local path, hex = make_file("shrinks.wav", 2 * 1024 * 1024)
    assert(m:add(1, assert(s3.put_request(c, "t/s", { file = path, size = 2 * 1024 * 1024, sha256 = hex }))))
    local other, ohex = make_file("whole.wav", 300000)
    assert(m:add(2, assert(s3.put_request(c, "t/w", { file = other, size = 300000, sha256 = ohex }))))
    j.shell("truncate -s 1000 '" .. path .. "'")
    local done = {}
    while m:count() > 0 do
      for _, d in ipairs(m:wait(1)) do done[d[1]] = d end
    end
    assert.is_nil(done[1][2])
    assert.equal("io", done[1][3].kind)
    assert.matches("ended before body_size", done[1][3].message)
    assert.equal(200, done[2][2].status)
    assert.is_nil(store:object("calls", "t/s"))
    -- a transfer still in flight when the multi closes: its file is closed too
    local late, lhex = make_file("late.wav", 200000)
    store:fault("slow", { ms = 2000 })
    assert(m:add(3, assert(s3.put_request(c, "t/l", { file = late, size = 200000, sha256 = lhex }))))
    m:wait(0.05)
    m:close()
    assert.equal(before, fds())
  end)

  it("uploads virtual-hosted (path_style = false): the bucket in the Host, <bucket>.localhost:<port>", function()
    local now = os.time()
    local s = assert(sim.start())
    local ok, e = pcall(function()
      s:post("/_sim/seed", { count = 3, start_time = now - DAY, end_time = now - 60, recorded = true })
      local up = { url = "s3://calls/vh/", endpoint = store.vhost_endpoint, region = store.region,
                   access_key = store.access_key, secret_key = store.secret_key, path_style = false }
      local r = assert(s:client():archive_recordings { start_time = now - DAY, end_time = now, dir = dir,
                                                         upload = up })
      assert.same({ 3, 3, 0 }, { r.downloaded, r.uploaded, #r.failed })
      local host = "calls.localhost:" .. store.port
      local list = puts(store)
      assert.equal(3, #list)
      for _, p in ipairs(list) do
        -- addressed by the Host, signed over it (the endpoint checked with botocore), the path the key alone
        assert.same({ 200, host, "calls" }, { p.status, p.host, p.bucket })
        assert.matches("^/vh/", p.path)
      end
      for _, m in pairs(manifest(dir)) do
        assert.equal("vh/" .. m.file, m.uploaded.key)
        assert.equal(m.sha256, sha(assert(store:object("calls", m.uploaded.key))))
      end
      -- read back path-style by awscli (an independent client)
      local _, any = next((manifest(dir)))
      local aok, out = store:aws("s3 cp s3://calls/" .. any.uploaded.key .. " " .. dir .. "/back.wav")
      assert.is_true(aok, out)
      assert.equal(any.sha256, sha(j.read(dir .. "/back.wav")))
      -- the bucket's HEAD (doctor's check) virtual-hosted too; a bucket the store lacks is its 404
      local t = core.curl_transport()
      local head = assert(t:perform(assert(s3.head_bucket_request(assert(s3.config(up))))))
      assert.equal(200, head.status)
      up.url = "s3://nobucket/vh/"
      head = assert(t:perform(assert(s3.head_bucket_request(assert(s3.config(up))))))
      assert.equal(404, head.status)
      t:close()
    end)
    s:stop()
    assert(ok, e)
  end)

  it("maps the store's faults: 503 Retry-After retried, a cut connection network, a slow store timeout", function()
    local now = os.time()
    local s = assert(sim.start())
    local ok, e = pcall(function()
      s:post("/_sim/seed", { count = 1, start_time = now - DAY, end_time = now - 60, recorded = true })
      local up = { url = "s3://calls/f/", endpoint = store.endpoint, region = store.region,
                   access_key = store.access_key, secret_key = store.secret_key, path_style = true }
      local args = { start_time = now - DAY, end_time = now, dir = dir, upload = up }
      store:fault("retry_after", { seconds = 1, times = 1 })
      local c = s:client { sleep = core.sleep }
      local r = assert(c:archive_recordings(args))
      assert.same({ 1, 0 }, { r.uploaded, #r.failed })
      local d2 = dir .. "/cut"
      core.mkdir(d2)
      store:fault("cut", { after = 1000 })
      args.dir = d2
      r = assert(c:archive_recordings(args))
      assert.equal(1, #r.failed)
      assert.equal("network", r.failed[1].err.kind)
      store:fault("slow", { ms = 3000 })
      c = s:client { download_timeout = 1, retries = 0 }
      r = assert(c:archive_recordings(args))
      assert.equal(1, #r.failed)
      assert.equal("timeout", r.failed[1].err.kind)
      store:fault(nil)
    end)
    s:stop()
    assert(ok, e)
  end)
end)

local APP = [[
init_worker_by_lua_block {
  package.loaded["app.client"] = assert(require("clicktocall").new {
    base_url = "${sim}", app_secret = "TEST", user_data = "${user_data}", transport = "ngx", timeout = 5 })
}
server {
  listen 127.0.0.1:${port1};
  default_type application/json;
  location = /archive {
    content_by_lua_block {
      local a = ngx.req.get_uri_args()
      local s, err = package.loaded["app.client"]:archive_recordings {
        start_time = tonumber(a.from), end_time = tonumber(a.to), dir = a.dir, concurrency = tonumber(a.n),
        upload = { url = "s3://calls/ngx/", endpoint = "${endpoint}", region = "${region}",
                   access_key = "${access_key}", secret_key = "${secret_key}", path_style = true } }
      ngx.say(require("cjson").encode(s and { ok = true, downloaded = s.downloaded, uploaded = s.uploaded,
        skipped = s.skipped, failed = #s.failed, first = s.failed[1] and s.failed[1].err.message }
        or { ok = false, kind = err.kind, message = err.message }))
    }
  }
  location = /short {
    content_by_lua_block {
      local s3 = require "clicktocall.s3"
      local t = assert(require("clicktocall.transport.ngx").new())
      local a = ngx.req.get_uri_args()
      local cfg = assert(s3.config { url = "s3://calls/ngx/", endpoint = "${endpoint}", region = "${region}",
        access_key = "${access_key}", secret_key = "${secret_key}", path_style = true })
      local req = assert(s3.put_request(cfg, "ngx/short.bin", { file = a.file, size = tonumber(a.size),
                                                                 sha256 = s3.EMPTY_SHA256 }))
      local res, err = t:upload(req)
      local nores, noerr = t:upload { method = "PUT", url = req.url, headers = req.headers, body_file = a.file }
      ngx.say(require("cjson").encode { status = res and res.status, kind = err and err.kind,
        message = err and err.message, sent = err and err.sent, bad = noerr and noerr.kind, nores = nores })
    }
  }
}
]]

describe("archive_recordings{ upload } inside nginx (transport \"ngx\") #integration #openresty", function()
  local s, store, app, http, dir
  local have_core = io.open("build/luajit/clicktocall/core.so") ~= nil

  setup(function()
    if not have_core then return end
    s = assert(sim.start())
    store = assert(s3h.start { buckets = { "calls" } })
    local err
    app, err = nginx.start { http = APP, ports = 1, workers = 1,
      vars = { sim = s.base_url, user_data = s.user_data, endpoint = store.endpoint, region = store.region,
               access_key = store.access_key, secret_key = store.secret_key },
      lua_cpath = nginx.repo_root() .. "/build/luajit/?.so;" }
    assert(app, err)
    http = core.curl_transport()
  end)
  teardown(function()
    if http then http:close() end
    if app then app:stop() end
    if store then store:stop() end
    if s then s:stop() end
  end)
  before_each(function()
    dir = j.mkdtemp()
    j.shell("chmod 0777 '" .. dir .. "'")
  end)
  after_each(function() j.rmtree(dir) end)

  it("uploads with cosockets (the file sent in chunks), the objects are the files, a re-run skips", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    local now = os.time()
    s:reset()
    s:post("/_sim/seed", { count = 6, start_time = now - DAY, end_time = now - 60, recorded = true,
                           recording_bytes = 250000 })
    local q = ("/archive?from=%d&to=%d&n=4&dir=%s"):format(now - DAY, now, dir)
    local res = assert(http:perform { method = "GET", url = app:url(q), timeout = 120 })
    local r = cjson.decode(res.body)
    assert.is_true(r.ok, r.message)
    assert.same({ 6, 6, 0 }, { r.downloaded, r.uploaded, r.failed }, r.first)
    for _, e in pairs(manifest(dir)) do
      assert.equal("ngx/" .. e.file, e.uploaded.key)
      assert.equal(e.sha256, sha(assert(store:object("calls", e.uploaded.key))))
    end
    res = assert(http:perform { method = "GET", url = app:url(q), timeout = 120 })
    r = cjson.decode(res.body)
    assert.same({ 0, 0, 6 }, { r.downloaded, r.uploaded, r.skipped })
  end)

  it("fails an upload whose file ends before body_size with kind io, and refuses one without body_size", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    j.write(dir .. "/short.bin", string.rep("x", 1000))
    local res = assert(http:perform { method = "GET", timeout = 30,
                                      url = app:url("/short?size=200000&file=" .. dir .. "/short.bin") })
    local r = cjson.decode(res.body)
    assert.same({ "io", true, "argument" }, { r.kind, r.sent, r.bad }, res.body)
    assert.matches("ended before body_size", r.message)
    assert.is_nil(store:object("calls", "ngx/short.bin"))
  end)
end)
