-- dial_guard = "rediss://:password@host:port/db" inside nginx: a redis-server with a password and TLS
-- (throw-away certificates), the CA given to nginx by lua_ssl_trusted_certificate, the simulator as the
-- provider. The guard claims over TLS + AUTH in database 3; a wrong password or another CA refuses the dial
-- (kind "network", nothing sent) and names the password nowhere.
local nginx = require "spec.helpers.nginx"
local sim = require "spec.helpers.sim"
local redis_helper = require "spec.helpers.redis"
local cjson = require("cjson").new()

local CANARY = "Canary-tls-4c1d"

local APP = [[
lua_socket_log_errors off;
lua_ssl_trusted_certificate ${ca};
lua_ssl_verify_depth 2;
init_worker_by_lua_block {
  local clicktocall = require "clicktocall"
  local function make(guard)
    return assert(clicktocall.new { base_url = "${sim}", app_secret = "TEST", user_data = "${user_data}",
      transport = "ngx", dial_guard = guard, dial_guard_window = 120, timeout = 5, connect_timeout = ${timeout} })
  end
  package.loaded["app.good"] = make("${good}")
  package.loaded["app.wrong"] = make("${wrong}")
}
server {
  listen 127.0.0.1:${port1};
  default_type application/json;
  location = /dial {
    content_by_lua_block {
      local a = ngx.req.get_uri_args()
      local client = package.loaded["app." .. a.guard]
      local v, err = client:dial { caller = "13500000002", callee = a.callee, seat = "PP1" }
      ngx.say(require("cjson").encode { ok = v ~= nil, kind = err and err.kind, sent = err and err.sent,
                                        message = err and err.message })
    }
  }
}
]]

describe("a rediss:// dial guard with a password inside nginx #integration #openresty #redis", function()
  local s, redis, srv
  local have_core = io.open("build/luajit/clicktocall/core.so") ~= nil

  local function start(ca, good)
    local base = "127.0.0.1:" .. redis.tls_port .. "/3"
    local n, err = nginx.start { http = APP, workers = 2,
      vars = { sim = s.base_url, user_data = s.user_data, ca = ca, timeout = good and 1.5 or 1,
               good = good or "rediss://:" .. CANARY .. "@" .. base,
               wrong = "rediss://:wrong-" .. CANARY .. "@" .. base },
      lua_cpath = nginx.repo_root() .. "/build/luajit/?.so;" }
    assert(n, err)
    return n
  end

  setup(function()
    if not have_core then return end
    s = assert(sim.start())
    redis = assert(redis_helper.start { password = CANARY, tls = true })
    local c = require("clicktocall").new { base_url = s.base_url, app_secret = "TEST", user_data = s.user_data }
    assert(c:bind_seat { seat = "PP1", phone = "13500000002" })
    c:close()
  end)

  teardown(function()
    if srv then srv:stop() end
    if redis then redis:destroy() end
    if s then s:stop() end
  end)

  local function get(path)
    local p = io.popen("unset LD_PRELOAD; curl -s --max-time 30 '" .. srv:url(path) .. "'")
    local out = p:read("*a")
    p:close()
    local ok, v = pcall(cjson.decode, out)
    assert(ok, out .. "\n" .. srv:error_log())
    return v
  end

  local function dials_seen()
    return #s:requests("/rest/voiceCall/api")
  end

  it("claims over TLS + AUTH in database 3; a wrong password refuses, nothing sent", function()
    if not have_core then return pending("build/luajit/clicktocall/core.so is not built") end
    if srv then srv:stop() end
    srv = start(redis.ca_file)
    local before = dials_seen()
    local a = get("/dial?guard=good&callee=13900000001")
    assert.is_true(a.ok, a.message)
    local b = get("/dial?guard=good&callee=13900000001")
    assert.equal("duplicate", b.kind, b.message)
    assert.equal(before + 1, dials_seen())
    assert.equal(0, redis:cmd("DBSIZE"))
    assert.equal("OK", redis:cmd("SELECT", 3))
    local w = get("/dial?guard=wrong&callee=13900000002")
    assert.is_false(w.ok)
    assert.equal("network", w.kind)
    assert.is_false(w.sent)
    assert.truthy(w.message:find("AUTH", 1, true), w.message)
    assert.is_nil(w.message:find(CANARY, 1, true))
    assert.equal(before + 1, dials_seen())
    assert.is_nil(srv:error_log():find(CANARY, 1, true))
  end)

  it("refuses a Redis whose certificate another CA signed, nothing sent", function()
    if not have_core then return pending("build/luajit/clicktocall/core.so is not built") end
    if srv then srv:stop() end
    srv = start(redis.other_ca)
    local before = dials_seen()
    local a = get("/dial?guard=good&callee=13900000003")
    assert.is_false(a.ok)
    assert.equal("network", a.kind)
    assert.is_false(a.sent)
    assert.truthy(a.message:find("TLS", 1, true), a.message)
    assert.is_nil(a.message:find(CANARY, 1, true))
    assert.equal(before, dials_seen())
  end)

  it("a Redis answering in parts, each within the timeout, refuses at the timeout, nothing sent", function()
    if not have_core then return pending("build/luajit/clicktocall/core.so is not built") end
    local port, stop = redis_helper.fake("slow")
    if srv then srv:stop() end
    srv = start(redis.ca_file, "redis://127.0.0.1:" .. port)
    local before = dials_seen()
    local t0 = require("socket").gettime()
    local a = get("/dial?guard=good&callee=13900000004")
    local took = require("socket").gettime() - t0
    stop()
    assert.is_false(a.ok)
    assert.equal("network", a.kind, a.message)
    assert.is_false(a.sent)
    assert.is_true(took < 1.9, "took " .. took)
    assert.equal(before, dials_seen())
  end)
end)
