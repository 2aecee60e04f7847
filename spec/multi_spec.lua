-- The batch transport (core.curl_multi) against a real nginx on loopback, and the next records
-- page kept in flight by records{}.
local h = require "spec.helpers"
local nginx = require "spec.helpers.nginx"
local core = require "clicktocall.core"

local lua = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))

local HTTP = [[
lua_shared_dict seen 1m;
server {
  listen 127.0.0.1:${port1};
  keepalive_requests 10000;
  location = /sleep {
    content_by_lua_block {
      local seen = ngx.shared.seen
      local now = seen:incr("cur", 1, 0)
      if now > (seen:get("max") or 0) then seen:set("max", now) end
      seen:incr("sleep", 1, 0)
      seen:set("conn:" .. ngx.var.connection, true)
      ngx.sleep(tonumber(ngx.var.arg_s) or 0.3)
      seen:incr("cur", -1)
      ngx.say("i=", ngx.var.arg_i)
    }
  }
  location = /management/customer/isallow {
    content_by_lua_block {
      ngx.req.read_body()
      ngx.shared.seen:set("conn:" .. ngx.var.connection, true)
      ngx.header["Content-Type"] = "application/json"
      ngx.say('{"meta":{"success":true,"message":"ok"},"data":', ngx.var.connection, '}')
    }
  }
  location = /rest/voiceCall/api {
    content_by_lua_block {
      ngx.req.read_body()
      local seen = ngx.shared.seen
      local n = seen:incr("dial", 1, 0)
      if seen:get("drop_dials") then
        return ngx.exit(444) -- read the dial, then close without a byte
      end
      ngx.say('{"meta":{"success":true,"message":"ok"},"data":"sid-', n, '"}')
    }
  }
  location = /slow { content_by_lua_block { ngx.sleep(5) ngx.say("late") } }
  location = /huge {
    content_by_lua_block {
      local chunk = string.rep("x", 65536)
      for _ = 1, 64 do ngx.print(chunk) ngx.flush(true) end
    }
  }
  location = /blob {
    content_by_lua_block {
      local n = tonumber(ngx.var.arg_n)
      local chunk = string.rep("b", 65536)
      ngx.header["Content-Length"] = n
      while n > 0 do
        local k = math.min(n, #chunk)
        ngx.print(chunk:sub(1, k))
        n = n - k
      end
    }
  }
  location = /cut {
    content_by_lua_block {
      ngx.header["Content-Length"] = 100000
      ngx.print(string.rep("c", 1000))
      ngx.flush(true)
      return ngx.exit(444)
    }
  }
  location = /trickle {
    content_by_lua_block {
      ngx.header["Content-Length"] = 1000000
      ngx.print(string.rep("t", 1000))
      ngx.flush(true)
      ngx.sleep(5)
    }
  }
  location = /missing { return 404 "no such recording"; }
  location = /redirect { return 302 /blob?n=10; }
  location = /counts {
    content_by_lua_block {
      local seen, conns = ngx.shared.seen, 0
      for _, k in ipairs(seen:get_keys(0)) do if k:find("^conn:") then conns = conns + 1 end end
      ngx.say(require("cjson").encode { max = seen:get("max") or 0, sleep = seen:get("sleep") or 0,
        dial = seen:get("dial") or 0, conns = conns })
    }
  }
  location = /reset { content_by_lua_block { ngx.shared.seen:flush_all() ngx.say("ok") } }
  location = /drop-dials { content_by_lua_block { ngx.shared.seen:set("drop_dials", true) ngx.say("ok") } }
}
]]

local function tmpname()
  local p = os.tmpname()
  os.remove(p)
  return p
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- every result of m, waiting until none is in flight (deadline: 20 s)
local function drain(m)
  local got, deadline = {}, core.now() + 20
  while m:count() > 0 do
    assert(core.now() < deadline, "transfers never finished")
    for _, d in ipairs(m:wait(1)) do got[#got + 1] = d end
  end
  return got
end

-- the sockets this process holds open, from /proc
local function sockets()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*n")
  f:close()
  local p = assert(io.popen("ls -l /proc/" .. pid .. "/fd"))
  local n = 0
  for line in p:lines() do
    if line:find("socket:", 1, true) then n = n + 1 end
  end
  p:close()
  return n
end

describe("core.curl_multi", function()
  local srv

  local function get(path)
    local t = core.curl_transport()
    local res = assert(t:perform { method = "GET", url = srv:url(path) })
    t:close()
    return res
  end

  local function counts()
    return h.decode(get("/counts").body)
  end

  setup(function()
    local err
    srv, err = nginx.start { http = HTTP }
    assert(srv, err)
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  before_each(function()
    get("/reset")
  end)

  it("runs many transfers at once: the server sees 8 in flight, and every token gets its answer", function()
    local m = core.curl_multi {}
    local tokens = {}
    for i = 1, 8 do
      tokens[i] = { i = i } -- any Lua value; handed back as the same value
      assert.is_true(m:add(tokens[i], { method = "GET", url = srv:url("/sleep?i=" .. i) }))
    end
    assert.equal(8, m:count())
    local got = drain(m)
    assert.equal(8, #got)
    local seen = {}
    for _, d in ipairs(got) do
      assert.is_table(d[1])
      assert.equal(tokens[d[1].i], d[1])
      assert.equal(200, d[2].status)
      assert.equal("i=" .. d[1].i .. "\n", d[2].body)
      seen[d[1].i] = true
    end
    for i = 1, 8 do assert.is_true(seen[i]) end
    assert.equal(8, counts().max)
    m:close()
  end)

  it("max_connections bounds the transfers on the wire; the rest wait inside libcurl", function()
    local m = core.curl_multi { max_connections = 2 }
    for i = 1, 6 do assert(m:add(i, { method = "GET", url = srv:url("/sleep?s=0.05&i=" .. i) })) end
    local got = drain(m)
    assert.equal(6, #got)
    local c = counts()
    assert.equal(6, c.sleep)
    assert.equal(2, c.max)
    assert.is_true(c.conns <= 2, "connections: " .. c.conns)
    m:close()
  end)

  it("keeps connections alive across transfers (counted by the server)", function()
    local m = core.curl_multi {}
    for _ = 1, 3 do
      for i = 1, 4 do assert(m:add(i, { method = "GET", url = srv:url("/sleep?s=0.05&i=" .. i) })) end
      assert.equal(4, #drain(m))
    end
    local c = counts()
    assert.equal(12, c.sleep)
    assert.equal(4, c.conns)
    m:close()
  end)

  it("wait(0) is one round that does not block; wait with nothing in flight returns at once", function()
    local m = core.curl_multi { max_connections = 1 }
    local t0 = core.now()
    assert.same({}, m:wait(5))
    assert.is_true(core.now() - t0 < 0.5)
    assert(m:add("warm", { method = "GET", url = srv:url("/sleep?s=0") }))
    drain(m) -- a kept-alive connection, as the records iterator has when it asks for the next page
    get("/reset")
    t0 = core.now()
    assert(m:add("slow", { method = "GET", url = srv:url("/sleep?s=1") }))
    assert.same({}, m:wait(0))
    assert.is_true(core.now() - t0 < 0.5)
    -- the request is on the wire: the server has it before anyone waits again
    assert.is_truthy(nginx.wait_for(function() return counts().sleep == 1 end, 5))
    m:close()
  end)

  it("results and errors have exactly the shape perform gives", function()
    local t = core.curl_transport()
    local m = core.curl_multi {}
    local refused = "http://127.0.0.1:" .. nginx.free_port() .. "/"
    local requests = {
      ok = { method = "GET", url = srv:url("/sleep?s=0&i=1") },
      headers = { method = "POST", url = srv:url("/management/customer/isallow"), body = "{}",
                  headers = { ["Content-Type"] = "application/json" } },
      no_headers = { method = "POST", url = srv:url("/management/customer/isallow"), body = "{}",
                     want_headers = false },
      refused = { method = "GET", url = refused },
      scheme = { method = "GET", url = "file:///etc/passwd" },
      max_body = { method = "GET", url = srv:url("/huge"), max_body = 256 * 1024 },
      timeout = { method = "GET", url = srv:url("/slow"), timeout = 0.3 },
      missing = { method = "GET", url = srv:url("/missing") },
      redirect = { method = "GET", url = srv:url("/redirect") },
    }
    for name, req in pairs(requests) do assert(m:add(name, req)) end
    local got = {}
    for _, d in ipairs(drain(m)) do got[d[1]] = d end
    for name, req in pairs(requests) do
      local res, err = t:perform(req)
      local d = assert(got[name], name)
      if res then
        assert.is_nil(d[3], name)
        assert.same({ "body", "headers", "status" }, (function()
          local keys = {}
          for k in pairs(d[2]) do keys[#keys + 1] = k end
          table.sort(keys)
          return keys
        end)())
        assert.equal(res.status, d[2].status, name)
        if name ~= "headers" and name ~= "no_headers" then assert.equal(res.body, d[2].body, name) end
        assert.equal(res.headers["content-type"], d[2].headers["content-type"], name)
      else
        assert.is_nil(d[2], name)
        local e = d[3]
        assert.equal(err.kind, e.kind, name)
        assert.equal(err.sent, e.sent, name)
        assert.equal(err.code, e.code, name)
        assert.equal(err.code_name, e.code_name, name)
        assert.equal(err.retryable, e.retryable, name)
        -- libcurl's own text may hold a time ("after 0 ms"): compare it without digits
        assert.equal((err.message:gsub("%d+", "N")), (e.message:gsub("%d+", "N")), name)
      end
    end
    assert.equal("timeout", got.timeout[3].kind)
    assert.equal("protocol", got.max_body[3].kind)
    assert.matches("max_body", got.max_body[3].message)
    assert.equal("protocol", got.scheme[3].kind)
    assert.is_false(got.scheme[3].sent)
    assert.equal("network", got.refused[3].kind)
    assert.is_false(got.refused[3].sent)
    assert.equal(302, got.redirect[2].status) -- API calls never follow redirects
    assert.same({}, got.no_headers[2].headers)
    assert.equal("application/json", got.headers[2].headers["content-type"])
    t:close()
    m:close()
  end)

  it("each transfer keeps its own timeout", function()
    local m = core.curl_multi {}
    assert(m:add("short", { method = "GET", url = srv:url("/slow"), timeout = 0.3 }))
    assert(m:add("long", { method = "GET", url = srv:url("/sleep?s=0.8&i=1"), timeout = 3 }))
    local got = {}
    for _, d in ipairs(drain(m)) do got[d[1]] = d end
    assert.equal("timeout", got.short[3].kind)
    assert.equal(200, got.long[2].status)
    m:close()
  end)

  it("never sends a dial twice when the server reads it and closes a reused connection", function()
    local m = core.curl_multi { max_connections = 1 }
    assert(m:add("warm", { method = "POST", url = srv:url("/management/customer/isallow"), body = "{}" }))
    assert.equal(200, drain(m)[1][2].status) -- the connection the dial will reuse
    get("/drop-dials")
    assert(m:add("dial", { method = "POST", url = srv:url("/rest/voiceCall/api"), body = "{}",
                           resend_safe = false }))
    local d = drain(m)[1]
    assert.equal("dial", d[1])
    assert.is_nil(d[2])
    assert.is_true(d[3].sent)
    assert.equal(1, counts().dial)
    if tonumber(core.curl_version:match("^(%d+%.%d+)")) >= 7.80 then
      assert.equal("CURLE_ABORTED_BY_CALLBACK", d[3].code_name)
      assert.matches("not sent again", d[3].message)
    end
    m:close()
  end)

  it("a download streams to its file: bytes, sha256, status, headers; redirects followed", function()
    local m = core.curl_multi {}
    local a, b = tmpname(), tmpname()
    assert(m:add("a", { method = "GET", url = srv:url("/blob?n=300000") }, a))
    assert(m:add("b", { method = "GET", url = srv:url("/redirect") }, b))
    local got = {}
    for _, d in ipairs(drain(m)) do got[d[1]] = d end
    local t = core.curl_transport()
    local c = tmpname()
    local want = assert(t:download({ method = "GET", url = srv:url("/blob?n=300000") }, c))
    assert.equal(300000, got.a[2].bytes)
    assert.equal(want.sha256, got.a[2].sha256)
    assert.equal(200, got.a[2].status)
    assert.equal("300000", got.a[2].headers["content-length"])
    local f = assert(io.open(a, "rb"))
    assert.equal(string.rep("b", 300000), f:read("*a"))
    f:close()
    assert.equal(10, got.b[2].bytes)
    for _, p in ipairs { a, b, c } do os.remove(p) end
    t:close()
    m:close()
  end)

  it("memory stays flat whatever the download size: 4 x 64 MiB at once add < 8 MiB of RSS #noasan", function()
    -- timeout = 300: a loaded machine may take more than the default 10 s for 256 MiB over loopback
    local script = string.format([[
      package.cpath = %q
      local core = require "clicktocall.core"
      local function rss()
        local f = io.open("/proc/self/status")
        local kb = f:read("*a"):match("VmHWM:%%s*(%%d+)")
        f:close()
        return tonumber(kb) * 1024
      end
      local m = core.curl_multi {}
      local files = {}
      local warm = os.tmpname()
      os.remove(warm)
      assert(m:add(0, { method = "GET", url = %q }, warm))
      while m:count() > 0 do m:wait(1) end
      os.remove(warm)
      local r0 = rss()
      for i = 1, 4 do
        files[i] = os.tmpname()
        os.remove(files[i])
        assert(m:add(i, { method = "GET", url = %q, timeout = 300 }, files[i]))
      end
      local bytes = 0
      while m:count() > 0 do
        for _, d in ipairs(m:wait(1)) do bytes = bytes + assert(d[2], d[3] and d[3].message).bytes end
      end
      for i = 1, 4 do os.remove(files[i]) end
      io.write(string.format("%%d %%d", rss() - r0, bytes))
    ]], package.cpath, srv:url("/blob?n=1000"), srv:url("/blob?n=67108864"))
    local p = assert(io.popen(lua .. " -e " .. string.format("%q", script) .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    local growth, bytes = out:match("^(%d+) (%d+)$")
    assert.equal(4 * 67108864, tonumber(bytes), out)
    assert.is_true(tonumber(growth) < 8 * 1024 * 1024, string.format("peak RSS grew by %.1f MiB",
                                                                      tonumber(growth) / 1048576))
  end)

  it("a download is whole or nothing: cut short, 404 and an existing file leave no file of ours", function()
    local m = core.curl_multi {}
    local t = core.curl_transport()
    local cut, missing, taken = tmpname(), tmpname(), os.tmpname()
    assert(m:add("cut", { method = "GET", url = srv:url("/cut") }, cut))
    assert(m:add("missing", { method = "GET", url = srv:url("/missing") }, missing))
    local ok, err = m:add("taken", { method = "GET", url = srv:url("/blob?n=10") }, taken)
    local sres, serr = t:download({ method = "GET", url = srv:url("/blob?n=10") }, taken)
    assert.is_nil(ok)
    assert.is_nil(sres)
    assert.equal(serr.kind, err.kind)
    assert.equal("argument", err.kind)
    assert.equal(serr.message, err.message)
    assert.equal(2, m:count())
    local got = {}
    for _, d in ipairs(drain(m)) do got[d[1]] = d end
    local c2 = tmpname()
    local _, want = t:download({ method = "GET", url = srv:url("/cut") }, c2)
    assert.is_nil(got.cut[2])
    assert.equal(want.kind, got.cut[3].kind)
    assert.equal(want.code_name, got.cut[3].code_name)
    assert.is_false(exists(cut))
    assert.equal(404, got.missing[2].status)
    assert.is_false(exists(missing))
    assert.is_true(exists(taken)) -- not ours: left alone
    os.remove(taken)
    t:close()
    m:close()
  end)

  it("close() drops transfers in flight and removes their unfinished files; it is idempotent", function()
    collectgarbage()
    collectgarbage()
    local before = sockets()
    local m = core.curl_multi {}
    local files = {}
    for i = 1, 3 do
      files[i] = tmpname()
      assert(m:add(i, { method = "GET", url = srv:url("/trickle") }, files[i]))
    end
    assert(m:add("api", { method = "GET", url = srv:url("/sleep?s=2") }))
    -- wait until every file has its first bytes: the transfers are well under way
    assert.is_truthy(nginx.wait_for(function()
      m:wait(0.05)
      for i = 1, 3 do
        local f = io.open(files[i])
        local n = f and f:seek("end")
        if f then f:close() end
        if n ~= 1000 then return false end
      end
      return true
    end, 10))
    assert.equal(4, m:count())
    m:close()
    for i = 1, 3 do assert.is_false(exists(files[i])) end
    assert.equal(before, sockets())
    m:close()
    assert.matches("closed", tostring(m))
    for _, call in ipairs {
      function() m:add(1, { method = "GET", url = srv:url("/sleep") }) end,
      function() m:wait(0) end,
      function() m:count() end,
    } do
      assert.has_error(call)
    end
    local ok, msg = pcall(function() m:add(1, { method = "GET", url = srv:url("/sleep") }) end)
    assert.is_false(ok)
    assert.matches("'add'.*the clicktocall multi is closed", msg)
  end)

  it("a multi dropped with transfers in flight is collected: files removed, sockets closed", function()
    collectgarbage()
    collectgarbage()
    local before = sockets()
    local file = tmpname()
    do
      local m = core.curl_multi {}
      assert(m:add({}, { method = "GET", url = srv:url("/trickle") }, file))
      assert.is_truthy(nginx.wait_for(function()
        m:wait(0.05)
        return exists(file) and sockets() > before
      end, 10))
    end
    collectgarbage()
    collectgarbage()
    assert.is_false(exists(file))
    assert.equal(before, sockets())
  end)

  it("a misused request raises and leaves the multi usable", function()
    local m = core.curl_multi {}
    assert.has_error(function() m:add(1, { method = "PUT", url = srv:url("/sleep") }) end)
    assert.has_error(function() m:add(1, { method = "GET" }) end)
    assert.has_error(function() m:add(1, "not a table") end)
    assert.has_error(function() core.curl_multi { max_connections = 0 } end)
    assert.has_error(function() core.curl_multi { max_connections = 1.5 } end)
    assert.equal(0, m:count())
    assert(m:add(1, { method = "GET", url = srv:url("/sleep?s=0&i=7") }))
    assert.equal("i=7\n", drain(m)[1][2].body)
    m:close()
  end)

  it("a closing value on 5.4 closes the multi", function()
    if _VERSION ~= "Lua 5.4" then return pending("5.4 only") end
    local run = assert(load([[
      local core, url = ...
      local kept
      do
        local m <close> = core.curl_multi {}
        kept = m
        m:add(1, { method = "GET", url = url })
      end
      return kept
    ]]))
    local m = run(core, srv:url("/sleep?s=2"))
    assert.matches("closed", tostring(m))
  end)
end)

describe("core.curl_multi against a hostile server", function()
  local srv, port

  local function has(pattern) return srv:has(pattern) end
  local function wait_for(pattern) return srv:wait_for(pattern) end

  setup(function()
    srv = require("spec.helpers.hostile").start("stray")
    port = srv.port
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  -- the third fact (DESIGN.md): a kept-alive connection holding unread bytes carries no request
  it("never takes a stray answer left on a kept-alive connection for the next dial's", function()
    local m = core.curl_multi { max_connections = 1 }
    for i = 1, 3 do
      assert(m:add(i, { method = "POST", url = "http://127.0.0.1:" .. port .. "/rest/voiceCall/api",
                        body = "{}", resend_safe = false }))
      local d = drain(m)[1]
      assert.equal(i, d[1])
      assert.is_nil(d[3], d[3] and d[3].message)
      assert.equal("sid-" .. i, h.decode(d[2].body).data)
      wait_for("stray " .. i .. "\n")
    end
    assert.is_truthy(has("request 3\n"))
    assert.is_nil(has("request 4\n"))
    -- a download on the same (poisoned) connection gets its own body too
    local file = os.tmpname()
    os.remove(file)
    assert(m:add("file", { method = "GET", url = "http://127.0.0.1:" .. port .. "/rec.wav" }, file))
    local d = drain(m)[1]
    assert.is_nil(d[3], d[3] and d[3].message)
    local f = assert(io.open(file))
    assert.equal("sid-4", h.decode(f:read("*a")).data)
    f:close()
    os.remove(file)
    m:close()
  end)
end)

describe("records{} with libcurl keeps the next page in flight while the current one decodes", function()
  local clicktocall = require "clicktocall"
  local srv

  setup(function()
    local err
    srv, err = nginx.start { http = [[
lua_shared_dict seen 1m;
server {
  listen 127.0.0.1:${port1};
  keepalive_requests 10000;
  location = /call/record/voice {
    content_by_lua_block {
      ngx.req.read_body()
      local asked = require("cjson").decode(ngx.req.get_body_data()).maxId
      local seen = ngx.shared.seen
      seen:incr("pages", 1, 0)
      seen:set("asked:" .. asked, true)
      local recs = {}
      for id = asked + 1, math.min(asked + 100, 250) do
        recs[#recs + 1] = '{"id":' .. id .. ',"sessionId":"s-' .. id .. '","recordFlag":"0"}'
      end
      ngx.say('{"meta":{"success":true,"message":"ok"},"data":[', table.concat(recs, ","), ']}')
    }
  }
  location = /pages { content_by_lua_block { ngx.say(ngx.shared.seen:get("pages") or 0) } }
  location = /reset { content_by_lua_block { ngx.shared.seen:flush_all() ngx.say("ok") } }
}
]] }
    assert(srv, err)
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  local function pages()
    local t = core.curl_transport()
    local res = assert(t:perform { method = "GET", url = srv:url("/pages") })
    t:close()
    return tonumber(res.body)
  end

  before_each(function()
    local t = core.curl_transport()
    assert(t:perform { method = "GET", url = srv:url("/reset") })
    t:close()
  end)

  local function client()
    return assert(clicktocall.new { base_url = srv:url(""), app_secret = h.SECRET, user_data = h.USER_DATA })
  end

  local WINDOW = { start_time = "2023-01-01 00:00:00", end_time = "2023-01-02 00:00:00" }

  -- plain Lua 5.1 cannot yield across pcall, so its libcurl transport has no scheduler: one page at a time
  local SEQUENTIAL = _VERSION == "Lua 5.1" and not rawget(_G, "jit")

  it("page 2 is asked for while the caller is still at record 1 of page 1; every record once, in order", function()
    if SEQUENTIAL then
      return pending("plain Lua 5.1: one page at a time")
    end
    local c = client()
    local ids = {}
    for rec in c:records(WINDOW) do
      ids[#ids + 1] = rec.id
      if #ids == 1 then
        -- the caller has not finished page 1, yet the server has the request for page 2
        assert.is_truthy(nginx.wait_for(function() return pages() == 2 end, 5))
      end
    end
    assert.equal(250, #ids)
    for k = 1, 250 do assert.equal(k, ids[k]) end
    assert.equal(3, pages()) -- 0, 100, 200: no page asked twice, none after the last
    c:close()
  end)

  it("asks for no page past a limit the current page reaches", function()
    local c = client()
    local n = 0
    for _ in c:records { start_time = WINDOW.start_time, end_time = WINDOW.end_time, limit = 100 } do
      n = n + 1
    end
    assert.equal(100, n)
    assert.equal(1, pages())
    c:close()
  end)

  it("an early page nobody takes (the loop left) is dropped with the client", function()
    if SEQUENTIAL then
      return pending("plain Lua 5.1: one page at a time")
    end
    local c = client()
    for _ in c:records(WINDOW) do break end -- luacheck: ignore 512
    assert.is_truthy(nginx.wait_for(function() return pages() == 2 end, 5))
    c:close()
    assert.equal(2, pages())
  end)
end)
