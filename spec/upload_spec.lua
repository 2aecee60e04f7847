-- archive_recordings{ upload = {...} } (issue #21) with a transport function: clicktocall.s3's settings and
-- signed requests, and the archive's order (download, durable, PUT, manifest line with `uploaded`, local copy
-- removed). The fake store below recomputes every signature with core.sigv4_sign and hashes the file it
-- streams, as a real store does; spec/s3_upload_spec.lua runs the same against a signature-checking endpoint.
local j = require "spec.helpers.jobs"
local clicktocall = require "clicktocall"
local core = require "clicktocall.core"
local json = require "clicktocall.json"
local mock = require "clicktocall.mock"
local s3 = require "clicktocall.s3"

local DAY = 86400
local AK, SK = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzEXAMPLEKEY"
local TOKEN = "FQoGZXIvYXdzEXAMPLEtoken"

-- "YYYYMMDDTHHMMSSZ" -> Unix seconds (days from the civil date, no time zone involved)
local function amz_epoch(s)
  local y, m, d, hh, mm, ss = s:match("^(%d%d%d%d)(%d%d)(%d%d)T(%d%d)(%d%d)(%d%d)Z$")
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  return days * DAY + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
end

local function sha_file(path, limit)
  local f = assert(io.open(path, "rb"))
  local h, n = core.sha256(), 0
  while n < limit do
    local chunk = f:read(math.min(65536, limit - n))
    if not chunk then break end
    n = n + #chunk
    h:update(chunk)
  end
  f:close()
  return h:hex(), n
end

-- A store behind a transport function: checks each PUT's signature (recomputed) and payload hash (the file
-- streamed), keeps the objects' SHA-256 by key. store.fault = status | "raise" | "error" for the next PUTs.
local function new_store(opts)
  opts = opts or {}
  local store = { objects = {}, puts = {}, refused = {} }
  function store.put(req)
    store.puts[#store.puts + 1] = req
    assert(req.body == nil, "an upload has no request.body")
    assert.equal("PUT", req.method)
    local h = req.headers
    local hd = assert(core.sigv4_sign {
      method = "PUT", url = req.url, payload_hash = h["x-amz-content-sha256"], region = opts.region or "us-east-1",
      access_key = AK, secret_key = SK, session_token = opts.token, time = amz_epoch(h["x-amz-date"]),
    })
    if hd.authorization ~= h.authorization then
      store.refused[#store.refused + 1] = "SignatureDoesNotMatch"
      return { status = 403, headers = {}, body = "<Error><Code>SignatureDoesNotMatch</Code></Error>" }
    end
    if store.fault == "error" then
      return nil, "connection reset by the store (" .. SK .. ")"
    elseif store.fault == "raise" then
      error("the store's transport broke")
    elseif store.fault then
      return { status = store.fault, headers = {}, body = "<Error><Code>InternalError</Code></Error>" }
    end
    local hex, n = sha_file(req.body_file, req.body_size)
    if n ~= req.body_size or hex ~= h["x-amz-content-sha256"] then
      store.refused[#store.refused + 1] = "XAmzContentSHA256Mismatch"
      return { status = 400, headers = {}, body = "<Error><Code>XAmzContentSHA256Mismatch</Code></Error>" }
    end
    local key = req.url:match("^https?://[^/]+/(.*)$")
    store.objects[key] = hex
    return { status = 200, headers = { ETag = '"' .. hex:sub(1, 32) .. '"' }, body = "" }
  end
  return store
end

local function setup(opts)
  opts = opts or {}
  local provider = mock.new {}
  local store = new_store(opts)
  local events = {}
  local client = assert(clicktocall.new {
    base_url = "http://mock", app_secret = "TEST", user_data = j.USER_DATA, sleep = provider.sleep, retries = 1,
    on_event = function(e) events[#events + 1] = e end,
    transport = function(req)
      if req.body_file then
        return store.put(req)
      end
      return provider.transport(req)
    end,
  })
  local now = os.time()
  provider:seed_records { { callEndTime = now - 3600 }, { callEndTime = now - 2 * DAY },
                         { callEndTime = now - 3 * DAY } }
  return client, provider, store, events, now
end

local function upload(over)
  local u = { url = "s3://recordings/ctc/", endpoint = "http://127.0.0.1:9000", region = "us-east-1",
              access_key = AK, secret_key = SK, path_style = true }
  for k, v in pairs(over or {}) do
    if v == "<nil>" then v = nil end
    u[k] = v
  end
  return u
end

-- id -> the last manifest line of each id
local function manifest(dir)
  local out = {}
  for _, line in ipairs(j.lines(dir .. "/manifest.jsonl")) do
    local e = json.decode(line)
    out[tostring(e.id)] = e
  end
  return out
end

local function no_secret(v)
  for _, s in ipairs(require("spec.helpers").strings(v)) do
    assert.is_nil(s:find(SK, 1, true), "the secret key in: " .. s)
    assert.is_nil(s:find(TOKEN, 1, true), "the session token in: " .. s)
  end
end

describe("clicktocall.s3", function()
  it("checks the settings: err.field names the field, kind argument, the secret in no sentence", function()
    local cases = {
      { "upload", "not a table" },
      { "upload.url", upload { url = "<nil>" } },
      { "upload.url", upload { url = "https://recordings/" } },
      { "upload.url", upload { url = "s3://bad bucket/x/" } },
      { "upload.region", upload { region = "<nil>" } },
      { "upload.region", upload { region = "us east" } },
      { "upload.access_key", upload { access_key = "" } },
      { "upload.secret_key", upload { secret_key = "<nil>" } },
      { "upload.session_token", upload { session_token = 42 } },
      { "upload.path_style", upload { path_style = "yes" } },
      { "upload.keep_local", upload { keep_local = 0 } },
      { "upload.endpoint", upload { endpoint = "ftp://127.0.0.1" } },
      { "upload.endpoint", upload { endpoint = "http://127.0.0.1:9000/path" } },
      { "upload.secret", upload { secret = SK } },
    }
    for _, c in ipairs(cases) do
      local cfg, err = s3.config(c[2])
      assert.is_nil(cfg, c[1])
      assert.equal("argument", err.kind)
      assert.equal(c[1], err.field)
      assert.is_false(err.sent)
      no_secret(err)
    end
  end)

  it("builds a signed PUT that streams the file: body_file, body_size, the file's SHA-256 signed", function()
    local cfg = assert(s3.config(upload { session_token = TOKEN }))
    assert.same({ "recordings", "ctc/", true, true }, { cfg.bucket, cfg.prefix, cfg.path_style, cfg.keep_local })
    local key = s3.key(cfg, "2026-12-06/a b.wav")
    assert.equal("ctc/2026-12-06/a b.wav", key)
    local sha = string.rep("ab", 32)
    local r = assert(s3.put_request(cfg, key, { file = "/tmp/x.wav", size = 42, sha256 = sha }, 1765000000))
    assert.equal("PUT", r.method)
    assert.equal("http://127.0.0.1:9000/recordings/ctc/2026-12-06/a%20b.wav", r.url)
    assert.same({ "/tmp/x.wav", 42 }, { r.body_file, r.body_size })
    assert.is_nil(r.body)
    assert.equal(sha, r.headers["x-amz-content-sha256"])
    assert.equal(TOKEN, r.headers["x-amz-security-token"])
    assert.equal("20251206T054640Z", r.headers["x-amz-date"])
    local again = core.sigv4_sign { method = "PUT", url = r.url, payload_hash = sha, region = "us-east-1",
                                    access_key = AK, secret_key = SK, session_token = TOKEN, time = 1765000000 }
    assert.equal(again.authorization, r.headers.authorization)
    for _, v in ipairs(require("spec.helpers").strings(r)) do assert.is_nil(v:find(SK, 1, true)) end
  end)

  it("addresses virtual-hosted by default, AWS's endpoint for the region when none is given", function()
    local cfg = assert(s3.config { url = "s3://recordings", region = "eu-west-1", access_key = AK, secret_key = SK })
    assert.equal("", cfg.prefix)
    local r = assert(s3.put_request(cfg, s3.key(cfg, "x.wav"), { file = "/x", size = 1, sha256 = s3.EMPTY_SHA256 }))
    assert.equal("https://recordings.s3.eu-west-1.amazonaws.com/x.wav", r.url)
    assert.equal("calls/", assert(s3.config(upload { url = "s3://b/calls" })).prefix)
    local head = assert(s3.head_bucket_request(cfg))
    assert.same({ "HEAD", "https://recordings.s3.eu-west-1.amazonaws.com/" }, { head.method, head.url })
    assert.equal(s3.EMPTY_SHA256, head.headers["x-amz-content-sha256"])
    local ps = assert(s3.head_bucket_request(assert(s3.config(upload()))))
    assert.equal("http://127.0.0.1:9000/recordings", ps.url)
  end)
end)

describe("archive_recordings{ upload } over a transport function", function()
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  it("downloads, then PUTs each file with its SHA-256 signed, then writes `uploaded` in the manifest", function()
    local client, _, store, events, now = setup { token = TOKEN }
    local s = assert(client:archive_recordings { start_time = now - 8 * DAY, end_time = now, dir = dir,
                                                 upload = upload { session_token = TOKEN } })
    assert.same({ 3, 3, 0 }, { s.downloaded, s.uploaded, #s.failed })
    assert.same({}, store.refused)
    local m = manifest(dir)
    local n = 0
    for _, e in pairs(m) do
      n = n + 1
      assert.equal("ctc/" .. e.file, e.uploaded.key)
      assert.equal(e.sha256, store.objects["recordings/" .. e.uploaded.key])
      assert.equal(e.sha256:sub(1, 32), e.uploaded.etag)
      assert.is_true(math.abs(e.uploaded.at - os.time()) < 60)
      assert.equal("file", core.file_kind(dir .. "/" .. e.file)) -- keep_local defaults to true
    end
    assert.equal(3, n)
    -- the manifest: a line without `uploaded` (the download), then one with it, keys in a fixed order
    local lines = j.lines(dir .. "/manifest.jsonl")
    assert.equal(6, #lines)
    assert.matches('"archived_at":%d+,"uploaded":{"key":"ctc/[^"]+","etag":"%x+","at":%d+}}$', lines[#lines])
    local r = assert(clicktocall.verify_archive { dir = dir })
    assert.same({ 3, 0, 0 }, { r.ok, r.missing, r.changed })
    no_secret { s, events, j.read(dir .. "/manifest.jsonl") }
  end)

  it("skips what was uploaded on a re-run, even with the local copy gone (keep_local = false)", function()
    local client, provider, store, _, now = setup()
    local args = { start_time = now - 8 * DAY, end_time = now, dir = dir, upload = upload { keep_local = false } }
    local s = assert(client:archive_recordings(args))
    assert.same({ 3, 3 }, { s.downloaded, s.uploaded })
    for _, e in pairs(manifest(dir)) do
      assert.equal("missing", core.file_kind(dir .. "/" .. e.file))
    end
    local downloads, puts = j.count(provider, "download"), #store.puts
    s = assert(client:archive_recordings(args))
    assert.same({ 0, 0, 3 }, { s.downloaded, s.uploaded, s.skipped })
    assert.same({ downloads, puts }, { j.count(provider, "download"), #store.puts })
    local r = assert(clicktocall.verify_archive { dir = dir })
    assert.same({ 0, 3, 0 }, { r.ok, r.uploaded, r.missing })
  end)

  it("makes a failed upload that recording's failure, keeps the local copy, and uploads it next run", function()
    local client, provider, store, _, now = setup()
    local args = { start_time = now - 8 * DAY, end_time = now, dir = dir, upload = upload { keep_local = false } }
    store.fault = 500
    local s = assert(client:archive_recordings(args))
    assert.same({ 3, 0, 3 }, { s.downloaded, s.uploaded, #s.failed })
    for _, f in ipairs(s.failed) do
      assert.same({ "http", 500 }, { f.err.kind, f.err.status })
      assert.matches("InternalError", f.err.message)
    end
    assert.equal(6, #store.puts) -- retried once (retries = 1): a 500 is transient
    for _, e in pairs(manifest(dir)) do
      assert.is_nil(e.uploaded)
      assert.equal("file", core.file_kind(dir .. "/" .. e.file))
    end
    store.fault = nil
    local downloads = j.count(provider, "download")
    s = assert(client:archive_recordings(args))
    assert.same({ 0, 3, 0, 0 }, { s.downloaded, s.uploaded, s.skipped, #s.failed })
    assert.equal(downloads, j.count(provider, "download")) -- from the local copy: no second download
    for _, e in pairs(manifest(dir)) do
      assert.equal(e.sha256, store.objects["recordings/ctc/" .. e.file])
      assert.equal("missing", core.file_kind(dir .. "/" .. e.file))
    end
  end)

  it("refuses a local copy that changed since it was archived (the signed hash), and keeps it", function()
    local client, _, store, _, now = setup()
    local args = { start_time = now - 8 * DAY, end_time = now, dir = dir, upload = upload() }
    store.fault = 403
    assert(client:archive_recordings(args))
    store.fault = nil
    local e1
    for _, e in pairs(manifest(dir)) do e1 = e end
    local path = dir .. "/" .. e1.file
    local bytes = j.read(path)
    j.write(path, bytes:sub(1, -2) .. string.char((bytes:byte(-1) + 1) % 256))
    local s = assert(client:archive_recordings(args))
    assert.same({ 2, 1 }, { s.uploaded, #s.failed })
    assert.same({ "http", 400 }, { s.failed[1].err.kind, s.failed[1].err.status })
    assert.same({ "XAmzContentSHA256Mismatch" }, store.refused)
    assert.equal("file", core.file_kind(path))
  end)

  it("keeps the secret key out of errors, events and the summary when the store fails", function()
    for _, fault in ipairs { "error", "raise", 403 } do
      local client, _, store, events, now = setup { token = TOKEN }
      local d = j.mkdtemp()
      store.fault = fault
      local s = assert(client:archive_recordings { start_time = now - 8 * DAY, end_time = now, dir = d,
                                                   upload = upload { session_token = TOKEN } })
      assert.equal(3, #s.failed)
      local kind = s.failed[1].err.kind
      assert.equal(fault == "error" and "network" or fault == "raise" and "protocol" or "http", kind)
      if fault == "error" then
        assert.matches("***", s.failed[1].err.message, 1, true)
      end
      no_secret { s, events, j.read(d .. "/manifest.jsonl") }
      j.rmtree(d)
    end
  end)

  it("refuses bad upload settings before anything is sent or written", function()
    local client, provider, store, _, now = setup()
    local s, err = client:archive_recordings { start_time = now - 8 * DAY, end_time = now, dir = dir,
                                               upload = upload { region = false, secret_key = SK } }
    assert.is_nil(s)
    assert.same({ "argument", "upload.region" }, { err.kind, err.field })
    no_secret(err)
    assert.same({ 0, 0 }, { #provider.requests, #store.puts })
    assert.same({}, j.tree(dir))
  end)

  it("says in a dry run what would be uploaded: every download and what was downloaded but not uploaded", function()
    local client, _, store, _, now = setup()
    local args = { start_time = now - 8 * DAY, end_time = now, dir = dir }
    assert(client:archive_recordings(args)) -- downloaded, no upload
    args.upload, args.dry_run = upload(), true
    local plan = assert(client:archive_recordings(args))
    assert.same({ 0, 3 }, { plan.to_download, plan.to_upload })
    assert.equal(0, #store.puts)
  end)
end)
