-- A real nginx with ngx_lua dialling through transport "ngx" against the simulator:
-- concurrency without blocking the worker, keep-alive, error kinds, the dial guard.
local nginx = require "spec.helpers.nginx"
local sim = require "spec.helpers.sim"
local core = require "clicktocall.core"
local cjson = require("cjson").new()

local APP = [[
lua_shared_dict clicktocall_dials 1m;
init_worker_by_lua_block {
  local clicktocall = require "clicktocall"
  local function make(base, extra)
    local o = { base_url = base, app_secret = "TEST", user_data = "${user_data}", transport = "ngx",
                dial_guard = "clicktocall_dials", timeout = 2 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return assert(clicktocall.new(o))
  end
  package.loaded["app.client"] = make("${sim}")
  package.loaded["app.refused"] = make("http://127.0.0.1:${refused1}")
}
server {
  listen 127.0.0.1:${port1};
  default_type application/json;
  location = /call {
    content_by_lua_block {
      local a = ngx.req.get_uri_args()
      local client = package.loaded[a.refused and "app.refused" or "app.client"]
      local v, err
      if a.op == "dial" then
        v, err = client:dial { caller = a.caller, callee = a.callee, seat = a.seat, force = a.force == "1" }
      elseif a.op == "bind" then
        v, err = client:bind_seat { seat = a.seat, phone = a.caller }
      elseif a.op == "balance" then
        v, err = client:balance()
      else
        v, err = client:records_page { start_time = 0, end_time = ngx.time() + 86400 }
        v = v and #v
      end
      ngx.say(require("cjson").encode(v ~= nil and { ok = true, value = v }
        or { ok = false, kind = err.kind, message = err.message, sent = err.sent, status = err.status }))
    }
  }
  location = /download {
    content_by_lua_block {
      local a = ngx.req.get_uri_args()
      local ok, res = package.loaded["app.client"]:download_recording(a.url, a.path)
      ngx.say(require("cjson").encode(ok and { ok = true, bytes = res.bytes, sha256 = res.sha256 }
        or { ok = false, kind = res.kind, message = res.message, sent = res.sent, status = res.status }))
    }
  }
}
]]

describe("clicktocall inside nginx (transport \"ngx\") #integration #openresty", function()
  local s, app, http
  local have_core = core and io.open("build/luajit/clicktocall/core.so") ~= nil

  local function get(q, path)
    local res = assert(http:perform { method = "GET", url = app:url((path or "/call?") .. q), timeout = 60 })
    return cjson.decode(res.body)
  end

  local function ngx_escape(v)
    return (v:gsub("[^%w%-_.~/]", function(c) return string.format("%%%02X", c:byte()) end))
  end

  -- n requests at once through curl's parallel mode; returns the answers and the wall time
  local function parallel(queries)
    local cfg = os.tmpname()
    local f = assert(io.open(cfg, "w"))
    for _, q in ipairs(queries) do
      f:write('url = "', app:url("/call?" .. q), '"\n')
    end
    f:close()
    local t0 = core.now()
    local p = io.popen("unset LD_PRELOAD; curl -s --max-time 30 --no-progress-meter --parallel "
      .. "--parallel-immediate --parallel-max " .. #queries .. " --config " .. cfg)
    local out = p:read("*a")
    p:close()
    local took = core.now() - t0
    os.remove(cfg)
    local answers = {}
    for line in out:gmatch("[^\n]+") do answers[#answers + 1] = cjson.decode(line) end
    return answers, took
  end

  setup(function()
    if not have_core then return end
    s = assert(sim.start())
    local err
    app, err = nginx.start { http = APP, ports = 1, refused = 1, workers = 1,
      vars = { sim = s.base_url, user_data = s.user_data },
      lua_cpath = nginx.repo_root() .. "/build/luajit/?.so;" }
    assert(app, err)
    http = core.curl_transport()
  end)

  teardown(function()
    if http then http:close() end
    if app then app:stop() end
    if s then s:stop() end
  end)

  before_each(function()
    if not have_core then return end
    s:reset()
    assert.is_true(get("op=bind&seat=PP1&caller=13500000002").ok)
    s:post("/_sim/requests/clear")
  end)

  it("50 concurrent dials against a 0.5 s upstream finish together, not one after another", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    s:fault { path = "/rest/voiceCall/api", kind = "latency", ms = 500, count = 1000 }
    local queries = {}
    for i = 1, 50 do
      queries[i] = ("op=dial&seat=PP1&caller=13500000002&callee=139180%05d"):format(i)
    end
    local answers, took = parallel(queries)
    assert.equal(50, #answers)
    for _, a in ipairs(answers) do assert.is_true(a.ok, a.message) end
    -- 50 x 0.5 s would be 25 s if the worker blocked; measured here about 0.6 s
    print(("\n    50 concurrent dials through one nginx worker took %.2f s"):format(took))
    assert.is_true(took < 5, "took " .. took)
    assert.equal(50, #s:requests("/rest/voiceCall/api"))
  end)

  it("reuses upstream connections (keep-alive seen by the simulator)", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    for _ = 1, 20 do assert.is_true(get("op=balance").ok) end
    local conns = {}
    for _, r in ipairs(s:requests()) do conns[r.connection] = true end
    local n = 0
    for _ in pairs(conns) do n = n + 1 end
    assert.equal(1, n)
  end)

  it("maps every error kind as plain Lua does", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    local cases = {
      { { path = "/management/customer/isallow", kind = "status", status = 404 }, "op=balance", "http" },
      { { path = "/management/customer/isallow", kind = "api_error", message = "x" }, "op=balance", "api" },
      { { path = "/management/customer/isallow", kind = "bad_json" }, "op=balance", "protocol" },
      { { path = "/management/customer/isallow", kind = "wrong_data" }, "op=balance", "protocol" },
      { { path = "/call/record/voice", kind = "no_meta" }, "op=records", "protocol" },
      { { path = "/management/customer/isallow", kind = "latency", ms = 2500, count = 3 }, "op=balance", "timeout" },
      { { path = "/rest/voiceCall/api", kind = "reset_after_send" },
        "op=dial&seat=PP1&caller=13500000002&callee=13918000777", "network" },
    }
    for _, c in ipairs(cases) do
      s:post("/_sim/fault/clear")
      s:fault(c[1])
      local a = get(c[2])
      assert.is_false(a.ok)
      assert.equal(c[3], a.kind, c[1].kind .. ": " .. tostring(a.message))
    end
    local refused = get("op=balance&refused=1")
    assert.equal("network", refused.kind)
    assert.is_false(refused.sent)
    local bad = get("op=dial&seat=PP1&caller=123&callee=13918000777")
    assert.equal("argument", bad.kind)
    assert.equal(1, #s:requests("/rest/voiceCall/api")) -- the dropped dial went once; nothing else did
  end)

  -- download_recording through the ngx transport: the whole file, a body cut short, a redirect
  local function shell(cmd)
    local p = io.popen("unset LD_PRELOAD; " .. cmd .. " 2>&1")
    local out = p:read("*a")
    p:close()
    return out
  end

  local function listing(dir)
    local names = {}
    for name in shell("ls -A '" .. dir .. "'"):gmatch("[^\n]+") do names[#names + 1] = name end
    table.sort(names)
    return table.concat(names, " ")
  end

  local function recording_url(callee)
    local d = get("op=dial&force=1&seat=PP1&caller=13500000002&callee=" .. callee)
    assert.is_true(d.ok, d.message)
    return s.base_url .. "/recordings/" .. d.value .. ".wav"
  end

  local function download(url, path)
    return get("op=x&url=" .. ngx_escape(url) .. "&path=" .. ngx_escape(path), "/download?")
  end

  local function with_dir(fn)
    local dir = shell("mktemp -d /tmp/ctc-dl.XXXXXX"):gsub("%s+$", "")
    local ok, e = pcall(fn, dir)
    shell("rm -rf '" .. dir .. "'")
    if not ok then error(e, 0) end
  end

  it("downloads a whole recording (sha256 of the bytes on disk)", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    with_dir(function(dir)
      local url = recording_url("13918000201")
      local path = dir .. "/a.wav"
      local r = download(url, path)
      assert.is_true(r.ok, r.message)
      assert.equal(8044, r.bytes)
      local on_disk = shell("sha256sum '" .. path .. "'"):match("^(%x+)")
      assert.equal(on_disk, r.sha256)
      -- the simulator's own bytes
      local sim_copy = dir .. "/sim.wav"
      shell("curl -s -o '" .. sim_copy .. "' '" .. url .. "'")
      assert.equal(shell("sha256sum < '" .. sim_copy .. "'"):match("^(%x+)"), r.sha256)
      os.remove(sim_copy)
      assert.equal("a.wav", listing(dir))
    end)
  end)

  it("leaves nothing behind when the body is cut short (no file, no temporary file)", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    with_dir(function(dir)
      local url = recording_url("13918000202")
      s:fault { path = "/recordings/*", kind = "cut", count = 100 }
      local r = download(url, dir .. "/cut.wav")
      assert.is_false(r.ok)
      assert.equal("network", r.kind)
      assert.equal("", listing(dir))
      assert.is_true(#s:requests(url:match("^https?://[^/]+(/.*)$")) >= 1)
    end)
  end)

  it("follows a redirect to the recording", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    with_dir(function(dir)
      local url = recording_url("13918000203")
      local uri = url:match("^https?://[^/]+(/.*)$")
      s:fault { path = "/recordings/*", kind = "redirect", status = 302, location = url .. "?hop=1" }
      local path = dir .. "/moved.wav"
      local r = download(url, path)
      assert.is_true(r.ok, r.message)
      assert.equal(8044, r.bytes)
      assert.equal(shell("sha256sum '" .. path .. "'"):match("^(%x+)"), r.sha256)
      local seen = s:requests(uri)
      assert.equal(2, #seen)
      assert.equal("redirect", seen[1].fault)
      assert.matches("hop=1", seen[2].args)
      assert.equal("moved.wav", listing(dir))
    end)
  end)

  it("the dial guard refuses a double click; force = true goes through", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    local q = "op=dial&seat=PP1&caller=13500000002&callee=13918000099"
    assert.is_true(get(q).ok)
    local second = get(q)
    assert.is_false(second.ok)
    assert.equal("duplicate", second.kind)
    assert.is_false(second.sent)
    assert.is_true(get(q .. "&force=1").ok)
    assert.equal(2, #s:requests("/rest/voiceCall/api"))
  end)
end)
