-- rate_limit inside nginx, the issue's proof: every worker dials the simulator as fast as it may for a few
-- seconds, and the simulator (the provider) never sees more than the limit in any one-second window, counted
-- on its side from each request's arrival time; every refusal carries retry_after. Once with the limit in a
-- lua_shared_dict (one nginx, four workers), once in Redis with a password (two nginx instances, "two
-- machines", two workers each). The workers start together at a time given to all of them, then each dials,
-- and on a refusal tries again 20 ms later, or at its retry_after when that is sooner, so that they all race
-- for a place the moment it frees.
local nginx = require "spec.helpers.nginx"
local sim = require "spec.helpers.sim"
local redis_helper = require "spec.helpers.redis"
local core = require "clicktocall.core"
local cjson = require("cjson").new()

local RATE, PER, SECS = 5, 1.2, 3 -- per: a margin over the provider's second for the network's jitter

local APP = [[
lua_socket_log_errors off;
lua_shared_dict ctc_rate 1m;
lua_shared_dict storm 1m;
lua_shared_dict ctc_full 64k;
init_worker_by_lua_block {
  local clicktocall = require "clicktocall"
  local client = assert(clicktocall.new {
    base_url = "${sim}", app_secret = "TEST", user_data = "${user_data}", transport = "ngx", timeout = 5,
    connect_timeout = 1,
    rate_limit = { dial = { rate = ${rate}, per = ${per} }, store = "${store}", name = "proof" } })
  package.loaded["app"] = client
  local storm = ngx.shared.storm
  -- the storm: wait for the start time (set by /go), dial until it is ${secs} s past, keep the tally
  local function run()
    local waited = 0
    while not storm:get("go_at") do
      if ngx.worker.exiting() or waited > 120 then return end
      ngx.sleep(0.01)
      waited = waited + 0.01
    end
    local go_at = storm:get("go_at")
    ngx.update_time()
    if go_at > ngx.now() then ngx.sleep(go_at - ngx.now()) end
    local r = { pid = ngx.worker.pid(), machine = "${machine}", ok = 0, refused = 0, other = {},
                min_after = 1e9, max_after = 0 }
    local i = 0
    while ngx.now() < go_at + ${secs} and not ngx.worker.exiting() do
      i = i + 1
      local sid, err = client:dial { caller = "13500000002", callee = ("139%08d"):format(i), seat = "PP1" }
      if sid then
        r.ok = r.ok + 1
      elseif err.kind == "rate_limited" and not err.sent and err.may_have_rung == false
             and type(err.retry_after) == "number" then
        r.refused = r.refused + 1
        r.min_after = math.min(r.min_after, err.retry_after)
        r.max_after = math.max(r.max_after, err.retry_after)
        ngx.sleep(math.min(err.retry_after, 0.02)) -- again soon, and exactly when a place frees
      else
        r.other[#r.other + 1] = tostring(err)
        ngx.sleep(0.01)
      end
      ngx.update_time()
    end
    storm:set("res:" .. r.pid, require("cjson").encode(r))
  end
  ngx.timer.at(0, function(premature) if not premature then run() end end)
}
server {
  listen 127.0.0.1:${port1};
  default_type application/json;
  location = /go {
    content_by_lua_block {
      ngx.shared.storm:set("go_at", tonumber(ngx.var.arg_at))
      ngx.say("{}")
    }
  }
  location = /results {
    content_by_lua_block {
      local out = {}
      for _, k in ipairs(ngx.shared.storm:get_keys(0)) do
        if k:sub(1, 4) == "res:" then out[#out + 1] = require("cjson").decode(ngx.shared.storm:get(k)) end
      end
      ngx.say(require("cjson").encode(out))
    }
  }
  location = /full {
    content_by_lua_block {
      -- a dict with no room left: the limit cannot take a place, and never evicts one to make room
      local d = ngx.shared.ctc_full
      local i = 0
      for _, v in ipairs { string.rep("x", 1000), string.rep("x", 100), true } do -- every slab size ours could use
        while true do
          i = i + 1
          if not d:safe_set(("ctc:rate:full:junk:%08d"):format(i), v) then break end
        end
      end
      local out = {}
      for _, open in ipairs { false, true } do
        local events = {}
        local c = assert(require("clicktocall").new {
          base_url = "${sim}", app_secret = "TEST", user_data = "${user_data}", transport = "ngx",
          on_event = function(e) events[#events + 1] = e.type end,
          rate_limit = { balance = { rate = 2 }, store = "ctc_full", fail_open = open, name = "full" } })
        local v, err = c:balance()
        out[#out + 1] = { ok = v ~= nil, kind = err and err.kind, sent = err and err.sent,
                          message = err and err.message, events = events }
      end
      ngx.say(require("cjson").encode(out))
    }
  }
  location = /waited {
    content_by_lua_block {
      -- a bounded wait inside nginx: three balance reads under 1 per 0.3 s, each waiting its turn (ngx.sleep)
      local c = assert(require("clicktocall").new {
        base_url = "${sim}", app_secret = "TEST", user_data = "${user_data}", transport = "ngx",
        rate_limit = { balance = { rate = 1, per = 0.3, wait = 1 }, store = "${store}", name = "waited" } })
      ngx.update_time()
      local t0, ok = ngx.now(), 0
      for _ = 1, 3 do
        if c:balance() then ok = ok + 1 end
      end
      ngx.update_time()
      ngx.say(require("cjson").encode { ok = ok, took = ngx.now() - t0 })
    }
  }
}
]]

describe("rate_limit across nginx workers and machines #integration #openresty", function()
  local have_core = io.open("build/luajit/clicktocall/core.so") ~= nil
  local s, redis, http
  local started = {}

  local function machine(name, store)
    local srv, err = nginx.start { http = APP, workers = 2,
      vars = { sim = s.base_url, user_data = s.user_data, store = store, machine = name, rate = RATE, per = PER,
               secs = SECS },
      lua_cpath = nginx.repo_root() .. "/build/luajit/?.so;" }
    assert(srv, err)
    started[#started + 1] = srv
    return srv
  end

  local function get(url)
    local res = assert(http:perform { method = "GET", url = url, timeout = 10 })
    assert.are.equal(200, res.status, res.body)
    return cjson.decode(res.body)
  end

  setup(function()
    if not have_core then return end
    s = assert(sim.start { balance = 100000000 })
    redis = assert(redis_helper.start { password = "rate-limit-pw" })
    http = core.curl_transport()
    local c = require("clicktocall").new { base_url = s.base_url, app_secret = "TEST", user_data = s.user_data }
    assert(c:bind_seat { seat = "PP1", phone = "13500000002" })
    c:close()
  end)

  teardown(function()
    if http then http:close() end
    for _, srv in ipairs(started) do srv:stop() end
    if redis then redis:destroy() end
    if s then s:stop() end
  end)

  -- starts the storm on every machine at once, waits for every worker's tally, checks the simulator's side
  local function storm(machines, workers)
    s:post("/_sim/requests/clear")
    local at = os.time() + 1 -- both machines get the same start time (nginx's clock is this machine's)
    for _, m in ipairs(machines) do get(m:url("/go?at=" .. at)) end
    local results
    assert(nginx.wait_for(function()
      results = {}
      for _, m in ipairs(machines) do
        for _, r in ipairs(get(m:url("/results"))) do results[#results + 1] = r end
      end
      return #results == workers
    end, SECS + 30, "every worker's tally"))
    local ok, refused, pids = 0, 0, {}
    for _, r in ipairs(results) do
      assert.same({}, r.other, "only admissions and refusals: " .. cjson.encode(r))
      assert.is_true(r.refused > 0, "every worker dialled past the limit: " .. cjson.encode(r))
      assert.is_true(r.min_after > 0 and r.max_after <= PER, cjson.encode(r))
      ok, refused, pids[r.pid] = ok + r.ok, refused + r.refused, true
    end
    -- the provider's side: each dial's arrival; no window of one second holds more than RATE
    local arrivals = {}
    for _, q in ipairs(s:requests("/rest/voiceCall/api")) do arrivals[#arrivals + 1] = q.started end
    table.sort(arrivals)
    assert.are.equal(ok, #arrivals)
    local worst = 0
    for i = 1, #arrivals do
      local n = 0
      for k = i, #arrivals do
        if arrivals[k] < arrivals[i] + 1 then n = n + 1 end
      end
      worst = math.max(worst, n)
    end
    assert.is_true(worst <= RATE, "a one-second window at the provider held " .. worst)
    -- and the limit was used, not just refused: about RATE per PER seconds
    assert.is_true(ok >= 2 * RATE, "admitted " .. ok)
    return ok, refused, worst, pids
  end

  it("a lua_shared_dict: four workers of one nginx share the limit", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    local srv, err = nginx.start { http = APP, workers = 4,
      vars = { sim = s.base_url, user_data = s.user_data, store = "ctc_rate", machine = "one", rate = RATE,
               per = PER, secs = SECS },
      lua_cpath = nginx.repo_root() .. "/build/luajit/?.so;" }
    assert(srv, err)
    started[#started + 1] = srv
    local ok, refused, worst = storm({ srv }, 4)
    print(("\n    shared dict, 4 workers, %d in any %.1f s: %d dials reached the simulator, %d refused with " ..
           "retry_after; the busiest second there held %d"):format(RATE, PER, ok, refused, worst))
    local w = get(srv:url("/waited"))
    assert.are.equal(3, w.ok)
    assert.is_true(w.took >= 0.59 and w.took < 1.5, tostring(w.took))
    local full = get(srv:url("/full"))
    assert.same({ false, "network", false }, { full[1].ok, full[1].kind, full[1].sent })
    assert.is_truthy(full[1].message:find("could not hold the limit", 1, true), full[1].message)
    assert.is_true(full[2].ok)
    assert.are.equal("rate_limit_unavailable", full[2].events[1])
  end)

  it("Redis with a password: two machines, two workers each, share the limit", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    local url = "redis://:rate-limit-pw@127.0.0.1:" .. redis.port .. "/5"
    local m1, m2 = machine("one", url), machine("two", url)
    local ok, refused, worst = storm({ m1, m2 }, 4)
    print(("    Redis, 2 machines x 2 workers, %d in any %.1f s: %d dials reached the simulator, %d refused with " ..
           "retry_after; the busiest second there held %d"):format(RATE, PER, ok, refused, worst))
    local w = get(m1:url("/waited"))
    assert.are.equal(3, w.ok)
  end)
end)
