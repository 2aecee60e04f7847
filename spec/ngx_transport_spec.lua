-- spec/ngx_transport_spec.lua: clicktocall.transport.ngx and clicktocall.dial_guard against a real nginx.
--
--   make && make LUA_VERSION=luajit && busted --lua=lua5.4 --cpath=./build/5.4/?.so spec/ngx_transport_spec.lua
--
-- The spec runs on plain Lua 5.4; it starts nginx (Debian nginx-light + ngx_lua) through
-- spec/helpers/nginx.lua with spec/nginx/transport.conf: "driver" locations run the transport inside
-- nginx (spec/nginx/ctc_driver.lua) against upstream locations (spec/nginx/ctc_upstream.lua) and answer
-- JSON, which the spec checks. Needs: nginx, openssl, curl, LuaSocket and lua-cjson for Lua 5.4.

package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path

local nginx = require "spec.helpers.nginx"
local http = require "socket.http"
local ltn12 = require "ltn12"
local socket = require "socket"
local cjson = require "cjson"

local REPO = nginx.repo_root()

local util = require "spec.helpers.util"
local sh = util.sh

local function read_file(path)
  return assert(util.read_file(path))
end

local function pattern_bytes(n)
  return string.rep("0123456789abcdef", math.floor(n / 16) + 1):sub(1, n)
end

-- POST (or GET when body is nil) to srv's port 1; decode the JSON answer.
local function call(srv, path, body)
  local chunks = {}
  local ok, code = http.request{
    url = srv:url(path),
    method = body and "POST" or "GET",
    headers = body and { ["content-type"] = "application/json", ["content-length"] = #body } or nil,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(chunks),
  }
  assert(ok, "driver request failed: " .. tostring(code))
  assert(code == 200, "driver answered " .. tostring(code) .. ": " .. table.concat(chunks))
  local text = table.concat(chunks)
  local v = cjson.decode(text)
  return v, text
end

local function start_nginx(workers, certdir)
  local srv, err = nginx.start{
    http = read_file(REPO .. "/spec/nginx/transport.conf"),
    ports = 3,
    refused = 1,
    workers = workers,
    vars = { cert = certdir .. "/cert.pem", key = certdir .. "/key.pem" },
    -- the transport's error values carry the core's version, as in any deployment
    lua_cpath = nginx.repo_root() .. "/build/luajit/?.so;",
  }
  assert(srv, err)
  return srv
end

local function make_cert()
  local dir = sh("mktemp -d /tmp/ctc-cert.XXXXXX"):gsub("%s+$", "")
  sh("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost " ..
     "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -days 2 " ..
     "-keyout " .. dir .. "/key.pem -out " .. dir .. "/cert.pem")
  assert(io.open(dir .. "/cert.pem"), "openssl could not make a test certificate")
  return dir
end

describe("ngx transport outside nginx #openresty", function()
  it("new() refuses to work without ngx_lua, with a sentence", function()
    local t, err = require("clicktocall.transport.ngx").new()
    assert.is_nil(t)
    assert.matches("ngx_lua", err)
    local g, gerr = require("clicktocall.dial_guard").new("clicktocall_dials", 10)
    assert.is_nil(g)
    assert.matches("ngx_lua", gerr)
  end)
end)

describe("ngx transport in nginx #openresty", function()
  local srv, certdir, UP, TLS, REFUSED

  local function drive(req, extra, path)
    local spec = { req = req }
    for k, v in pairs(extra or {}) do
      spec[k] = v
    end
    return (call(srv, path or "/drive", cjson.encode(spec)))
  end

  local function get(path, extra)
    return drive({ method = "GET", url = UP .. path, timeout = 5 }, extra)
  end

  setup(function()
    certdir = make_cert()
    srv = start_nginx(1, certdir)
    UP = "http://127.0.0.1:" .. srv.ports[2]
    TLS = "https://127.0.0.1:" .. srv.ports[3]
    REFUSED = "http://127.0.0.1:" .. srv.refused[1]
    -- the worker's init_worker timer makes a request of its own through the same per-worker pool: let it
    -- finish before any test, or the first tests share the pool with it
    assert(nginx.wait_for(function()
      local r = call(srv, "/results")
      return r.timer and r.timer.slept
    end, 10, "the init_worker timer's request"))
  end)

  teardown(function()
    if srv then
      srv:stop()
    end
    if certdir then
      sh("rm -rf " .. certdir)
    end
  end)

  it("refuses the same oversized headers as the libcurl transport, with the same words", function()
    local core = require "clicktocall.core"
    local curl = core.curl_transport()
    local TOO_LARGE = "the response headers exceed 200 lines or 65536 bytes"
    local cases = { -- query, refused
      { "k=1&b=70000", true },   -- one line past the bytes (below libcurl's own 100 KB for a line)
      { "k=1&b=150000", true },  -- one line past libcurl's own limit too
      { "k=40&b=1700", true },   -- the lines together past the bytes
      { "k=210&b=10", true },    -- past the number of lines
      { "k=1&b=60000", false },
      { "k=150&b=10", false },
    }
    for _, c in ipairs(cases) do
      local path = "/heads?" .. c[1]
      local r = get(path)
      local res, err = curl:perform{ method = "GET", url = UP .. path, timeout = 5 }
      if c[2] then
        assert.is_false(r.ok, path)
        assert.is_nil(res, path)
        assert.same({ "protocol", TOO_LARGE }, { r.err.kind, r.err.message }, path)
        assert.same({ "protocol", TOO_LARGE }, { err.kind, err.message }, path)
      else
        assert.is_true(r.ok, path)
        assert.equal("ok", res and res.body, path)
      end
    end
    curl:close()
  end)

  it("sends exactly the expected bytes for a POST", function()
    local body = '{"callerNbr":"+8613500000001","calleeNbr":"+8613500000002"}'
    local r = drive{ method = "POST", url = UP .. "/echo?x=1&y=2", body = body, timeout = 5,
                     headers = { ["Content-Type"] = "application/json;charset=UTF-8",
                                 Authorization = "VEVTVA==", ["User-Agent"] = "clicktocall/0.1.0" } }
    assert.is_true(r.ok)
    assert.equal(200, r.status)
    local seen = cjson.decode(r.body)
    assert.equal("POST", seen.method)
    assert.equal("/echo?x=1&y=2", seen.uri)
    assert.equal("POST /echo?x=1&y=2 HTTP/1.1\r\n" ..
                 "Host: 127.0.0.1:" .. srv.ports[2] .. "\r\n" ..
                 "Authorization: VEVTVA==\r\n" ..
                 "Content-Type: application/json;charset=UTF-8\r\n" ..
                 "User-Agent: clicktocall/0.1.0\r\n" ..
                 "Connection: keep-alive\r\n" ..
                 "Content-Length: " .. #body .. "\r\n\r\n", seen.raw_header)
    assert.equal(body, seen.body)
  end)

  it("sends Content-Length: 0 for a POST without a body and lets the caller's Host win", function()
    local r = drive{ method = "POST", url = UP .. "/echo", timeout = 5, headers = { host = "api.example.com" } }
    local seen = cjson.decode(r.body)
    assert.equal("POST /echo HTTP/1.1\r\nhost: api.example.com\r\nConnection: keep-alive\r\n" ..
                 "Content-Length: 0\r\n\r\n", seen.raw_header)
  end)

  it("refuses header injection before sending", function()
    local r = drive{ method = "GET", url = UP .. "/echo", headers = { ["X-Evil"] = "a\r\nX-Injected: 1" } }
    assert.is_false(r.ok)
    assert.equal("argument", r.err.kind)
    assert.is_false(r.err.sent)
  end)

  it("reads a Content-Length response, with lowercased and joined headers", function()
    local r = get("/json")
    assert.is_true(r.ok)
    assert.equal(200, r.status)
    assert.equal('{"meta":{"success":true,"message":"ok"},"data":"session-123"}', r.body)
    assert.equal("61", r.headers["content-length"])
    assert.equal("application/json;charset=UTF-8", r.headers["content-type"])
    assert.equal("Value-Kept", r.headers["x-mixed-case"])
    assert.is_nil(r.headers["X-Mixed-Case"])
    assert.equal("a, b", r.headers["x-multi"])
  end)

  it("reads a chunked response", function()
    local r = get("/chunked")
    assert.is_true(r.ok)
    assert.equal("chunked", r.headers["transfer-encoding"])
    assert.equal("part1;part2;part3;part4;part5;", r.body)
  end)

  it("reads an HTTP/1.0 answer without a length until the server closes", function()
    local r = get("/http10")
    assert.is_true(r.ok)
    assert.equal("old-style body without a length", r.body)
    assert.equal("yes", r.headers["x-old"])
  end)

  it("handles folded and repeated headers, 1xx interim answers, 204 and redirects (not followed)", function()
    local r = get("/folded")
    assert.equal("one two", r.headers["x-folded"])
    assert.equal("a=1, b=2", r.headers["set-cookie"])
    assert.equal("ok", r.body)
    r = get("/continue")
    assert.equal(201, r.status)
    assert.equal("created", r.body)
    r = get("/status204")
    assert.equal(204, r.status)
    assert.equal("", r.body)
    r = get("/redirect")
    assert.equal(302, r.status)
    assert.equal("/json", r.headers.location)
    assert.equal("moved", r.body)
  end)

  it("reads no body for HEAD and keeps the connection", function()
    -- both requests in one driver handler: nothing else runs in the worker between them, so the only way
    -- the GET can get another connection is the HEAD's not being pooled (the upstream numbers its
    -- connections and counts the requests on each)
    local seq = call(srv, "/drive", cjson.encode{ seq = {
      { req = { method = "HEAD", url = UP .. "/json", timeout = 5 } },
      { req = { method = "GET", url = UP .. "/json", timeout = 5 } },
    } })
    local a, b = seq[1], seq[2]
    assert.is_true(a.ok)
    assert.equal("61", a.headers["content-length"])
    assert.equal("", a.body)
    assert.is_true(b.ok)
    assert.equal(a.headers["x-conn"], b.headers["x-conn"])
    assert.equal(tonumber(a.headers["x-conn-requests"]) + 1, tonumber(b.headers["x-conn-requests"]))
  end)

  it("new() refuses bad options with a sentence", function()
    for _, opts in ipairs{ { pool_size = 0 }, { pool_size = 1.5 }, { keepalive_timeout = -1 },
                           { ssl_verify = "yes" }, { sleep = 1 } } do
      local r = drive({ method = "GET", url = UP .. "/json" }, { opts = opts })
      assert.is_string(r.new_err)
    end
  end)

  it("calls a response that is not HTTP a protocol error", function()
    local r = get("/garbage")
    assert.is_false(r.ok)
    assert.equal("protocol", r.err.kind)
    assert.is_true(r.err.sent)
  end)

  it("times out a slow answer within about the timeout (kind timeout, sent)", function()
    local r = drive{ method = "POST", url = UP .. "/slow?d=3", body = "{}", timeout = 0.5 }
    assert.is_false(r.ok)
    assert.equal("timeout", r.err.kind)
    assert.is_true(r.err.sent)
    assert.is_true(r.elapsed >= 0.45 and r.elapsed < 2.5, "elapsed " .. r.elapsed)
  end)

  it("keeps an overall deadline when every single read is quick (trickling server)", function()
    local r = drive{ method = "GET", url = UP .. "/trickle?n=30&d=0.1", timeout = 0.6 }
    assert.is_false(r.ok)
    assert.equal("timeout", r.err.kind)
    assert.is_true(r.elapsed >= 0.55 and r.elapsed < 2.5, "elapsed " .. r.elapsed)
    assert.matches("got %d+ of 30 bytes", r.err.message)
  end)

  it("reports a refused connection as network, sent = false", function()
    local r = drive{ method = "POST", url = REFUSED .. "/rest/voiceCall/api", body = "{}", timeout = 2 }
    assert.is_false(r.ok)
    assert.equal("network", r.err.kind)
    assert.is_false(r.err.sent)
    assert.matches("refused", r.err.message)
    -- an error value of clicktocall.errors, like every other error of the library
    assert.is_true(r.err.is_error)
    assert.is_true(r.err.retryable)
    assert.equal("[network] " .. r.err.message, r.err.text)
  end)

  it("times out a connect that never completes (full listen backlog): kind timeout, sent = false", function()
    -- a listener with backlog 0 that never accepts, filled up: the kernel drops further SYNs
    local l = assert(socket.bind("127.0.0.1", 0, 0))
    local _, lport = l:getsockname()
    local fillers = {}
    for i = 1, 4 do
      fillers[i] = socket.tcp()
      fillers[i]:settimeout(0)
      fillers[i]:connect("127.0.0.1", lport)
    end
    -- the queue is full once one filler's handshake completed (it becomes writable)
    assert(nginx.wait_for(function()
      local _, writable = socket.select(nil, fillers, 0.05)
      return #writable > 0
    end, 10, "a filler connection to complete"))
    local r = drive{ method = "POST", url = "http://127.0.0.1:" .. lport .. "/rest/voiceCall/api", body = "{}",
                     timeout = 2, connect_timeout = 0.3 }
    for _, c in ipairs(fillers) do c:close() end
    l:close()
    assert.is_false(r.ok)
    assert.equal("timeout", r.err.kind)
    assert.is_false(r.err.sent)
    assert.is_true(r.elapsed >= 0.25 and r.elapsed < 2.5, "elapsed " .. r.elapsed)
  end)

  it("names the resolver directive when a host cannot be resolved", function()
    local r = drive{ method = "GET", url = "http://api.example.invalid/x", timeout = 2 }
    assert.is_false(r.ok)
    assert.equal("network", r.err.kind)
    assert.is_false(r.err.sent)
    assert.matches("`resolver`", r.err.message)
  end)

  it("refuses non-http URLs before sending", function()
    for _, url in ipairs{ "file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://x", "no-scheme" } do
      local r = drive{ method = "GET", url = url }
      assert.is_false(r.ok)
      assert.equal("argument", r.err.kind)
      assert.is_false(r.err.sent)
    end
  end)

  it("enforces max_body while reading a chunked body (50 MiB offered, 1 MiB allowed)", function()
    local r = get("/huge?mb=50", nil)
    assert.is_true(r.ok) -- sanity: without a cap it is read whole
    assert.equal(50 * 1024 * 1024, r.body_len)
    r = drive{ method = "GET", url = UP .. "/huge?mb=50", timeout = 10, max_body = 1024 * 1024 }
    assert.is_false(r.ok)
    assert.equal("protocol", r.err.kind)
    assert.matches("1048576", r.err.message)
    assert.is_true(r.elapsed < 3, "elapsed " .. r.elapsed)
  end)

  it("refuses a Content-Length over max_body before reading it", function()
    local r = drive{ method = "GET", url = UP .. "/huge_cl?mb=50", timeout = 10, max_body = 1024 * 1024 }
    assert.is_false(r.ok)
    assert.equal("protocol", r.err.kind)
    assert.matches("Content%-Length 52428800", r.err.message)
    assert.matches("1048576", r.err.message)
    -- the worker's peak memory did not grow by anything like the body
    assert.is_true(r.hwm_after_kb - r.hwm_before_kb < 4096, (r.hwm_after_kb - r.hwm_before_kb) .. " KiB")
  end)

  it("reports a body cut short of its Content-Length as network, with the byte counts", function()
    local r = get("/cut")
    assert.is_false(r.ok)
    assert.equal("network", r.err.kind)
    assert.is_true(r.err.sent)
    assert.matches("got 100 of 1000 bytes", r.err.message)
    r = get("/cut_chunked")
    assert.is_false(r.ok)
    assert.equal("network", r.err.kind)
  end)

  it("streams a body to a sink without keeping it (max_body does not apply)", function()
    local path = os.tmpname()
    sh("chmod 666 " .. path) -- nginx workers run as nobody
    local n = 3 * 1000 * 1000 + 7
    local r = drive({ method = "GET", url = UP .. "/big?bytes=" .. n, timeout = 10, max_body = 1000 },
                    { sink_file = path })
    assert.is_true(r.ok)
    assert.equal(0, r.body_len)
    local data = read_file(path)
    os.remove(path)
    assert.equal(n, #data)
    assert.is_true(data == pattern_bytes(n), "the file differs from what was sent")
  end)

  it("fails with the sink's message when the sink fails", function()
    local path = os.tmpname()
    sh("chmod 666 " .. path)
    local r = drive({ method = "GET", url = UP .. "/big?bytes=1000000", timeout = 10 },
                    { sink_file = path, sink_fail_after = 2 })
    os.remove(path)
    assert.is_false(r.ok)
    assert.equal("protocol", r.err.kind)
    assert.matches("disk full", r.err.message)
  end)

  it("reuses a pooled connection across requests, and not after Connection: close", function()
    local a = get("/json")
    local b = get("/json")
    assert.equal(a.headers["x-conn"], b.headers["x-conn"])
    local c = get("/close")
    assert.equal("close", c.headers.connection)
    local d = get("/close")
    assert.are_not.equal(c.headers["x-conn"], d.headers["x-conn"])
    -- an error (timeout) closes its connection and the pool still serves the next request
    get("/slow?d=1", nil)
    drive{ method = "GET", url = UP .. "/slow?d=2", timeout = 0.2 }
    local e = get("/json")
    assert.is_true(e.ok)
  end)

  it("keepalive_timeout = 0 pools nothing: Connection: close, a new connection for every request", function()
    local req = { method = "GET", url = UP .. "/echo", timeout = 5 }
    local seq = call(srv, "/drive", cjson.encode{ opts = { keepalive_timeout = 0 },
                                                  seq = { { req = req }, { req = req }, { req = req } } })
    local conns = {}
    for i = 1, 3 do
      assert.is_true(seq[i].ok)
      local seen = cjson.decode(seq[i].body)
      assert.matches("\r\nConnection: close\r\n", seen.raw_header)
      assert.equal(1, seen.connection_requests)
      assert.is_nil(conns[seen.connection])
      conns[seen.connection] = true
    end
    -- and the default pools: the same three requests share one connection
    seq = call(srv, "/drive", cjson.encode{ seq = { { req = req }, { req = req }, { req = req } } })
    local first = cjson.decode(seq[1].body)
    for i = 2, 3 do
      local seen = cjson.decode(seq[i].body)
      assert.equal(first.connection, seen.connection)
      assert.equal(first.connection_requests + i - 1, seen.connection_requests)
    end
  end)

  -- A server that sends a second, complete, stray answer on its keep-alive connection after each answer
  -- (spec/nginx/ctc_upstream.lua "/stray"). Three requests on one transport, each started only after the
  -- previous stray was sent and the worker's event loop went round at least once since.
  local function stray_run(mode)
    local tag = mode .. string.format("%.6f", socket.gettime())
    local steps = {}
    for n = 1, 3 do
      steps[n] = { req = { method = "GET", url = UP .. "/stray?tag=" .. tag .. "&mode=" .. mode .. "&n=" .. n,
                           timeout = 5 },
                   await = n > 1 and ("stray:" .. tag .. ":" .. (n - 1)) or nil }
    end
    -- and the last stray too, so that no later test meets this connection
    steps[4] = { await = "stray:" .. tag .. ":3" }
    local out = call(srv, "/drive", cjson.encode{ seq = steps })
    local seen = call(srv, "/results")["seen:" .. tag]
    return out, seen
  end

  local function assert_own_answers(out, seen)
    local conns = {}
    for n = 1, 3 do
      local r = out[n]
      assert.is_true(r and r.ok, "request " .. n .. ": " .. cjson.encode(r or {}))
      local conn, what = r.body:match("^conn (%d+): (.*)$")
      assert.equal("answer " .. n, what)
      assert.is_nil(conns[conn], "request " .. n .. " reused connection " .. tostring(conn))
      conns[conn] = true
    end
    assert.equal(3, seen) -- every request reached the server
  end

  it("drops a pooled connection on which a stray answer arrived later; each request gets its own answer",
     function()
    assert_own_answers(stray_run("later"))
  end)

  it("does not pool a connection whose stray answer came in the same read as the answer", function()
    assert_own_answers(stray_run("same"))
  end)

  it("keeps separate pools for verified and unverified TLS, and explains an untrusted CA", function()
    local r = drive{ method = "GET", url = TLS .. "/json", timeout = 5 }
    assert.is_false(r.ok)
    assert.equal("network", r.err.kind)
    assert.is_false(r.err.sent)
    assert.matches("lua_ssl_trusted_certificate", r.err.message)

    local nv1 = drive({ method = "GET", url = TLS .. "/json", timeout = 5 }, { opts = { ssl_verify = false } })
    local nv2 = drive({ method = "GET", url = TLS .. "/json", timeout = 5 }, { opts = { ssl_verify = false } })
    assert.is_true(nv1.ok)
    assert.equal(nv1.headers["x-conn"], nv2.headers["x-conn"])

    local v1 = drive({ method = "GET", url = TLS .. "/json", timeout = 5 }, nil, "/drive_trusted")
    local v2 = drive({ method = "GET", url = TLS .. "/json", timeout = 5 }, nil, "/drive_trusted")
    assert.is_true(v1.ok, v1.err and v1.err.message)
    assert.equal(v1.headers["x-conn"], v2.headers["x-conn"])
    assert.are_not.equal(nv1.headers["x-conn"], v1.headers["x-conn"])
  end)

  it("fails in init_worker, log and header_filter with the phase named, and works in timers", function()
    call(srv, "/log_phase")
    call(srv, "/header_filter_phase")
    -- the log phase runs after the answer went out and the timer whenever the worker gets to it: wait for
    -- all four results
    local res = assert(nginx.wait_for(function()
      local r = call(srv, "/results")
      return r.init_worker and r.log and r.header_filter and r.timer and r.timer.slept and r
    end, 30, "the results of all four phases"))
    for _, phase in ipairs{ "init_worker", "log", "header_filter" } do
      local r = res[phase]
      assert.is_table(r, phase)
      assert.is_nil(r.raised, phase)
      assert.equal("argument", r.err.kind)
      assert.is_false(r.err.sent)
      assert.matches("not available in the " .. phase .. " phase", r.err.message)
      assert.matches("ngx.timer.at", r.err.message)
    end
    assert.is_true(res.timer.ok, res.timer.err and res.timer.err.message)
    assert.equal(200, res.timer.status)
    -- ngx.now() counts whole milliseconds and the sleep's timer fires once nginx's millisecond clock has
    -- moved on by 10, which may be just over 9 ms later: a 10 ms sleep can read as 9 ms, and 9 ms between two
    -- epoch-second numbers comes out as 0.0089998 or 0.0090001 (they step by 2^-22 s)
    assert.is_true(res.timer.slept >= 0.0085, string.format("slept %.7f s", res.timer.slept))
    local t = call(srv, "/drive_timer", cjson.encode{ req = { method = "GET", url = UP .. "/json" } })
    assert.is_true(t.ok, cjson.encode(t))
    assert.equal("timer", t.phase)
  end)

  it("does not leak connections or file descriptors (200 requests, errors included)", function()
    local pid = string.format("%d", call(srv, "/worker").pid)
    local function fds()
      return tonumber((sh("ls /proc/" .. pid .. "/fd | wc -l"):match("%d+")))
    end
    call(srv, "/conns?reset=1")
    -- 200 driver calls, each a transport request to the same upstream: one pooled connection serves them
    local many = call(srv, "/drive", cjson.encode{ n = 200, req = { method = "POST", url = UP .. "/json",
                                                                   body = "{}", timeout = 5 } })
    local conns = {}
    for _, r in ipairs(many) do
      assert.is_true(r.ok)
      conns[r.headers["x-conn"]] = true
    end
    local distinct = 0
    for _ in pairs(conns) do distinct = distinct + 1 end
    assert.equal(1, distinct)
    assert.equal(1, call(srv, "/conns").count)

    local before = fds()
    local kinds = {
      { method = "GET", url = UP .. "/json" },
      { method = "GET", url = UP .. "/cut" },
      { method = "GET", url = UP .. "/close" },
      { method = "GET", url = UP .. "/http10" },
      { method = "GET", url = REFUSED .. "/x" },
      { method = "GET", url = UP .. "/slow?d=1", timeout = 0.01 },
      { method = "GET", url = UP .. "/huge?mb=2", max_body = 1000 },
      { method = "GET", url = UP .. "/garbage" },
    }
    for i = 1, 200 do
      local req = kinds[(i - 1) % #kinds + 1]
      req.timeout = req.timeout or 5
      drive(req)
    end
    -- the upstream's own side of the timed-out /slow requests ends after its ngx.sleep(1): wait for it
    local after
    nginx.wait_for(function()
      after = fds()
      return after - before <= 2
    end, 10, "the worker's descriptors to settle")
    assert.is_true(after - before <= 2, string.format("fds before %d, after %d\n%s", before, after,
                                                      sh("ls -l /proc/" .. pid .. "/fd")))
    -- and the upstream saw a bounded number of connections: one per request that had to close
    -- (cut, close, http10, timeout, max_body, garbage: 6 of 8 kinds), plus at most one pooled
    local seen = call(srv, "/conns").count
    assert.is_true(seen <= 1 + 150 + 1, "upstream connections: " .. seen)
  end)
end)

describe("dial guard across nginx workers #openresty", function()
  local srv, certdir

  setup(function()
    certdir = make_cert()
    srv = start_nginx(2, certdir)
  end)

  teardown(function()
    if srv then
      srv:stop()
    end
    if certdir then
      sh("rm -rf " .. certdir)
    end
  end)

  local function click(q)
    return call(srv, "/click?" .. q)
  end

  it("lets one of many concurrent identical clicks through, across both workers", function()
    -- rounds of 40 parallel identical clicks (a new callee each round) until one round was served by
    -- both workers; in every round exactly one click passes
    local spanned = false
    for round = 1, 5 do
      local callee = "%2B86135000001" .. string.format("%02d", round)
      local urls = {}
      for i = 1, 40 do
        urls[i] = "'" .. srv:url("/click?caller=%2B8613500000001&callee=" .. callee .. "&seat=1001") .. "'"
      end
      local p = io.popen("unset LD_PRELOAD; curl -s --max-time 30 -Z --parallel-max 40 "
        .. table.concat(urls, " ") .. " 2>/dev/null")
      local out = p:read("*a")
      p:close()
      local passed, refused, pids, npids = 0, 0, {}, 0
      for line in out:gmatch("[^\n]+") do
        local r = cjson.decode(line)
        if not pids[r.pid] then
          pids[r.pid] = true
          npids = npids + 1
        end
        if r.ok then
          passed = passed + 1
        else
          refused = refused + 1
          assert.matches("^a dial from %+8613500000001 to %+86135000001%d%d on seat 1001 was placed [%d.]+ s ago; " ..
                         "pass force = true to dial anyway$", r.err)
        end
      end
      assert.equal(1, passed)
      assert.equal(39, refused)
      if npids > 1 then
        spanned = true
        break
      end
    end
    assert.is_true(spanned, "no round was served by both workers")
  end)

  it("refuses within the window, passes after it, and keys on the seat", function()
    local q = "caller=%2B861&callee=%2B862&seat=7&window=0.5"
    local t0 = socket.gettime()
    assert.is_true(click(q).ok)
    assert.is_false(click(q).ok)
    assert.is_true(click("caller=%2B861&callee=%2B862&seat=8&window=0.5").ok)
    -- refused until the window has passed, then let through
    assert.is_true(nginx.wait_for(function() return click(q).ok end, 10, "the window to pass"))
    -- the shared dict expires keys on nginx's clock in whole milliseconds: up to 1 ms early by this one
    assert.is_true(socket.gettime() - t0 >= 0.499, string.format("let through after %.4f s", socket.gettime() - t0))
  end)

  it("release lets the next click through", function()
    local q = "caller=%2B863&callee=%2B864&seat=9"
    assert.is_true(click(q).ok)
    assert.is_false(click(q).ok)
    assert.is_true(call(srv, "/release?" .. q).ok)
    assert.is_true(click(q).ok)
  end)

  it("new() explains a missing dict and a bad window", function()
    local r = click("dict=nope&caller=1&callee=2&seat=3")
    assert.matches("lua_shared_dict nope", r.new_err)
    r = click("window=0&caller=1&callee=2&seat=3")
    assert.matches("positive number", r.new_err)
  end)
end)

-- The whole client over the ngx transport, as docs/OPENRESTY.md shows it. Needs the C core built for
-- LuaJIT: `make LUA_VERSION=luajit` (build/luajit/clicktocall/core.so) or CTC_LUAJIT_CPATH="/dir/?.so".
describe("clicktocall client with transport = \"ngx\" #openresty", function()
  local cpath = os.getenv("CTC_LUAJIT_CPATH") or (REPO .. "/build/luajit/?.so")
  local core = cpath:gsub("%?", "clicktocall/core")
  local have_core = io.open(core) ~= nil
  local srv

  setup(function()
    if not have_core then return end
    local err
    srv, err = nginx.start{ http = read_file(REPO .. "/spec/nginx/client_e2e.conf"), ports = 2, refused = 1,
                            workers = 2,
                            lua_cpath = cpath .. ";" }
    assert(srv, err)
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  it("dials, refuses a double click, releases a dial that never left, works in a timer", function()
    if not have_core then
      pending("no LuaJIT build of clicktocall.core at " .. core .. " (make LUA_VERSION=luajit)")
      return
    end
    local q = "/dial?caller=13500000001&callee=13500000002&seat=1001"
    local a = call(srv, q)
    assert.is_true(a.ok, a.message)
    assert.matches("^sess%-", a.session_id)
    local b = call(srv, q)
    assert.is_false(b.ok)
    assert.equal("duplicate", b.kind)
    assert.is_false(b.sent)
    assert.equal(1, (call(srv, "/provider_count?uri=/rest/voiceCall/api")))
    assert.is_false(b.may_have_rung)
    assert.matches("was placed [%d.]+ s ago; pass force = true", b.message) -- settled: the window
    -- a 502 after sending may have rung: held for dial_guard_hold (300 s), and the refusal says why
    local u = "/dial?caller=13500000001&callee=13500000099&seat=1001"
    local c1 = call(srv, u)
    assert.same({ "http", true, true }, { c1.kind, c1.sent, c1.may_have_rung })
    local c2 = call(srv, u)
    assert.equal("duplicate", c2.kind)
    assert.matches("its outcome is unknown .* refused for another 3%d%d s; pass force = true", c2.message)
    -- a provider's refusal was sent but rang nobody (docs/OPENRESTY.md's handler reports may_have_rung)
    local r1 = call(srv, "/dial?caller=13500000001&callee=13500000098&seat=1001")
    assert.same({ "api", true, false }, { r1.kind, r1.sent, r1.may_have_rung })
    assert.equal(3, (call(srv, "/provider_count?uri=/rest/voiceCall/api")))
    -- a refused connection: nothing sent, so the guard forgets it and the next click is not "duplicate"
    local d1 = call(srv, "/dial?down=1&caller=13500000001&callee=13500000009&seat=1001")
    assert.equal("network", d1.kind)
    assert.is_false(d1.sent)
    local d2 = call(srv, "/dial?down=1&caller=13500000001&callee=13500000009&seat=1001")
    assert.equal("network", d2.kind)
    local t = call(srv, "/balance_in_timer")
    assert.equal(1234, t.balance)
    -- ngx_lua logs failed connects itself (lua_socket_log_errors); nothing else may be logged as an error
    local other = srv:error_log():gsub("[^\n]*connect%(%) failed[^\n]*\n?", "")
    assert.is_nil(other:match("%[error%]"), other)
  end)
end)
