-- The test S3 endpoint (spec/helpers/s3_endpoint.py) proven before anything relies on it (issue #21.3): it
-- recomputes every signature with Debian's python3-botocore, so a request Debian's awscli signed is accepted
-- and the same request with one byte changed (body, key, a signed header, the date) is refused as S3 refuses
-- it; a short body is never stored. The requests tampered with are awscli's own, captured by the endpoint as
-- they arrived, and ours (core.sigv4_sign). Then the faults and the latency knob the upload specs use.
require "spec.helpers"
local socket = require "socket"
local core = require "clicktocall.core"
local s3 = require "spec.helpers.s3"
local util = require "spec.helpers.util"
local nginx = require "spec.helpers.nginx"
local cjson = require("cjson").new()

local function sha256(s)
  local h = core.sha256()
  h:update(s)
  return h:hex()
end

local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- One request on its own connection, byte for byte as given: req = { method, target, headers = { {name, value}
-- ... }, body }; opts.short = n sends n bytes fewer than the body and half-closes. -> { status, headers, body,
-- code } | nil, "closed" (no answer at all), elapsed seconds
local function send(port, req, opts)
  opts = opts or {}
  local c = socket.tcp()
  c:settimeout(15)
  local t0 = socket.gettime()
  assert(c:connect("127.0.0.1", port))
  local lines = { req.method .. " " .. req.target .. " HTTP/1.1" }
  for _, h in ipairs(req.headers) do lines[#lines + 1] = h[1] .. ": " .. h[2] end
  local body = req.body or ""
  if opts.short then body = body:sub(1, #body - opts.short) end
  c:send(table.concat(lines, "\r\n") .. "\r\n\r\n")
  c:send(body) -- may fail when the endpoint cuts the connection: the answer (or none) says what happened
  if opts.short then c:shutdown("send") end
  local status, res
  repeat
    local line = c:receive("*l")
    if not line then
      c:close()
      return nil, "closed", socket.gettime() - t0
    end
    status = tonumber(line:match("^HTTP/1%.1 (%d+)"))
    res = { status = status, headers = {} }
    for l in function() return c:receive("*l") end do
      if l == "" then break end
      local k, v = l:match("^([^:]+):%s*(.*)$")
      res.headers[k:lower()] = v
    end
  until status ~= 100
  local n = tonumber(res.headers["content-length"] or "0")
  res.body = n > 0 and req.method ~= "HEAD" and c:receive(n) or ""
  c:close()
  res.code = res.body:match("<Code>(.-)</Code>")
  return res, nil, socket.gettime() - t0
end

local function header(req, name)
  for _, h in ipairs(req.headers) do
    if h[1]:lower() == name then return h[2] end
  end
end

local function copy(req)
  local t = { method = req.method, target = req.target, body = req.body, headers = {} }
  for i, h in ipairs(req.headers) do t.headers[i] = { h[1], h[2] } end
  return t
end

-- s with the byte at i replaced by another one of the same class (a hex digit stays a hex digit)
local function change_byte(s, i)
  local c = s:sub(i, i)
  local other = c:match("%d") and tostring((tonumber(c) + 1) % 10)
    or c:match("%a") and (c == "a" and "b" or "a") or (c == "\0" and "\1" or "\0")
  return s:sub(1, i - 1) .. other .. s:sub(i + 1)
end

local function set_header(req, name, f)
  for _, h in ipairs(req.headers) do
    if h[1]:lower() == name then h[2] = f(h[2]) end
  end
  return req
end

-- The tampered copies of a signed PUT and what S3 answers each
local function tampered(req)
  local key_end = #req.target -- the key's last byte ("x.bin" -> "x.bia")
  return {
    { "the body, one byte", 400, "XAmzContentSHA256Mismatch",
      (function() local t = copy(req); t.body = change_byte(t.body, math.floor(#t.body / 2)); return t end)() },
    { "the key, one byte", 403, "SignatureDoesNotMatch",
      (function() local t = copy(req); t.target = change_byte(t.target, key_end); return t end)() },
    { "the signed payload hash, one digit", 403, "SignatureDoesNotMatch",
      set_header(copy(req), "x-amz-content-sha256", function(v) return change_byte(v, #v) end) },
    { "the date, one digit", 403, "SignatureDoesNotMatch",
      set_header(copy(req), "x-amz-date", function(v) return change_byte(v, #v - 1) end) },
    { "a signed metadata header, one byte", 403, "SignatureDoesNotMatch",
      set_header(copy(req), "x-amz-meta-note", function(v) return change_byte(v, 1) end) },
  }
end

-- A PUT of body at key signed by our signer (core.sigv4_sign), as a raw request
local function our_put(srv, bucket, key, body, over)
  local url = assert(core.s3_url { endpoint = srv.endpoint, bucket = bucket, key = key, path_style = true })
  local o = { method = "PUT", url = url, headers = { ["x-amz-meta-note"] = "ours" }, payload_hash = sha256(body),
              region = srv.region, access_key = srv.access_key, secret_key = srv.secret_key,
              session_token = srv.session_token }
  for k, v in pairs(over or {}) do o[k] = v or nil end -- false: leave it out
  local h, signed_url = assert(core.sigv4_sign(o))
  local req = { method = "PUT", target = signed_url:match("^https?://[^/]+(/.*)$"), body = body,
                headers = { { "Content-Length", tostring(#body) } } }
  local names = {}
  for k in pairs(h) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do req.headers[#req.headers + 1] = { k, h[k] } end
  return req
end

describe("the test S3 endpoint (botocore verifies every signature)", function()
  local srv, tmp
  local KEY = "calls/2026 12/ü a+b$x.bin"
  local body = random_bytes(300 * 1024)

  lazy_setup(function()
    srv = assert(s3.start { buckets = { "rec" } })
    tmp = os.tmpname()
    write(tmp, body)
  end)

  lazy_teardown(function()
    if srv then srv:stop() end
    os.remove(tmp)
  end)

  before_each(function()
    srv:fault(nil)
    srv:options { latency_ms = 0 }
  end)

  it("accepts what awscli signs; the object read back with awscli has the file's SHA-256", function()
    local cap = srv.work .. "/captures"
    assert(nginx.run("mkdir -p " .. util.quote(cap)))
    srv:options { capture_dir = cap }
    local ok, out = srv:aws("s3api put-object --bucket rec --key " .. util.quote(KEY) .. " --body "
      .. util.quote(tmp) .. " --metadata note=hello")
    srv:options { capture_dir = "" }
    assert.is_true(ok, out)
    assert.equal(sha256(body), sha256(assert(srv:object("rec", KEY))))

    local back = tmp .. ".back"
    ok, out = srv:aws("s3 cp " .. util.quote("s3://rec/" .. KEY) .. " " .. util.quote(back))
    assert.is_true(ok, out)
    assert.equal(sha256(body), sha256(assert(util.read_file(back))))
    os.remove(back)

    ok, out = srv:aws("s3 ls --recursive s3://rec/")
    assert.is_true(ok, out)
    assert.truthy(out:find(tostring(#body) .. " " .. KEY, 1, true), out)
    ok, out = srv:aws("s3api head-object --bucket rec --key " .. util.quote(KEY))
    assert.is_true(ok, out)
    assert.equal(#body, cjson.decode(out).ContentLength)

    -- awscli signed its payload hash (plain http), and nothing else went unsigned
    local put = srv:requests()[1]
    assert.same({ "PUT", 200, #body }, { put.method, put.status, put.bytes })
    assert.truthy(put.capture)
  end)

  it("refuses awscli's own signed request with one byte changed, and stores nothing from it", function()
    local put
    for _, r in ipairs(srv:requests()) do
      if r.method == "PUT" and r.capture then put = r end
    end
    assert.truthy(put, "the first spec captured awscli's PUT")
    local j = cjson.decode((assert(util.read_file(put.capture .. ".json"))))
    local req = { method = j.method, target = j.target, headers = j.headers,
                  body = assert(util.read_file(put.capture .. ".body")) }
    assert.equal(body, req.body)
    assert.equal(sha256(body), header(req, "x-amz-content-sha256"))
    assert.equal("hello", header(req, "x-amz-meta-note"))

    -- sent again as captured: accepted (proof the replay itself is faithful)
    local res = assert(send(srv.port, req))
    assert.equal(200, res.status, res.body)

    local other = random_bytes(#body)
    write(srv.dir .. "/rec/" .. s3.file_name(KEY), other) -- what is stored must stay as it is
    for _, case in ipairs(tampered(req)) do
      res = assert(send(srv.port, case[4]))
      assert.equal(case[2], res.status, case[1] .. ": " .. res.body)
      assert.equal(case[3], res.code, case[1])
      assert.equal(other, srv:object("rec", KEY), case[1])
    end
    assert.is_nil(srv:object("rec", KEY:sub(1, -2) .. "a")) -- the key tampered with

    -- a body one byte short: IncompleteBody, and nothing stored
    res = assert(send(srv.port, req, { short = 1 }))
    assert.equal(400, res.status)
    assert.equal("IncompleteBody", res.code)
    assert.equal(other, srv:object("rec", KEY))
  end)

  it("accepts our signer's PUT (core.sigv4_sign) and refuses it with one byte changed", function()
    local key = "ours/a b+ü$.bin"
    local req = our_put(srv, "rec", key, body)
    local res = assert(send(srv.port, req))
    assert.equal(200, res.status, res.body)
    assert.equal(body, srv:object("rec", key))
    assert.equal('"', res.headers.etag:sub(1, 1))

    os.remove(srv.dir .. "/rec/" .. s3.file_name(key))
    for _, case in ipairs(tampered(req)) do
      res = assert(send(srv.port, case[4]))
      assert.equal(case[2], res.status, case[1] .. ": " .. res.body)
      assert.equal(case[3], res.code, case[1])
      assert.is_nil(srv:object("rec", key), case[1])
    end
    res = assert(send(srv.port, req, { short = 1000 }))
    assert.equal("IncompleteBody", res.code)
    assert.is_nil(srv:object("rec", key))
  end)

  it("refuses a wrong secret, an unknown key id, a wrong region, an unsigned x-amz header, no signature", function()
    local cases = {
      { { secret_key = "not-the-secret" }, 403, "SignatureDoesNotMatch" },
      { { access_key = "AKIDUNKNOWN" }, 403, "InvalidAccessKeyId" },
      { { region = "eu-west-1" }, 400, "AuthorizationHeaderMalformed" },
      { { time = os.time() - 3600 }, 403, "RequestTimeTooSkewed" },
    }
    for _, c in ipairs(cases) do
      local res = assert(send(srv.port, our_put(srv, "rec", "refused.bin", "abc", c[1])))
      assert.same({ c[2], c[3] }, { res.status, res.code })
    end
    local req = our_put(srv, "rec", "refused.bin", "abc")
    req.headers[#req.headers + 1] = { "x-amz-meta-extra", "unsigned" }
    local res = assert(send(srv.port, req))
    assert.same({ 403, "AccessDenied" }, { res.status, res.code })
    req = our_put(srv, "rec", "refused.bin", "abc")
    for i = #req.headers, 1, -1 do
      if req.headers[i][1] == "authorization" then table.remove(req.headers, i) end
    end
    res = assert(send(srv.port, req))
    assert.same({ 403, "AccessDenied" }, { res.status, res.code })
    assert.is_nil(srv:object("rec", "refused.bin"))
  end)

  it("answers NoSuchBucket and a wrong secret as S3 does, to awscli", function()
    local ok, out = srv:aws("s3 ls s3://no-such-bucket/")
    assert.is_false(ok)
    assert.truthy(out:find("NoSuchBucket", 1, true), out)
    ok, out = nginx.run(srv:aws_env() .. "AWS_SECRET_ACCESS_KEY=wrong " .. s3.AWS .. " --endpoint-url "
      .. srv.endpoint .. " s3api head-bucket --bucket rec")
    assert.is_false(ok)
    assert.truthy(out:find("403", 1, true), out)
    -- a signed HEAD of the bucket (what doctor sends) is answered 200
    local h, url = assert(core.sigv4_sign { method = "HEAD", url = srv.endpoint .. "/rec",
      payload_hash = sha256(""), region = srv.region, access_key = srv.access_key, secret_key = srv.secret_key })
    local req = { method = "HEAD", target = url:match("^https?://[^/]+(/.*)$"), headers = {} }
    for k, v in pairs(h) do req.headers[#req.headers + 1] = { k, v } end
    assert.equal(200, assert(send(srv.port, req)).status)
  end)

  it("checks the session token when it was started with one", function()
    local tsrv = assert(s3.start { buckets = { "t" }, session_token = "tok-123" })
    finally(function() tsrv:stop() end)
    local res = assert(send(tsrv.port, our_put(tsrv, "t", "k", "abc")))
    assert.equal(200, res.status, res.body)
    res = assert(send(tsrv.port, our_put(tsrv, "t", "k", "abc", { session_token = "tok-999" })))
    assert.same({ 400, "InvalidToken" }, { res.status, res.code })
    res = assert(send(tsrv.port, our_put(tsrv, "t", "k", "abc", { session_token = false })))
    assert.same({ 403, "AccessDenied" }, { res.status, res.code })
  end)

  describe("faults, switched at run time", function()
    it("answers forbidden, no_bucket, error500 and retry_after as S3 words them, then clears", function()
      local cases = {
        { "forbidden", {}, 403, "AccessDenied" },
        { "no_bucket", {}, 404, "NoSuchBucket" },
        { "error500", {}, 500, "InternalError" },
        { "retry_after", { seconds = 7 }, 503, "SlowDown" },
      }
      for _, c in ipairs(cases) do
        srv:fault(c[1], c[2])
        local res = assert(send(srv.port, our_put(srv, "rec", "f.bin", "abc")))
        assert.same({ c[3], c[4] }, { res.status, res.code })
        if c[1] == "retry_after" then assert.equal("7", res.headers["retry-after"]) end
      end
      srv:fault(nil)
      assert.equal(200, assert(send(srv.port, our_put(srv, "rec", "f.bin", "abc"))).status)
    end)

    it("counts times, and picks requests by method and by part of the key", function()
      srv:fault("error500", { times = 2, match = "only-this" })
      assert.equal(200, assert(send(srv.port, our_put(srv, "rec", "other.bin", "abc"))).status)
      assert.equal(500, assert(send(srv.port, our_put(srv, "rec", "only-this.bin", "abc"))).status)
      assert.equal(500, assert(send(srv.port, our_put(srv, "rec", "only-this.bin", "abc"))).status)
      assert.equal(200, assert(send(srv.port, our_put(srv, "rec", "only-this.bin", "abc"))).status)
      srv:fault("forbidden", { method = "GET" })
      assert.equal(200, assert(send(srv.port, our_put(srv, "rec", "m.bin", "abc"))).status)
    end)

    it("cuts the connection mid-body without an answer, and stores nothing", function()
      srv:clear_requests()
      srv:fault("cut", { after = 100000 })
      local data = random_bytes(300000)
      local res, err = send(srv.port, our_put(srv, "rec", "cut.bin", data))
      assert.is_nil(res)
      assert.equal("closed", err)
      assert.is_nil(srv:object("rec", "cut.bin"))
      local log = srv:requests()
      assert.same({ "PUT", 100000, "cut" }, { log[1].method, log[1].bytes, log[1].code })
    end)

    it("accept_short: a store keeping half the body is refused by the signed payload hash", function()
      srv:fault("accept_short")
      local res = assert(send(srv.port, our_put(srv, "rec", "short.bin", body)))
      assert.same({ 400, "XAmzContentSHA256Mismatch" }, { res.status, res.code })
      assert.truthy(res.body:find("<ClientComputedContentSHA256>" .. sha256(body), 1, true))
      assert.truthy(res.body:find("<S3ComputedContentSHA256>" .. sha256(body:sub(1, math.floor(#body / 2))), 1, true))
      assert.is_nil(srv:object("rec", "short.bin"))
    end)

    it("slow, and the latency knob: the answer comes that much later", function()
      srv:fault("slow", { ms = 400 })
      local res, _, elapsed = send(srv.port, our_put(srv, "rec", "slow.bin", "abc"))
      assert.equal(200, res.status)
      assert.is_true(elapsed >= 0.4, tostring(elapsed))
      srv:fault(nil)
      srv:options { latency_ms = 250 }
      res, _, elapsed = send(srv.port, our_put(srv, "rec", "slow.bin", "abc"))
      assert.equal(200, res.status)
      assert.is_true(elapsed >= 0.25, tostring(elapsed))
    end)
  end)
end)
