-- The jobs inside nginx (transport "ngx", clicktocall.batch on ngx.thread) against the simulator:
-- records{ concurrency } gives the sequential ids and pages the slices at once, archive_recordings
-- downloads several recordings at once and a re-run downloads nothing, sync delivers once.
local nginx = require "spec.helpers.nginx"
local sim = require "spec.helpers.sim"
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"
local cjson = require("cjson").new()

local APP = [[
init_worker_by_lua_block {
  package.loaded["app.client"] = assert(require("clicktocall").new {
    base_url = "${sim}", app_secret = "TEST", user_data = "${user_data}", transport = "ngx", timeout = 5 })
}
server {
  listen 127.0.0.1:${port1};
  default_type application/json;
  location = /records {
    content_by_lua_block {
      local a = ngx.req.get_uri_args()
      local client = package.loaded["app.client"]
      local ids = {}
      ngx.update_time()
      local t0 = ngx.now()
      -- the scheduler waits on ngx.semaphore: a poll would show as ngx.sleep calls
      local sleep, sleeps = ngx.sleep, 0
      ngx.sleep = function(s) sleeps = sleeps + 1 return sleep(s) end
      local ok, err = pcall(function()
        for rec in client:records { start_time = tonumber(a.from), end_time = tonumber(a.to),
                                    concurrency = tonumber(a.n) } do
          ids[#ids + 1] = rec.id
        end
      end)
      ngx.sleep = sleep
      ngx.update_time()
      ngx.say(require("cjson").encode { ok = ok, ids = ids, took = ngx.now() - t0, sleeps = sleeps,
                                        kind = not ok and err.kind or nil })
    }
  }
  location = /archive {
    content_by_lua_block {
      local a = ngx.req.get_uri_args()
      ngx.update_time()
      local t0 = ngx.now()
      local s, err = package.loaded["app.client"]:archive_recordings {
        start_time = tonumber(a.from), end_time = tonumber(a.to), dir = a.dir, concurrency = tonumber(a.n) }
      ngx.update_time()
      ngx.say(require("cjson").encode(s and { ok = true, downloaded = s.downloaded, skipped = s.skipped,
        failed = #s.failed, took = ngx.now() - t0 } or { ok = false, kind = err.kind, message = err.message }))
    }
  }
  location = /sync {
    content_by_lua_block {
      local a = ngx.req.get_uri_args()
      local n = 0
      local s, err = package.loaded["app.client"]:sync { state = a.state, on_record = function() n = n + 1 end }
      ngx.say(require("cjson").encode(s and { ok = true, delivered = s.delivered, seen = n }
        or { ok = false, kind = err.kind, message = err.message }))
    }
  }
}
]]

describe("the jobs inside nginx (transport \"ngx\") #integration #openresty", function()
  local s, app, http, dir
  local have_core = io.open("build/luajit/clicktocall/core.so") ~= nil

  local function get(path)
    local res = assert(http:perform { method = "GET", url = app:url(path), timeout = 120 })
    return cjson.decode(res.body)
  end

  setup(function()
    if not have_core then return end
    s = assert(sim.start())
    local err
    app, err = nginx.start { http = APP, ports = 1, workers = 1,
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
    dir = j.mkdtemp()
    j.shell("chmod 0777 '" .. dir .. "'")
  end)
  after_each(function() j.rmtree(dir) end)

  it("records{ concurrency = 8 } gives the sequential ids, every edge once, and pages the slices at once", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    local t0 = os.time() - 2 * 86400
    s:post("/_sim/seed", { count = 1601, start_time = t0, end_time = t0 + 1600 })
    s:fault { path = "/call/record/voice", kind = "latency", ms = 30, count = 10000 }
    local q = ("/records?from=%d&to=%d&n="):format(t0, t0 + 1600)
    local seq = get(q .. "1")
    assert.is_true(seq.ok)
    assert.equal(1601, #seq.ids)
    for _, n in ipairs { 4, 8, 16 } do
      local par = get(q .. n)
      assert.is_true(par.ok, par.kind)
      local a, b = {}, {}
      for i, id in ipairs(seq.ids) do a[i] = id end
      for i, id in ipairs(par.ids) do b[i] = id end
      table.sort(a)
      table.sort(b)
      assert.same(a, b)
      assert.equal(0, par.sleeps) -- the slices and the caller wait on semaphores, never poll
      if n == 8 then
        print(("\n    1601 records, 30 ms a page, in nginx: concurrency 1 %.2f s, 8 %.2f s"):format(seq.took, par.took))
        assert.is_true(par.took < seq.took / 2, ("sequential %.2f s, 8 slices %.2f s"):format(seq.took, par.took))
      end
    end
  end)

  it("archive_recordings downloads several at once and a re-run downloads nothing", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    local now = os.time()
    s:post("/_sim/seed", { count = 24, start_time = now - 86400 + 600, end_time = now - 60, recorded = true })
    s:fault { path = "/recordings/*", kind = "latency", ms = 100, count = 1000 }
    local q = ("/archive?from=%d&to=%d&dir=%s&n="):format(now - 86400, now, dir)
    local r = get(q .. "8")
    assert.is_true(r.ok, r.message)
    assert.equal(24, r.downloaded)
    assert.equal(0, r.failed)
    -- 24 x 100 ms one after another would be 2.4 s
    assert.is_true(r.took < 1.5, "took " .. r.took)
    local n = #s:requests()
    local again = get(q .. "8")
    assert.equal(0, again.downloaded)
    assert.equal(24, again.skipped)
    local recordings = 0
    for i, req in ipairs(s:requests()) do
      if i > n and req.uri:find("^/recordings/") then recordings = recordings + 1 end
    end
    assert.equal(0, recordings)
  end)

  it("sync delivers each record once across runs", function()
    if not have_core then return pending("make LUA_VERSION=luajit first") end
    local now = os.time()
    s:post("/_sim/seed", { count = 150, start_time = now - 3600, end_time = now - 60 })
    local state = dir .. "/state.json"
    local r = get("/sync?state=" .. state)
    assert.is_true(r.ok, r.message)
    assert.equal(150, r.delivered)
    assert.equal(0, get("/sync?state=" .. state).delivered)
  end)
end)
