-- dial_guard = "redis://...": two nginx instances ("two machines", two workers each) behind one Redis, the
-- simulator as the provider. The same dial clicked on both machines at once goes out once; Redis down refuses
-- (kind "network", nothing sent) or dials when failing open; Redis back, all is as before.
local nginx = require "spec.helpers.nginx"
local sim = require "spec.helpers.sim"
local redis_helper = require "spec.helpers.redis"
local core = require "clicktocall.core"
local cjson = require("cjson").new()

local APP = [[
lua_socket_log_errors off;
init_worker_by_lua_block {
  local clicktocall = require "clicktocall"
  local function make(extra)
    local o = { base_url = "${sim}", app_secret = "TEST", user_data = "${user_data}", transport = "ngx",
                dial_guard = "${redis}", dial_guard_window = 120, timeout = 5, connect_timeout = 1 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return assert(clicktocall.new(o))
  end
  package.loaded["app.closed"] = make()
  package.loaded["app.open"] = make { dial_guard_fail_open = true }
}
server {
  listen 127.0.0.1:${port1};
  default_type application/json;
  location = /ping {
    content_by_lua_block { ngx.say(require("cjson").encode { ok = true, worker = ngx.worker.pid(),
                                                             machine = "${machine}", callee = "" }) }
  }
  location = /dial {
    content_by_lua_block {
      local a = ngx.req.get_uri_args()
      local client = package.loaded[a.open and "app.open" or "app.closed"]
      local v, err = client:dial { caller = a.caller, callee = a.callee, seat = a.seat }
      ngx.say(require("cjson").encode { ok = v ~= nil, value = v, kind = err and err.kind,
        sent = err and err.sent, message = err and err.message, callee = a.callee, machine = "${machine}",
        worker = ngx.worker.pid(), at = ngx.now() })
    }
  }
}
]]

describe("a redis:// dial guard across two nginx machines #integration #openresty #redis", function()
  local s, redis, m1, m2, http
  local have_core = io.open("build/luajit/clicktocall/core.so") ~= nil

  local function machine(name)
    local srv, err = nginx.start { http = APP, workers = 2,
      vars = { sim = s.base_url, user_data = s.user_data, redis = redis.url .. "/1", machine = name },
      lua_cpath = nginx.repo_root() .. "/build/luajit/?.so;" }
    assert(srv, err)
    return srv
  end

  setup(function()
    if not have_core then return end
    s = assert(sim.start())
    redis = assert(redis_helper.start())
    m1, m2 = machine("one"), machine("two")
    http = core.curl_transport()
  end)

  teardown(function()
    if http then http:close() end
    if m1 then m1:stop() end
    if m2 then m2:stop() end
    if redis then redis:destroy() end
    if s then s:stop() end
  end)

  -- every URL at once through curl's parallel mode; the answers (in the order they finished)
  local function parallel(urls)
    local cfg = os.tmpname()
    local f = assert(io.open(cfg, "w"))
    for _, u in ipairs(urls) do f:write('url = "', u, '"\n') end
    f:close()
    local p = io.popen("unset LD_PRELOAD; curl -s --max-time 60 --no-progress-meter --parallel "
      .. "--parallel-immediate --parallel-max " .. #urls .. " --config " .. cfg)
    local out = p:read("*a")
    p:close()
    os.remove(cfg)
    local answers = {}
    for line in out:gmatch("[^\n]+") do answers[#answers + 1] = cjson.decode(line) end
    assert.equal(#urls, #answers, out)
    return answers
  end

  local function url(srv, callee, extra)
    return srv:url("/dial?seat=PP1&caller=13500000002&callee=" .. callee .. (extra or ""))
  end

  -- nginx's master listens before its workers run: wait until every worker of both machines has answered,
  -- so that the race below is between running workers, not a backlog
  local function warm(srv)
    local seen = {}
    assert(nginx.wait_for(function()
      local urls = {}
      for i = 1, 8 do urls[i] = srv:url("/ping") end
      for _, a in ipairs(parallel(urls)) do seen[a.worker] = true end
      local n = 0
      for _ in pairs(seen) do n = n + 1 end
      return n == 2
    end, 20, "both workers of a machine to answer"))
  end

  local function dials_seen()
    return #s:requests("/rest/voiceCall/api")
  end

  -- n new pairs (callees from `first`), each clicked on both machines at once
  local function click_both(first, n, extra)
    local urls = {}
    for i = first, first + n - 1 do
      local callee = ("139180%05d"):format(i)
      -- either machine first, so that each wins some races
      local a, b = m1, m2
      if i % 2 == 0 then a, b = m2, m1 end
      urls[#urls + 1] = url(a, callee, extra)
      urls[#urls + 1] = url(b, callee, extra)
    end
    return parallel(urls)
  end

  local function tally(answers)
    local t = { ok = 0, kinds = {}, per_callee = {}, machines = {}, sent = {} }
    for _, a in ipairs(answers) do
      local c = t.per_callee[a.callee] or { ok = 0, refused = 0 }
      t.per_callee[a.callee] = c
      if a.ok then
        t.ok, c.ok = t.ok + 1, c.ok + 1
        t.machines[a.machine] = (t.machines[a.machine] or 0) + 1
      else
        t.kinds[a.kind] = (t.kinds[a.kind] or 0) + 1
        c.refused = c.refused + 1
        t.sent[tostring(a.sent)] = (t.sent[tostring(a.sent)] or 0) + 1
      end
    end
    return t
  end

  it("dials once per pair across machines, refuses on Redis down, and recovers", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    s:reset()
    local c = require("clicktocall").new { base_url = s.base_url, app_secret = "TEST", user_data = s.user_data }
    assert(c:bind_seat { seat = "PP1", phone = "13500000002" })
    c:close()
    s:post("/_sim/requests/clear")
    assert.equal("OK", redis:cmd("FLUSHALL"))
    warm(m1)
    warm(m2)

    -- 1. 20 pairs, each clicked on both machines at once: 20 dials out, 20 refusals of kind "duplicate"
    -- the winners' dials take 0.3 s at the provider: a refusal answered before its winner's dial came back
    -- was decided while both clicks were in flight
    s:fault { path = "/rest/voiceCall/api", kind = "latency", ms = 300, count = 20 }
    local first = click_both(1, 20)
    local t = tally(first)
    local overlapped = 0
    for _, a in ipairs(first) do
      if not a.ok then
        for _, b in ipairs(first) do
          if b.ok and b.callee == a.callee and a.at < b.at then overlapped = overlapped + 1 end
        end
      end
    end
    assert.is_true(overlapped >= 1, "no refusal came while its winner was in flight: the clicks were not at once")
    assert.equal(20, t.ok)
    assert.same({ duplicate = 20 }, t.kinds)
    assert.same({ ["false"] = 20 }, t.sent)
    for callee, pc in pairs(t.per_callee) do
      assert.same({ ok = 1, refused = 1 }, pc, callee)
    end
    assert.equal(20, dials_seen())
    print(("\n    two machines, 20 pairs clicked on both at once: %d dials at the simulator, %d duplicate " ..
           "refusals (wins: one %d, two %d; %d refused while the winner was in flight)"):format(dials_seen(),
           t.kinds.duplicate, t.machines.one or 0, t.machines.two or 0, overlapped))

    -- 2. Redis stopped: refused with kind "network", nothing sent; failing open, the dials go out
    redis:stop()
    local down = tally(click_both(101, 10))
    assert.equal(0, down.ok)
    assert.same({ network = 20 }, down.kinds)
    assert.same({ ["false"] = 20 }, down.sent)
    assert.equal(20, dials_seen())
    local open = tally(parallel { url(m1, "13918000201", "&open=1"), url(m2, "13918000202", "&open=1"),
                                  url(m1, "13918000203", "&open=1") })
    assert.equal(3, open.ok)
    assert.equal(23, dials_seen())
    print(("    Redis down: %d refusals of kind network (sent = false), %d dials out; failing open: %d of 3 " ..
           "dials out"):format(down.kinds.network, 0, open.ok))

    -- 3. Redis back (empty: it saves nothing): new pairs behave as in 1
    redis:restart()
    local back = tally(click_both(201, 20))
    assert.equal(20, back.ok)
    assert.same({ duplicate = 20 }, back.kinds)
    assert.equal(43, dials_seen())
    print(("    Redis back: %d dials out, %d duplicate refusals"):format(back.ok, back.kinds.duplicate))
  end)
end)
