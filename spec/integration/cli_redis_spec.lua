-- The command line with its config file's Redis settings: `dial_guard = redis://...` (two machines, one
-- Redis: a dial is placed once) and `lock = redis://...` (archive and sync hold a lease in Redis, so a job
-- running on another machine makes them exit 6). Each "machine" is its own HOME with its own config file.
-- #noasan: the command is another process.
local cli = require "spec.helpers.cli"
local redis_helper = require "spec.helpers.redis"

describe("clicktocall with Redis from its config file #integration #redis #noasan", function()
  local s, redis

  lazy_setup(function()
    s = assert(cli.start_sim { secret = "CLI-REDIS-s3cr3t" })
    redis = assert(redis_helper.start())
  end)

  lazy_teardown(function()
    if redis then redis:destroy() end
    if s then s:stop() end
    cli.cleanup()
  end)

  before_each(function()
    s:post("/_sim/reset")
    assert.equal("OK", redis:cmd("FLUSHALL"))
  end)

  -- a machine: a HOME whose config file holds `lines`
  local function machine(lines)
    local home = cli.tmpdir()
    cli.write(home .. "/config", table.concat(lines, "\n") .. "\n", "600")
    return function(args)
      local argv = { "--config", home .. "/config" }
      for _, a in ipairs(args) do argv[#argv + 1] = a end
      return cli.run(argv, { home = home, env = cli.sim_env(s) })
    end
  end

  local function sim_dials()
    local n = 0
    local log = s:get("/_sim/requests")
    for _, q in ipairs(log.requests or log) do
      n = n + (q.uri == "/rest/voiceCall/api" and 1 or 0)
    end
    return n
  end

  local KEY = require("clicktocall.dial_guard")._key("+8613918337711", "+8613500000002", "PP1",
    "4e2239c5-a6e6-4201-a072-8342e29c3ae3")
  local DIAL = { "dial", "13918337711", "13500000002", "--seat", "PP1" }

  it("dial_guard = redis://: the same dial from two machines is placed once; a dial that may have rung is held",
    function()
    local one = machine { "dial_guard = " .. redis.url, "dial_guard_hold = 90" }
    local two = machine { "dial_guard = " .. redis.url }
    assert.equal(0, one({ "bind", "PP1", "13918337711" }).code)
    local r = one(DIAL)
    assert.equal(0, r.code, r.stderr)
    r = two(DIAL)
    assert.equal(8, r.code)
    assert.matches("refused by the dial guard: a dial from %+8613918337711 to %+8613500000002 on seat PP1 was " ..
      "placed [%d.]+ s ago; .*%-%-force", r.stderr)
    assert.equal(1, sim_dials())
    local ttl = redis:cmd("PTTL", KEY)
    assert.is_true(ttl > 0 and ttl <= 10000, tostring(ttl)) -- placed: the window
    assert.equal(1, redis:cmd("DEL", KEY))
    -- cut off after sending: the claim stays for the hold (90 s on machine one)
    s:post("/_sim/fault", { path = "/rest/voiceCall/api", kind = "reset_after_send" })
    r = one(DIAL)
    assert.equal(4, r.code)
    assert.matches("the dial guard refuses the same dial for the next 90 s", r.stderr)
    ttl = redis:cmd("PTTL", KEY)
    assert.is_true(ttl > 80000 and ttl <= 90000, tostring(ttl))
    s:post("/_sim/fault/clear")
    r = two(DIAL)
    assert.equal(8, r.code)
    assert.matches("its outcome is unknown", r.stderr)
    assert.equal(2, sim_dials())
  end)

  it("lock = redis://: archive and sync exit 6 while another machine holds the job, and run after", function()
    local ud = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"
    local one = machine { "lock = " .. redis.url .. "/0" }
    local dir = cli.tmpdir()
    local state = cli.tmpdir() .. "/state.json"
    for _, job in ipairs { "sync", "archive" } do
      local key = "ctc:job:" .. job .. ":" .. #ud .. ":" .. ud
      assert.equal("OK", redis:cmd("SET", key, "another-machine", "PX", 60000))
      local args = job == "sync" and { "sync", "--state", state } or { "archive", "--from", "1d", "--dir", dir }
      local r = one(args)
      assert.equal(6, r.code, r.stderr)
      assert.matches("lease", r.stderr)
      assert.equal("another-machine", redis:cmd("GET", key))
      assert.equal(1, redis:cmd("DEL", key))
      r = one(args)
      assert.equal(0, r.code, r.stderr)
    end
    -- a bad lock is a usage error, nothing done
    local bad = machine { "lock = /tmp/x.lock" }
    local r = bad { "sync", "--state", state }
    assert.equal(2, r.code)
    assert.matches("lock", r.stderr)
  end)
end)
