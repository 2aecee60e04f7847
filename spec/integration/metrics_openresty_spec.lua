-- clicktocall.metrics inside nginx: four workers count into one lua_shared_dict, and a `location = /metrics`
-- served by any of them shows every worker's counts. N requests spread over the workers, each making calls
-- through an instrumented client on clicktocall.mock (a function transport): the scraped counts add up to
-- exactly what the N requests did, and promtool finds the exposition clean. clicktocall.log.json there too.
local nginx = require "spec.helpers.nginx"
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"

local N = 240
local WORKERS = 4

local APP = [[
lua_shared_dict ctc_metrics 1m;
lua_shared_dict ctc_dials 1m;
init_worker_by_lua_block {
  local clicktocall = require "clicktocall"
  local metrics = require "clicktocall.metrics"
  local mock = require "clicktocall.mock"
  local m = assert(metrics.new { dict = "ctc_metrics" })
  local provider = mock.new { secret = "TEST" }
  provider:bind("PP1", "+8613500000002")
  local client = assert(clicktocall.new {
    base_url = "http://mock", app_secret = "TEST", user_data = "4e2239c5-a6e6-4201-a072-8342e29c3ae3",
    transport = provider.transport, sleep = function() end, on_event = m.on_event,
    dial_guard = "ctc_dials", dial_guard_window = 600 })
  package.loaded["app"] = { m = m, client = m:instrument(client), provider = provider }
}
server {
  listen 127.0.0.1:${port1} reuseport;
  location = /work {
    content_by_lua_block {
      local app = package.loaded["app"]
      local i = tonumber(ngx.var.arg_i)
      if i % 4 == 0 then
        app.provider:fail("balance", 503) -- one retry, then the answer
      end
      local left = app.client:balance()
      -- the same dial from every request: the guard lets the first through, on whichever worker
      local sid, err = app.client:dial { caller = "13500000002", callee = "13918000010", seat = "PP1" }
      if i % 5 == 0 then
        app.client:dial { caller = "135", callee = "13918000010", seat = "PP1" } -- argument: nothing sent
      end
      ngx.say(ngx.worker.pid(), " ", tostring(left), " ", sid and "dialled" or err.kind)
    }
  }
  location = /log {
    content_by_lua_block {
      local lines = {}
      local app = package.loaded["app"]
      local client = assert(require("clicktocall").new {
        base_url = "http://mock", app_secret = "TEST", user_data = "4e2239c5-a6e6-4201-a072-8342e29c3ae3",
        transport = app.provider.transport, sleep = function() end,
        on_event = require("clicktocall.log").json(function(line) lines[#lines + 1] = line end) })
      app.provider:fail("balance", 503)
      client:balance()
      ngx.print(table.concat(lines, "\n"), "\n")
    }
  }
  location = /metrics {
    default_type "text/plain; version=0.0.4";
    content_by_lua_block {
      ngx.print(package.loaded["app"].m:render())
    }
  }
}
]]

describe("clicktocall.metrics inside nginx (4 workers, one shared dict) #integration #openresty", function()
  local app, http, dir
  local have_core = io.open("build/luajit/clicktocall/core.so") ~= nil

  setup(function()
    if not have_core then return end
    local err
    app, err = nginx.start { http = APP, ports = 1, workers = WORKERS,
      lua_cpath = nginx.repo_root() .. "/build/luajit/?.so;" }
    assert(app, err)
    http = core.curl_transport()
    dir = j.mkdtemp()
  end)

  teardown(function()
    if http then http:close() end
    if app then app:stop() end
    j.rmtree(dir)
  end)

  local function scrape()
    local res = assert(http:perform { method = "GET", url = app:url("/metrics"), max_body = 4 * 1024 * 1024,
                                      headers = { Connection = "close" } })
    assert.equal(200, res.status)
    return res.body, res.headers
  end

  local function value(text, series)
    for line in text:gmatch("[^\n]+") do
      local name, v = line:match("^(.-) (%S+)$")
      if name == series then return tonumber(v) end
    end
    return nil
  end

  it("N requests over several workers: the scraped counts add up exactly, and promtool finds them clean", function()
    if not have_core then
      pending("build/luajit/clicktocall/core.so is not built (make LUA_VERSION=luajit)")
      return
    end
    -- N requests, 16 at a time, each on its own connection (reuseport spreads them over the workers)
    local urls = {}
    for i = 1, N do
      urls[#urls + 1] = ('url = "%s"'):format(app:url("/work?i=" .. i))
    end
    j.write(dir .. "/urls", table.concat(urls, "\n") .. "\n")
    local out = j.shell(("curl -sS --parallel --parallel-max 16 --no-keepalive --config '%s/urls' 2>&1")
      :format(dir))
    local pids, lines, dialled = {}, 0, 0
    for pid, left, what in out:gmatch("(%d+) (%S+) (%S+)\n") do
      lines = lines + 1
      pids[pid] = true
      assert.truthy(tonumber(left), "balance: " .. left)
      if what == "dialled" then dialled = dialled + 1 else assert.equal("duplicate", what) end
    end
    assert.equal(N, lines, out)
    assert.equal(1, dialled)
    local workers = 0
    for _ in pairs(pids) do workers = workers + 1 end
    assert.is_true(workers >= 2, "the requests reached only " .. workers .. " worker(s)")

    -- each scrape is served by some worker; all of them show the same totals
    for _ = 1, 4 do
      local text, headers = scrape()
      local ctype
      for k, v in pairs(headers or {}) do
        if k:lower() == "content-type" then ctype = v end
      end
      assert.equal("text/plain; version=0.0.4", ctype)
      assert.equal(N, value(text, 'clicktocall_calls_total{op="balance",outcome="ok"}'))
      assert.equal(N / 4, value(text, 'clicktocall_requests_total{op="balance",outcome="http"}'))
      assert.equal(N, value(text, 'clicktocall_requests_total{op="balance",outcome="ok"}'))
      assert.equal(N / 4, value(text, 'clicktocall_retries_total{op="balance",reason="http"}'))
      assert.equal(N + N / 4, value(text, 'clicktocall_request_duration_seconds_count{op="balance"}'))
      assert.equal(N + N / 4, value(text, 'clicktocall_request_duration_seconds_bucket{op="balance",le="+Inf"}'))
      assert.equal(N, value(text, 'clicktocall_call_duration_seconds_count{op="balance"}'))
      assert.equal(1, value(text, 'clicktocall_calls_total{op="dial",outcome="ok"}'))
      assert.equal(1, value(text, 'clicktocall_requests_total{op="dial",outcome="ok"}'))
      assert.equal(N - 1, value(text, 'clicktocall_calls_total{op="dial",outcome="duplicate"}'))
      assert.equal(N - 1, value(text, "clicktocall_dials_refused_total"))
      assert.equal(N / 5, value(text, 'clicktocall_calls_total{op="dial",outcome="argument"}'))
      assert.truthy(value(text, "clicktocall_balance_seconds"))
      j.write(dir .. "/m.prom", text)
      assert.equal("exit=0\n", j.shell(("promtool check metrics < '%s/m.prom' 2>&1; echo \"exit=$?\""):format(dir)))
    end
    assert.equal("", app:error_log():gsub("[^\n]*signal process started[^\n]*\n?", ""))
  end)

  it("clicktocall.log.json inside nginx: a line an event, the time from ngx.now", function()
    if not have_core then
      pending("build/luajit/clicktocall/core.so is not built (make LUA_VERSION=luajit)")
      return
    end
    local res = assert(http:perform { method = "GET", url = app:url("/log") })
    assert.equal(200, res.status)
    local cjson = require "cjson"
    local types = {}
    for line in res.body:gmatch("[^\n]+") do
      local e = cjson.decode(line)
      types[#types + 1] = e.event
      assert.equal("balance", e.op)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", e.ts)
    end
    assert.same({ "request", "response", "retry", "request", "response" }, types)
  end)
end)
