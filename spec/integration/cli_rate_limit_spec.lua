-- The command line under the provider's rate limit (issue #22.5, "the jobs respect it too"): --rate-limit
-- CALL=RATE[/PER], --rate-limit-wait, and the config file's rate_limit_store = redis://..., so a cron archive or
-- sync counts in the same Redis as the nginx workers that dial. bin/clicktocall in its own process against the
-- simulator, and a redis-server with a password; every output is searched for both secrets at the end.
-- #noasan: the command is another process.
local cli = require "spec.helpers.cli"
local redis_helper = require "spec.helpers.redis"
local clicktocall = require "clicktocall"

local SECRET = "CLI-RATE-s3cr3t"
local PASSWORD = "redis-PW-canary-4f1c"
local DAY = 86400

local busiest = require("spec.helpers.sim").busiest

describe("clicktocall --rate-limit #integration #redis #noasan", function()
  local s, redis
  local outputs = {}

  lazy_setup(function()
    s = assert(cli.start_sim { secret = SECRET })
    redis = assert(redis_helper.start { password = PASSWORD })
  end)

  lazy_teardown(function()
    if redis then redis:destroy() end
    if s then s:stop() end
    cli.cleanup()
    for _, text in ipairs(outputs) do
      assert.is_nil(text:find(SECRET, 1, true))
      assert.is_nil(text:find(PASSWORD, 1, true))
    end
  end)

  before_each(function()
    s:post("/_sim/reset")
    assert.equal("OK", redis:cmd("FLUSHALL"))
  end)

  local function requests(uri)
    local out = {}
    local log = s:get("/_sim/requests")
    for _, q in ipairs(log.requests or log) do
      if q.uri == uri or (uri == "/recordings/" and q.uri:find("^/recordings/")) then out[#out + 1] = q end
    end
    return out
  end

  local function run(args, opts)
    opts = opts or {}
    opts.env = opts.env or cli.sim_env(s)
    local r = cli.run(args, opts)
    outputs[#outputs + 1], outputs[#outputs + 2] = r.stdout, r.stderr
    return r
  end

  -- a machine: a HOME whose config file holds `lines`
  local function machine(lines)
    local home = cli.tmpdir()
    cli.write(home .. "/config", table.concat(lines, "\n") .. "\n", "600")
    return function(args, env)
      local argv = { "--config", home .. "/config" }
      for _, a in ipairs(args) do argv[#argv + 1] = a end
      return run(argv, { home = home, env = env })
    end
  end

  it("records and archive: the pages and the downloads wait their turn, never more than the limit in a window",
    function()
    local t0 = os.time() - 2 * DAY
    s:post("/_sim/seed", { count = 450, start_time = t0, end_time = t0 + 3600 })
    s:post("/_sim/requests/clear")
    local r = run { "records", "--from", tostring(t0), "--to", tostring(t0 + 3600), "-o", "jsonl",
                    "--rate-limit", "records_page=2/0.5", "--rate-limit-wait", "30", "-v" }
    assert.equal(0, r.code, r.stderr)
    -- -v says each wait in words (the rate events have no method or URL)
    assert.matches("clicktocall: rate_wait records_page: waiting [%d.]+ s for its turn under the rate limit\n",
      r.stderr)
    assert.is_nil(r.stderr:find("rate_wait nil", 1, true))
    local n = 0
    for _ in r.stdout:gmatch("[^\n]+") do n = n + 1 end
    assert.equal(450, n)
    local worst, pages = busiest(requests("/call/record/voice"), 0.4)
    assert.is_true(pages >= 5, "pages: " .. pages)
    assert.is_true(worst <= 2, "a 0.4 s window at the simulator held " .. worst .. " pages")

    -- the archive's downloads, from the environment this time
    s:post("/_sim/reset")
    local now = os.time()
    s:post("/_sim/seed", { count = 10, start_time = now - DAY, end_time = now - 60, recorded = true })
    s:post("/_sim/requests/clear")
    local dir = cli.tmpdir()
    r = run({ "archive", "--from", "2d", "--dir", dir, "--concurrency", "4", "-q" },
            { env = cli.sim_env(s, { CLICKTOCALL_RATE_LIMIT = "download=3/0.6, records_page=5",
                                     CLICKTOCALL_RATE_LIMIT_WAIT = "30" }) })
    assert.equal(0, r.code, r.stderr)
    assert.matches("^archived 10, ", r.stdout)
    local dl
    worst, dl = busiest(requests("/recordings/"), 0.5)
    assert.equal(10, dl)
    assert.is_true(worst <= 3, "a 0.5 s window at the simulator held " .. worst .. " downloads")
  end)

  it("rate_limit_store = redis:// with a password: two machines and a worker share one limit; a refusal exits 9",
    function()
    local store = ("redis://%s@127.0.0.1:%d/2"):format(PASSWORD, redis.port)
    local one = machine { "rate_limit = balance=1/60", "rate_limit_store = " .. store }
    local two = machine { "rate_limit = balance=1/60, dial=5", "rate_limit_store = " .. store }
    local r = one { "balance" }
    assert.equal(0, r.code, r.stderr)
    -- wait 0 (the default): refused at once, nothing sent
    r = two { "balance" }
    assert.equal(9, r.code, r.stderr)
    assert.equal("", r.stdout)
    assert.matches("^clicktocall balance: refused by the rate limit: balance: the rate limit %(1 in any 60 s%) is " ..
      "reached, so nothing was sent; the next may go in [%d.]+ s; run it again in %d+ s, or give " ..
      "%-%-rate%-limit%-wait %d+ to wait for the turn%.\n$", r.stderr)
    assert.equal(1, #requests("/management/customer/isallow"))
    -- a worker of the same account (the limit's name comes from the secret) is refused too
    local worker = assert(clicktocall.new { base_url = s.base_url, app_secret = SECRET, user_data = s.user_data,
                                            rate_limit = { balance = { rate = 1, per = 60 }, store = store } })
    local n, err = worker:balance()
    assert.is_nil(n)
    assert.equal("rate_limited", err.kind)
    worker:close()
    assert.equal(1, #requests("/management/customer/isallow"))
    -- the place is in database 2 of the Redis, none in database 0
    assert.equal(0, #redis:cmd("KEYS", "ctc:rate:*"))
    assert.equal(1, #redis:cmd("EVAL", "redis.call('SELECT', 2) return redis.call('KEYS', 'ctc:rate:*')", 0))
    -- with a wait, the same refusal is named with the wait it would need
    r = two { "balance", "--rate-limit-wait", "0.2" }
    assert.equal(9, r.code)
    assert.matches("refused by the rate limit", r.stderr)
    assert.equal(1, #requests("/management/customer/isallow"))
  end)

  it("sync: a page refused with wait 0 exits 9, and the state file is left for the next run", function()
    local t0 = os.time() - 3600
    s:post("/_sim/seed", { count = 150, start_time = t0, end_time = os.time() - 60 })
    local state = cli.tmpdir() .. "/state.json"
    local r = run { "sync", "--state", state, "--since", "2h", "--rate-limit", "records_page=1/60" }
    assert.equal(9, r.code, r.stderr)
    assert.matches("refused by the rate limit: records_page: the rate limit %(1 in any 60 s%)", r.stderr)
    assert.equal(1, #requests("/call/record/voice"))
  end)

  it("config init writes the rate limit from the flags and the environment; the next run keeps to it", function()
    local home = cli.tmpdir()
    local path = home .. "/config"
    local r = run({ "config", "init", "--config", path, "--base-url", s.base_url, "--user-data", s.user_data,
                    "--rate-limit", "records_page=1/60", "--rate-limit", "dial=5", "--rate-limit-wait", "0" },
                  { home = home, env = { CLICKTOCALL_APP_SECRET = SECRET } })
    assert.equal(0, r.code, r.stderr)
    local text = cli.read(path)
    assert.matches("\nrate_limit = records_page=1/60,dial=5\nrate_limit_wait = 0\n", text)
    -- two pages in one process (no store): the second is refused, nothing sent for it
    local t0 = os.time() - 2 * DAY
    s:post("/_sim/seed", { count = 150, start_time = t0, end_time = t0 + 3600 })
    r = run({ "records", "--config", path, "--from", tostring(t0), "--to", tostring(t0 + 3600) },
            { home = home, env = {} })
    assert.equal(9, r.code, r.stderr)
    assert.matches("records_page: the rate limit %(1 in any 60 s%) is reached", r.stderr)
    assert.equal(1, #requests("/call/record/voice"))
    r = run({ "config", "init", "--config", cli.tmpdir() .. "/c", "--base-url", s.base_url, "--user-data", "u" },
            { home = home, env = { CLICKTOCALL_APP_SECRET = SECRET, CLICKTOCALL_RATE_LIMIT_WAIT = "-2" } })
    assert.equal(2, r.code)
    assert.matches("CLICKTOCALL_RATE_LIMIT_WAIT must be a number of seconds from 0, not '%-2'", r.stderr)
  end)

  it("refuses bad values with exit 2, naming the setting as given, and sends nothing", function()
    local cases = {
      { { "balance", "--rate-limit", "records=5" }, "%-%-rate%-limit: 'records=5' names no call the library limits" },
      { { "balance", "--rate-limit", "balance=0" }, "%-%-rate%-limit: 'balance=0': RATE must be a whole number" },
      { { "balance", "--rate-limit", "balance=2.5" }, "RATE must be a whole number of requests from 1 to 1000" },
      { { "balance", "--rate-limit", "balance=5/0" }, "%-%-rate%-limit: 'balance=5/0': PER must be a number" },
      { { "balance", "--rate-limit", "balance" }, "'balance' is not CALL=RATE%[/PER%]" },
      { { "balance", "--rate-limit", "balance=5", "--rate-limit", "balance=6" }, "names balance twice" },
      { { "balance", "--rate-limit", "balance=5", "--rate-limit-wait=-1" },
        "%-%-rate%-limit%-wait must be a number of seconds from 0 to 3600, not '%-1'" },
      { { "balance", "--rate-limit", "balance=5", "--rate-limit-wait", "7200" }, "%-%-rate%-limit%-wait must be" },
      { { "balance", "--rate-limit-wait", "5" }, "%-%-rate%-limit%-wait goes with a rate limit" },
      { { "balance", "--rate-limit", "balance=5", "--rate-limit-store", "http://127.0.0.1:1" },
        "%-%-rate%-limit%-store must be a redis%[s%]://" },
      { { "balance", "--rate-limit", "balance=5", "--rate-limit-store",
          ("redis://%s@127.0.0.1:%d"):format(PASSWORD, redis.port) },
        "%-%-rate%-limit%-store holds a password, and flags show in `ps`" },
    }
    for _, c in ipairs(cases) do
      local r = run(c[1])
      assert.equal(2, r.code, table.concat(c[1], " ") .. ": " .. r.stderr)
      assert.matches(c[2], r.stderr)
    end
    local r = run({ "balance" }, { env = cli.sim_env(s, { CLICKTOCALL_RATE_LIMIT = "dial=x" }) })
    assert.equal(2, r.code)
    assert.matches("CLICKTOCALL_RATE_LIMIT: 'dial=x': RATE must be", r.stderr)
    r = run({ "balance" }, { env = cli.sim_env(s, { CLICKTOCALL_RATE_LIMIT = "dial=1",
                                                    CLICKTOCALL_RATE_LIMIT_WAIT = "soon" }) })
    assert.equal(2, r.code)
    assert.matches("CLICKTOCALL_RATE_LIMIT_WAIT must be a number of seconds from 0, not 'soon'", r.stderr)
    local bad = machine { "base_url = " .. s.base_url, "rate_limit = dial=5/x" }
    r = bad { "balance" }
    assert.equal(2, r.code)
    assert.matches("rate_limit in [^ ]+/config:2: 'dial=5/x': PER must be", r.stderr)
    bad = machine { "rate_limit = dial=5", "rate_limit_store = redis://127.0.0.1:notaport" }
    r = bad { "balance" }
    assert.equal(2, r.code)
    assert.matches("the rate limit could not be set up %(rate_limit_store in [^ ]+/config:2%): the Redis address " ..
      "must be", r.stderr)
    bad = machine { "rate_limit_wait = -3" }
    r = bad { "balance" }
    assert.equal(2, r.code)
    assert.matches("rate_limit_wait must be a number of seconds from 0", r.stderr)
    assert.equal(0, #requests("/management/customer/isallow"))
  end)
end)
