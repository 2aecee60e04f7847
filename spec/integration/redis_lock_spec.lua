-- The jobs' lock = "redis://...": two processes on "two machines" (two working directories, two state
-- files or archive directories) sharing one Redis. The second gets "busy" while the first runs, and runs
-- normally after; the lease is renewed while a job runs and expires by itself when its host is gone.
local j = require "spec.helpers.jobs"
local redis_helper = require "spec.helpers.redis"
local core = require "clicktocall.core"
local lease = require "clicktocall.lease"
local redis = require "clicktocall.redis"

-- The first machine: runs the job with its hook held until the gate file appears; writes "ok <n>" or
-- "err <kind> <message>" to its out file.
local HOST = [=[
local clicktocall = require "clicktocall"
local mock = require "clicktocall.mock"
local core = require "clicktocall.core"
local mode, dir, url, gate, started, out = arg[1], arg[2], arg[3], arg[4], arg[5], arg[6]
local function exists(p) local f = io.open(p, "rb") if f then f:close() end return f ~= nil end
local function write(p, s) local f = assert(io.open(p, "wb")) f:write(s) f:close() end
local provider = mock.new {}
local now = os.time()
provider:seed_records(3, { start_time = now - 3600, end_time = now - 60 })
local client = assert(clicktocall.new { base_url = "http://mock", app_secret = "TEST",
  user_data = "4e2239c5-a6e6-4201-a072-8342e29c3ae3", transport = provider.transport, sleep = provider.sleep })
local function hold()
  if not exists(started) then write(started, "1") end
  local deadline = core.now() + 60
  while not exists(gate) and core.now() < deadline do core.sleep(0.02) end
end
local res, err
if mode == "sync" then
  res, err = client:sync { state = dir .. "/state.json", lock = url, since = now - 7200,
                           on_record = function() hold() return true end }
else
  res, err = client:archive_recordings { start_time = now - 7200, end_time = now, dir = dir, lock = url,
                                         on_file = function() hold() end }
end
write(out, res and ("ok " .. (res.delivered or res.downloaded)) or ("err " .. err.kind .. " " .. err.message))
]=]

describe("the jobs' lock in Redis, across two machines #integration #redis", function()
  local srv, tmp

  setup(function()
    srv = assert(redis_helper.start())
  end)

  teardown(function()
    if srv then srv:destroy() end
  end)

  before_each(function()
    if not srv.running then srv:restart() end
    assert.equal("OK", srv:cmd("FLUSHALL"))
    tmp = j.mkdtemp()
  end)

  after_each(function()
    j.rmtree(tmp)
  end)

  local function run_job(client, mode, dir, url)
    local now = os.time()
    if mode == "sync" then
      return client:sync { state = dir .. "/state.json", lock = url, since = now - 7200, on_record = function() end }
    end
    return client:archive_recordings { start_time = now - 7200, end_time = now, dir = dir, lock = url }
  end

  for _, mode in ipairs { "sync", "archive" } do
    it(mode .. ": the second machine is busy while the first runs, and runs after", function()
      local one, two = tmp .. "/one", tmp .. "/two"
      assert(core.mkdir(one))
      assert(core.mkdir(two))
      local script = j.script(tmp, "host.lua", HOST)
      local gate, started, out = tmp .. "/gate", tmp .. "/started", tmp .. "/out"
      finally(function() -- whatever failed, the first machine is let go and waited for
        j.write(gate, "go")
        j.wait_until(function() return j.read(out) ~= nil end, 30)
      end)
      os.execute(("unset LD_PRELOAD; %s %s %s %s %s %s %s %s > %s/host.log 2>&1 &"):format(
        j.LUA, script, mode, one, srv.url, gate, started, out, tmp))
      assert.is_true(j.wait_until(function() return j.read(started) ~= nil end, 30),
                     "the first machine did not start: " .. tostring(j.read(tmp .. "/host.log")))
      local key = lease.key(mode, j.USER_DATA)
      local token = srv:cmd("GET", key)
      assert.is_string(token)
      assert.is_true(srv:cmd("PTTL", key) > 60000) -- the default lease: minutes, not seconds

      -- the second machine: busy, nothing asked of the provider, nothing written
      local client, provider = j.client()
      provider:seed_records(3, { start_time = os.time() - 3600, end_time = os.time() - 60 })
      local v, err = run_job(client, mode, two, srv.url)
      assert.is_nil(v)
      assert.equal("busy", err.kind)
      assert.is_false(err.sent)
      assert.is_true(err.retryable)
      assert.truthy(err.message:find("another " .. mode .. " holds the lease", 1, true), err.message)
      assert.equal(0, j.count(provider, "records_page"))
      assert.equal("", j.shell("ls -A '" .. two .. "'"))

      -- the first finishes and releases; the second then runs normally
      j.write(gate, "go")
      assert.is_true(j.wait_until(function() return j.read(out) ~= nil end, 30))
      assert.equal("ok 3", j.read(out))
      assert.equal(redis.null, srv:cmd("GET", key))
      local summary = assert(run_job(client, mode, two, srv.url))
      assert.equal(3, summary.delivered or summary.downloaded)
      assert.equal(redis.null, srv:cmd("GET", key))
    end)
  end

  it("Redis down: the job does nothing (kind network); a bad lock is an argument error", function()
    local client, provider = j.client()
    srv:stop()
    for _, mode in ipairs { "sync", "archive" } do
      local v, err = run_job(client, mode, tmp, srv.url)
      assert.is_nil(v)
      assert.equal("network", err.kind)
      assert.is_false(err.sent)
      local bad
      v, bad = run_job(client, mode, tmp, "redis://h:6379/x")
      assert.is_nil(v)
      assert.equal("argument", bad.kind)
      assert.truthy(bad.message:find(": lock: ", 1, true), bad.message)
      assert.equal("lock", bad.field)
    end
    assert.equal(0, j.count(provider, "records_page"))
    assert.equal("", j.shell("ls -A '" .. tmp .. "'"))
  end)

  describe("the lease", function()
    local st = { connect_timeout = 2 }
    local errors = require "clicktocall.errors"
    st.secrets = {}
    local function fresh()
      return assert(lease.acquire(st, srv.url, "sync", "ud", 400))
    end

    it("is renewed once half of it has passed, and only then", function()
      local l = fresh()
      local t0 = core.now()
      srv:cmd("PEXPIRE", l.key, 300) -- so that a renewal shows
      assert.is_true(l:renew()) -- too early: Redis is not asked
      assert.is_true(srv:cmd("PTTL", l.key) <= 300)
      assert.is_true(j.wait_until(function() return core.now() - t0 >= 0.2 end, 5))
      assert.is_true(l:renew())
      assert.is_true(srv:cmd("PTTL", l.key) > 300)
      l:unlock()
      assert.equal(redis.null, srv:cmd("GET", l.key))
    end)

    it("expires by itself when its host is gone, and is taken again", function()
      fresh() -- never unlocked: the host "died"
      local _, busy = lease.acquire(st, srv.url, "sync", "ud", 400)
      assert.equal("busy", busy.kind)
      assert.is_true(errors.is_error(busy))
      assert.is_true(j.wait_until(function() return srv:cmd("GET", lease.key("sync", "ud")) == redis.null end, 5))
      assert.truthy(lease.acquire(st, srv.url, "sync", "ud", 400))
    end)

    it("a run whose lease was taken by another host stops, and never deletes the other's", function()
      local l = fresh()
      local t0 = core.now()
      srv:cmd("SET", l.key, "another-host", "PX", 60000)
      assert.is_true(j.wait_until(function() return core.now() - t0 >= 0.25 end, 5))
      local ok, err = l:renew()
      assert.is_nil(ok)
      assert.equal("busy", err.kind)
      l:unlock()
      assert.equal("another-host", srv:cmd("GET", l.key))
      -- expired and free: the run takes it again and goes on
      srv:cmd("DEL", l.key)
      local m = fresh()
      srv:cmd("DEL", m.key)
      t0 = core.now()
      assert.is_true(j.wait_until(function() return core.now() - t0 >= 0.25 end, 5))
      assert.is_true(m:renew())
      assert.equal(m.token, srv:cmd("GET", m.key))
    end)
  end)
end)
