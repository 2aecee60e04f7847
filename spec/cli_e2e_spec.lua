-- bin/clicktocall as a user runs it: a separate process, its environment and
-- config file, stdout and stderr apart, against the simulator (sim/) whose app
-- secret is a canary searched for in everything the command prints.
-- #noasan: the command is another process, never under the sanitizer's runtime.
local cjson = require("cjson").new()
local clicktocall = require "clicktocall"
local nginx = require "spec.helpers.nginx"
local cli = require "spec.helpers.cli"

local CANARY = "CANARY-s3cr3t-XYZ"
local CANARY_B64 = require("clicktocall.core").base64(CANARY)

describe("clicktocall command #noasan", function()
  local s, env
  local outputs = {} -- every stdout and stderr, searched for the canary at the end

  local function run(args, opts)
    opts = opts or {}
    if opts.env == nil then
      opts.env = env
    end
    local r = cli.run(args, opts)
    outputs[#outputs + 1] = r.stdout
    outputs[#outputs + 1] = r.stderr
    return r
  end

  local function lines(text)
    local t = {}
    for l in text:gmatch("([^\n]*)\n") do
      t[#t + 1] = l
    end
    return t
  end

  lazy_setup(function()
    s = assert(cli.start_sim { secret = CANARY })
    env = cli.sim_env(s)
  end)

  lazy_teardown(function()
    if s then
      s:stop()
    end
    cli.cleanup()
  end)

  before_each(function()
    s:post("/_sim/reset")
  end)

  describe("usage", function()
    it("has --help for every command, and `help COMMAND`, on stdout with exit 0", function()
      local r = run({ "--help" })
      assert.equal(0, r.code)
      for _, cmd in ipairs({ "bind", "dial", "balance", "records", "archive", "sync", "normalize", "doctor" }) do
        assert.matches("\n   " .. cmd .. " ", r.stdout)
        local h = run({ cmd, "--help" })
        assert.equal(0, h.code, cmd)
        assert.matches("^Usage: clicktocall " .. cmd, h.stdout)
        assert.equal("", h.stderr)
        assert.equal(h.stdout, run({ "help", cmd }).stdout)
      end
      assert.matches("Exit codes: 0 ok; 1", r.stdout)
      assert.matches("0%.%d+%.%d+", run({ "--version" }).stdout)
    end)

    it("exits 2 with one sentence for a bad flag, a missing argument, a bad value, no command", function()
      for _, args in ipairs({ { "balance", "--bogus" }, { "dial", "1", "2" }, { "records" }, { "bogus" }, {},
                              { "records", "--from", "yesterday" }, { "records", "--from", "1d", "--format", "xml" },
                              { "balance", "--min", "lots" }, { "--timeout", "-1", "balance" },
                              { "records", "--from", "1d", "--limit", "0" } }) do
        local r = run(args)
        assert.equal(2, r.code, table.concat(args, " "))
        assert.equal("", r.stdout)
        assert.equal(1, #lines(r.stderr), r.stderr)
        assert.matches("^clicktocall[^\n]*%.\n$", r.stderr)
      end
      assert.matches("unknown option '%-%-bogus'; see `clicktocall balance %-%-help`",
        run({ "balance", "--bogus" }).stderr)
    end)

    it("refuses the secret as a flag, exit 2, before reading it", function()
      local r = run({ "--app-secret", CANARY, "balance" })
      assert.equal(2, r.code)
      assert.matches("never taken from a flag", r.stderr)
      assert.equal(2, run({ "balance", "--app_secret=" .. CANARY }).code)
    end)
  end)

  describe("configuration", function()
    it("exits 2 naming the variable and the file when the secret is missing", function()
      local r = run({ "balance" }, { env = { CLICKTOCALL_BASE_URL = s.base_url, CLICKTOCALL_USER_DATA = s.user_data } })
      assert.equal(2, r.code)
      assert.matches("no app secret: set CLICKTOCALL_APP_SECRET, or app_secret in .-/%.config/clicktocall/config",
        r.stderr)
      assert.equal(2, run({ "balance" }, { env = { CLICKTOCALL_APP_SECRET = CANARY } }).code)
    end)

    it("reads ~/.config/clicktocall/config when it is private, and flags and the environment override it", function()
      local home = cli.tmpdir()
      os.execute("mkdir -p " .. cli.quote(home .. "/.config/clicktocall"))
      cli.write(home .. "/.config/clicktocall/config", table.concat({
        "# the simulator", "base_url = " .. s.base_url, "app_secret = " .. CANARY, "user_data = " .. s.user_data,
        "timeout = 5", "" }, "\n"), "600")
      local r = run({ "balance" }, { env = {}, home = home })
      assert.equal(0, r.code, r.stderr)
      assert.equal("6152\n", r.stdout)
      -- the environment before the file, a flag before both
      assert.equal(4, run({ "balance" }, { env = { CLICKTOCALL_BASE_URL = "http://127.0.0.1:1" }, home = home }).code)
      assert.equal(0, run({ "--base-url", s.base_url, "balance" },
        { env = { CLICKTOCALL_BASE_URL = "http://127.0.0.1:1" }, home = home }).code)
      local d = run({ "doctor" }, { env = {}, home = home })
      assert.matches("ok    config       base_url from [^;]*/%.config/clicktocall/config:2; app_secret from", d.stdout)
    end)

    it("refuses a config file that group or others can read, exit 2, with the chmod to run", function()
      local dir = cli.tmpdir()
      local path = dir .. "/ctc.conf"
      cli.write(path, "app_secret = " .. CANARY .. "\nbase_url = " .. s.base_url .. "\nuser_data = " .. s.user_data ..
        "\n", "644")
      local r = run({ "--config", path, "balance" }, { env = {} })
      assert.equal(2, r.code)
      assert.equal("", r.stdout)
      assert.equal("The config file " .. path .. " can be read by group or others (mode rw-r--r--), so it is " ..
        "not used: run `chmod 600 '" .. path .. "'` and try again.\n", r.stderr)
      -- the sentence's own command makes it work
      assert(os.execute("chmod 600 " .. cli.quote(path)))
      assert.equal(0, run({ "--config", path, "balance" }, { env = {} }).code)
    end)
  end)

  describe("commands against the simulator", function()
    it("balance prints the number; --min exits 3 below it and 0 at or above it", function()
      local r = run({ "balance" })
      assert.same({ 0, "6152\n", "" }, { r.code, r.stdout, r.stderr })
      r = run({ "balance", "--min", "6153" })
      assert.equal(3, r.code)
      assert.equal("6152\n", r.stdout)
      assert.matches("below the minimum of 6153%.\n$", r.stderr)
      assert.equal(0, run({ "balance", "--min", "6152" }).code)
    end)

    it("bind then dial: one line each, the session id; the provider saw normalized numbers once", function()
      local r = run({ "bind", "PP7568032251", "139 1833 7711" })
      assert.same({ 0, "seat PP7568032251 bound to +8613918337711\n", "" }, { r.code, r.stdout, r.stderr })
      r = run({ "dial", "13918337711", "0755-28000123", "--seat", "PP7568032251" })
      assert.equal(0, r.code, r.stderr)
      assert.matches("^[%x-]+_%d+\n$", r.stdout)
      local dials = {}
      local log = s:get("/_sim/requests")
      for _, q in ipairs(log.requests or log) do
        if q.uri == "/rest/voiceCall/api" then
          dials[#dials + 1] = cjson.decode(q.body)
        end
      end
      assert.equal(1, #dials)
      assert.equal("+8675528000123", dials[1].calleeNbr)
      -- the provider refuses a caller that is not the seat's phone: exit 1, its message
      r = run({ "dial", "13918337799", "0755-28000123", "--seat", "PP7568032251" })
      assert.equal(1, r.code)
      assert.matches("^clicktocall dial: the provider refused: .*callerNbr is not the seat's bound phone.*%.\n$",
        r.stderr)
      assert.equal("", r.stdout)
    end)

    it("records: JSON lines off a terminal, CSV and a table on request, each parsed back", function()
      s:post("/_sim/seed", { count = 250, start_time = "2026-11-30 00:00:00", end_time = "2026-11-30 23:00:00" })
      local r = run({ "records", "--from", "2026-11-30", "--to", "2026-11-30" })
      assert.equal(0, r.code, r.stderr)
      assert.equal("", r.stderr) -- a pipe gets only the records
      local recs = {}
      for _, l in ipairs(lines(r.stdout)) do
        recs[#recs + 1] = cjson.decode(l)
      end
      assert.equal(250, #recs)
      for i, rec in ipairs(recs) do -- in id order, none missing (ids go on across resets)
        assert.equal(recs[1].id + i - 1, rec.id)
      end
      local c = run({ "records", "--from", "2026-11-30", "--format", "csv" })
      assert.equal(0, c.code)
      assert.matches("\r\n$", c.stdout)
      local rows = cli.parse_csv(c.stdout)
      assert.equal(251, #rows)
      assert.same({ "id", "sessionId" }, { rows[1][1], rows[1][2] })
      for i = 2, #rows do
        local rec = recs[i - 1]
        for j, name in ipairs(rows[1]) do
          local v = rec[name]
          local want = v == nil and "" or type(v) == "number" and ("%.17g"):format(v) or tostring(v)
          assert.equal(want, rows[i][j], name)
        end
      end
      local t = run({ "records", "--from", "2026-11-30", "--format", "table", "--limit", "120" })
      assert.equal(0, t.code)
      local tl = lines(t.stdout)
      assert.equal(121, #tl)
      assert.matches("^ID +ENDED %(UTC%+8%) +CALLER", tl[1])
      local at = tl[1]:find("SESSION", 1, true)
      for i = 2, #tl do
        assert.equal(at, tl[i]:find("[%x]+%-[%x-]+_%d+$"), tl[i])
      end
      assert.matches("^120 records from 2026%-11%-30 00:00:00 to ", t.stderr)
      assert.equal(7, #lines(run({ "records", "--from", "2026-11-30", "--limit", "7" }).stdout))
    end)

    it("normalize: one number, its form alone; exit 2 naming a number that is not one", function()
      local r = run({ "normalize", "0755-28000123" }, { env = {} })
      assert.same({ 0, "+8675528000123\n", "" }, { r.code, r.stdout, r.stderr })
      r = run({ "normalize", "12" }, { env = {} })
      assert.equal(2, r.code)
      assert.equal("", r.stdout)
      assert.matches("^clicktocall normalize: '12': [^\n]*%.\n$", r.stderr)
    end)

    it("normalize: several numbers, input<TAB>output a line in their order, an error in its line, exit 2", function()
      local r = run({ "normalize", "13918337711", "0755-28000123", "+86 135-0000-0002" }, { env = {} })
      assert.same({ 0, "13918337711\t+8613918337711\n0755-28000123\t+8675528000123\n" ..
        "+86 135-0000-0002\t+8613500000002\n", "" }, { r.code, r.stdout, r.stderr })
      r = run({ "normalize", "12", "13918337711", "call\tme" }, { env = {} })
      assert.equal(2, r.code)
      local l = lines(r.stdout)
      assert.equal(3, #l)
      assert.matches("^12\terror: [^\t]+$", l[1])
      assert.equal("13918337711\t+8613918337711", l[2])
      assert.matches("^call%?me\terror: ", l[3]) -- a tab in the input cannot break the pairing
      assert.equal("clicktocall normalize: 2 of 3 numbers could not be normalized; see the lines with " ..
        "\"error:\".\n", r.stderr)
      -- as CSV: a header and one row an input
      r = run({ "normalize", "12", "13918337711", "-o", "csv" }, { env = {} })
      assert.equal(2, r.code)
      assert.same({ { "input", "output", "error" }, { "12", "", l[1]:match("error: (.*)") },
                    { "13918337711", "+8613918337711", "" } }, cli.parse_csv(r.stdout))
    end)

    it("doctor: a line a check, all ok, exit 0", function()
      local r = run({ "doctor" })
      assert.equal(0, r.code, r.stdout)
      local l = lines(r.stdout)
      assert.equal(8, #l)
      for i, name in ipairs({ "config", "base URL", "proxy", "DNS", "TCP", "TLS", "clock", "credentials" }) do
        assert.matches("^ok    " .. name:gsub("%p", "%%%0") .. " ", l[i])
      end
      assert.matches("TLS +not TLS %(http%)", r.stdout)
      assert.matches("credentials +the provider accepted them: balance 6152", r.stdout)
    end)

    it("doctor: the fix for a wrong secret (1), a closed port (4), a missing secret (2), an unknown host (4)",
      function()
      local r = run({ "doctor" }, { env = cli.sim_env(s, { CLICKTOCALL_APP_SECRET = "wrong" }) })
      assert.equal(1, r.code)
      assert.matches("FAIL  credentials  the provider refused them %(.-%): check app_secret and user_data", r.stdout)
      local port = nginx.free_port()
      r = run({ "doctor" }, { env = cli.sim_env(s, { CLICKTOCALL_BASE_URL = "http://127.0.0.1:" .. port }) })
      assert.equal(4, r.code)
      assert.matches("FAIL  TCP +cannot connect to 127%.0%.0%.1 port " .. port, r.stdout)
      assert.matches("skip  credentials", r.stdout)
      r = run({ "doctor" }, { env = { CLICKTOCALL_BASE_URL = s.base_url } })
      assert.equal(2, r.code)
      assert.matches("FAIL  config +app_secret, user_data are not set: set CLICKTOCALL_APP_SECRET or", r.stdout)
      r = run({ "doctor" }, { env = cli.sim_env(s, { CLICKTOCALL_BASE_URL = "https://nonexistent.invalid" }) })
      assert.equal(4, r.code)
      assert.matches("FAIL  DNS +nonexistent%.invalid cannot be resolved", r.stdout)
      r = run({ "doctor" }, { env = cli.sim_env(s, { CLICKTOCALL_BASE_URL = "ftp://x" }) })
      assert.equal(2, r.code)
      assert.matches("FAIL  base URL +'ftp://x' %(CLICKTOCALL_BASE_URL%) cannot be used: only http and https URLs " ..
                     "are allowed, not ftp", r.stdout)
    end)

    it("doctor: https to a server that speaks http fails at TLS, naming the CA bundle", function()
      local https = s.base_url:gsub("^http", "https")
      local r = run({ "doctor" }, { env = cli.sim_env(s, { CLICKTOCALL_BASE_URL = https }) })
      assert.equal(4, r.code)
      assert.matches("ok    TCP", r.stdout)
      assert.matches("FAIL  TLS +the handshake failed %(.*; CA bundle /etc/ssl/certs/ca%-certificates%.crt %(the " ..
        "system's, libcurl's default%)%): check that the port speaks https", r.stdout)
      -- a bundle named in the configuration is the one used, and named
      r = run({ "--ca-file", "/nonexistent/ca.pem", "doctor" },
        { env = cli.sim_env(s, { CLICKTOCALL_BASE_URL = https }) })
      assert.equal(2, r.code)
      assert.matches("FAIL  TLS +the CA bundle /nonexistent/ca%.pem cannot be read: fix %-%-ca%-file", r.stdout)
    end)
  end)

  describe("doctor and the clock", function()
    -- a provider whose clock is an hour fast: this spec serves it itself
    it("names the difference with the server's Date header and the fix, exit 1", function()
      local socket = require "socket"
      local core = require "clicktocall.core"
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      server:settimeout(0.05)
      local job = cli.spawn({ "doctor" }, { env = { CLICKTOCALL_BASE_URL = "http://127.0.0.1:" .. port,
        CLICKTOCALL_APP_SECRET = CANARY, CLICKTOCALL_USER_DATA = s.user_data } })
      local body = '{"meta":{"success":true,"message":"ok"},"data":100}'
      local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 3600)
      local deadline = core.now() + 20
      while not job.done() and core.now() < deadline do
        local c = server:accept()
        if c then
          c:settimeout(2)
          local line = c:receive("*l")
          local length = 0
          while line and line ~= "" do
            length = tonumber(line:lower():match("^content%-length:%s*(%d+)")) or length
            line = c:receive("*l")
          end
          if line then
            if length > 0 then
              c:receive(length)
            end
            c:send("HTTP/1.1 200 OK\r\nDate: " .. date .. "\r\nContent-Type: application/json\r\n" ..
              "Content-Length: " .. #body .. "\r\nConnection: close\r\n\r\n" .. body)
          end
          c:close()
        end
      end
      server:close()
      local r = assert(job.result(), "doctor did not finish")
      outputs[#outputs + 1] = r.stdout
      outputs[#outputs + 1] = r.stderr
      assert.equal(1, r.code)
      assert.matches("FAIL  clock +this machine's clock is 3[56]%d%d s behind the server's: .*timedatectl", r.stdout)
      assert.matches("ok    credentials", r.stdout)
    end)
  end)

  describe("failures and exit codes", function()
    it("exits 4 on a network error, a timeout and an HTTP error", function()
      local r = run({ "balance" }, { env = cli.sim_env(s, { CLICKTOCALL_BASE_URL = "http://127.0.0.1:" ..
        nginx.free_port() }) })
      assert.equal(4, r.code)
      assert.matches("^clicktocall balance: .*%(network error%)%.\n$", r.stderr)
      s:post("/_sim/fault", { path = "/management/customer/isallow", kind = "latency", ms = 3000, count = 5 })
      r = run({ "--timeout", "0.3", "balance" })
      assert.equal(4, r.code)
      assert.matches("%(timeout error%)%.\n$", r.stderr)
      s:post("/_sim/fault/clear")
      s:post("/_sim/fault", { path = "/management/customer/isallow", kind = "status", status = 503, count = 10 })
      r = run({ "balance" })
      assert.equal(4, r.code)
      assert.matches("%(HTTP 503%)%.\n$", r.stderr)
    end)

    -- the dials the simulator saw
    local function sim_dials()
      local n = 0
      local log = s:get("/_sim/requests")
      for _, q in ipairs(log.requests or log) do
        n = n + (q.uri == "/rest/voiceCall/api" and 1 or 0)
      end
      return n
    end

    it("a dial cut off after sending: exit 4, sent once, and the user told it may have been placed", function()
      assert.equal(0, run({ "bind", "PP1", "13918337711" }).code)
      s:post("/_sim/fault", { path = "/rest/voiceCall/api", kind = "reset_after_send" })
      local r = run({ "dial", "13918337711", "13500000002", "--seat", "PP1", "--force" })
      assert.equal(4, r.code)
      assert.equal("", r.stdout)
      assert.matches("%(network error%); the call MAY have been placed and the agent's phone may be ringing now: " ..
        "its record shows in `clicktocall records` only once the call has ended, so a list without it proves " ..
        "nothing; no dial guard was used %(%-%-force%), so nothing stops a repeat: wait for the call to end " ..
        "before dialling again%.\n$", r.stderr)
      assert.is_nil(r.stderr:find("--from 10m", 1, true))
      assert.equal(1, sim_dials())
    end)

    it("two identical dials in a row: the second is refused (exit 8, --force named); --force dials", function()
      assert.equal(0, run({ "bind", "PP1", "13918337711" }).code)
      local home = cli.tmpdir()
      local dial = { "dial", "13918337711", "13500000002", "--seat", "PP1" }
      local r = run(dial, { home = home })
      assert.equal(0, r.code, r.stderr)
      r = run(dial, { home = home })
      assert.same({ 8, "" }, { r.code, r.stdout })
      assert.matches("^clicktocall dial: refused by the dial guard: a dial from %+8613918337711 to %+8613500000002 " ..
        "on seat PP1 was placed [%d.]+ s ago; if you know that it did not ring, run the same command with " ..
        "%-%-force to dial anyway%.\n$", r.stderr)
      assert.equal(1, sim_dials())
      r = run({ "dial", "13918337711", "13500000002", "--seat", "PP1", "--force" }, { home = home })
      assert.equal(0, r.code, r.stderr)
      assert.equal(2, sim_dials())
      -- another pair, and the same pair for another user on this machine (another HOME), are other dials
      assert.equal(0, run({ "dial", "13918337711", "13500000003", "--seat", "PP1" }, { home = home }).code)
      assert.equal(0, run(dial).code)
      assert.equal(4, sim_dials())
      -- the claims live under ~/.cache/clicktocall/dials, or $XDG_RUNTIME_DIR/clicktocall/dials when set
      local core = require "clicktocall.core"
      assert.equal("directory", core.file_kind(home .. "/.cache/clicktocall/dials"))
      local xdg = cli.tmpdir()
      local env2 = cli.sim_env(s, { XDG_RUNTIME_DIR = xdg })
      assert.equal(0, run({ "dial", "13918337711", "13500000004", "--seat", "PP1" }, { env = env2 }).code)
      assert.equal(8, run({ "dial", "13918337711", "13500000004", "--seat", "PP1" }, { env = env2 }).code)
      assert.equal(5, sim_dials())
      assert.equal("directory", core.file_kind(xdg .. "/clicktocall/dials"))
    end)

    it("a dial that may have rung: a repeat within the hold is refused, and the message says so", function()
      assert.equal(0, run({ "bind", "PP1", "13918337711" }).code)
      local home = cli.tmpdir()
      cli.write(home .. "/config", "dial_guard_hold = 120\n", "600")
      local dial = { "--config", home .. "/config", "dial", "13918337711", "13500000002", "--seat", "PP1" }
      s:post("/_sim/fault", { path = "/rest/voiceCall/api", kind = "reset_after_send" })
      local r = run(dial, { home = home })
      assert.equal(4, r.code)
      assert.matches("%(network error%); the call MAY have been placed and the agent's phone may be ringing now: " ..
        "its record shows in `clicktocall records` only once the call has ended, so a list without it proves " ..
        "nothing; the dial guard refuses the same dial for the next 120 s %(%-%-force dials anyway%)%.\n$", r.stderr)
      s:post("/_sim/fault/clear")
      r = run(dial, { home = home })
      assert.equal(8, r.code)
      assert.matches("^clicktocall dial: refused by the dial guard: a dial from %+8613918337711 to %+8613500000002 " ..
        "on seat PP1 was sent [%d.]+ s ago and its outcome is unknown %(it may have rung; its call record appears " ..
        "only when the call ends%): the same dial is refused for another 1%d%d s; if you know that it did not " ..
        "ring, run the same command with %-%-force to dial anyway%.\n$", r.stderr)
      assert.equal(1, sim_dials())
      -- a timeout after sending: the same
      s:post("/_sim/fault", { path = "/rest/voiceCall/api", kind = "latency", ms = 3000 })
      local slow = { "--timeout", "0.5", "dial", "13918337711", "13500000007", "--seat", "PP1" }
      r = run(slow, { home = home })
      assert.equal(4, r.code)
      assert.matches("%(timeout error%); the call MAY have been placed .* the dial guard refuses the same dial for " ..
        "the next 300 s %(%-%-force dials anyway%)%.\n$", r.stderr)
      assert.equal(8, run(slow, { home = home }).code)
      -- a dial that provably never left is no claim: the next one goes
      local down = cli.sim_env(s, { CLICKTOCALL_BASE_URL = "http://127.0.0.1:1" })
      r = run({ "dial", "13918337711", "13500000009", "--seat", "PP1" }, { home = home, env = down })
      assert.equal(4, r.code)
      assert.is_nil(r.stderr:find("MAY", 1, true))
      assert.equal(0, run({ "dial", "13918337711", "13500000009", "--seat", "PP1" }, { home = home }).code)
    end)

    it("two processes racing the local guard: one dial", function()
      assert.equal(0, run({ "bind", "PP1", "13918337711" }).code)
      for round = 1, 3 do
        local home = cli.tmpdir()
        local callee = "1350000001" .. round
        local jobs = {}
        for i = 1, 2 do
          jobs[i] = cli.spawn({ "dial", "13918337711", callee, "--seat", "PP1" }, { home = home, env = env })
        end
        assert.is_true(nginx.wait_for(function() return jobs[1].done() and jobs[2].done() end, 30, "both dials"))
        local codes = { jobs[1].result().code, jobs[2].result().code }
        table.sort(codes)
        assert.same({ 0, 8 }, codes)
        assert.equal(round, sim_dials())
      end
    end)

    it("dial_guard = off dials twice; a bad dial_guard is a usage error", function()
      assert.equal(0, run({ "bind", "PP1", "13918337711" }).code)
      local home = cli.tmpdir()
      cli.write(home .. "/config", "dial_guard = off\n", "600")
      local dial = { "--config", home .. "/config", "dial", "13918337711", "13500000002", "--seat", "PP1" }
      assert.equal(0, run(dial, { home = home }).code)
      assert.equal(0, run(dial, { home = home }).code)
      assert.equal(2, sim_dials())
      -- a mistyped address may hold a password: it is not echoed
      cli.write(home .. "/config", "dial_guard = memcached://u:CANARY-pw@x\n", "600")
      local r = run(dial, { home = home })
      assert.equal(2, r.code)
      assert.matches("dial_guard in .* must be local, off or redis%[s%]://%[user:password@%]host:port%[/db%]",
                     r.stderr)
      assert.is_nil(r.stderr:find("CANARY", 1, true), r.stderr)
      assert.equal(2, sim_dials())
      -- rediss:// is taken (here unreachable: refused, exit 4, nothing dialled)
      cli.write(home .. "/config", "dial_guard = rediss://:CANARY-pw@127.0.0.1:1\n", "600")
      r = run(dial, { home = home })
      assert.equal(4, r.code, r.stderr)
      assert.is_nil(r.stderr:find("CANARY", 1, true), r.stderr)
      assert.equal(2, sim_dials())
    end)

    it("exits 1 when the provider refuses, with its message", function()
      s:post("/_sim/fault", { path = "/management/customer/isallow", kind = "api_error", message = "余额查询失败" })
      local r = run({ "balance" })
      assert.equal(1, r.code)
      assert.equal("clicktocall balance: the provider refused: 余额查询失败.\n", r.stderr)
    end)

    it("-v logs each request and answer to stderr, never the secret", function()
      local r = run({ "-v", "balance" })
      assert.equal(0, r.code)
      assert.equal("6152\n", r.stdout)
      assert.matches("clicktocall: request POST " .. s.base_url:gsub("%p", "%%%0") ..
        "/management/customer/isallow attempt 1", r.stderr)
    end)
  end)

  describe("jobs", function()
    it("archive: a day of recordings on disk, plain progress lines, a summary, exit 0", function()
      s:post("/_sim/seed", { count = 30, start_time = "2026-11-30 00:00:00", end_time = "2026-11-30 23:00:00" })
      local dir = cli.tmpdir()
      local r = run({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", dir })
      assert.equal(0, r.code, r.stderr)
      -- seeded ids divisible by 10 have no recording
      assert.matches("^archived 27, skipped 0 %(already there%), 3 without a recording, 0 failed", r.stdout)
      assert.matches("archived 27/27 ", r.stderr)
      assert.is_nil(r.stderr:find("\r", 1, true))
      r = run({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", dir })
      assert.matches("^archived 0, skipped 27", r.stdout)
    end)

    it("archive --dry-run: the plan in words and as JSON, the directory as it was, no download", function()
      s:post("/_sim/seed", { count = 30, start_time = "2026-11-30 00:00:00", end_time = "2026-11-30 23:00:00" })
      local dir = cli.tmpdir()
      local r = run({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", dir, "--dry-run" })
      assert.equal(0, r.code, r.stderr)
      assert.matches("^dry run: would download 27 %(size unknown%), skip 0 %(already there%), 3 without a "
        .. "recording; 1 page listed; nothing written to ", r.stdout)
      assert.equal(0, #require("spec.helpers.jobs").tree(dir))
      r = run({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", dir, "--dry-run", "-o", "json" })
      assert.equal(0, r.code, r.stderr)
      local plan = cjson.decode(r.stdout)
      assert.is_true(plan.dry_run)
      assert.equal(27, plan.to_download)
      assert.equal(3, plan.no_recording)
      -- a past day's recordings: those within 24 h of their 7 days are listed with their expiry
      for _, e in ipairs(plan.expiring) do
        assert.equal("number", type(e.id))
        assert.is_true(e.expires_at - os.time() <= 86400)
      end
      assert.equal(0, #require("spec.helpers.jobs").tree(dir))
      -- the real run downloads what the plan said
      r = run({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", dir })
      assert.matches("^archived 27, skipped 0", r.stdout)
    end)

    it("archive: exit 5 naming the failed recordings", function()
      s:post("/_sim/seed", { count = 5, start_time = "2026-11-30 00:00:00", end_time = "2026-11-30 23:00:00" })
      s:post("/_sim/fault", { path = "/recordings/*", kind = "status", status = 404, count = 100 })
      local r = run({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", cli.tmpdir() })
      assert.equal(5, r.code)
      assert.matches("failed: id %d+, session ", r.stdout) -- ids go on across the spec's seeds
    end)

    it("archive: the progress bar in a real terminal (tmux) while a slow simulator serves", function()
      s:post("/_sim/seed", { count = 20, start_time = "2026-11-30 00:00:00", end_time = "2026-11-30 23:00:00" })
      s:post("/_sim/fault", { path = "/recordings/*", kind = "latency", ms = 300, count = 100 })
      local t = cli.tmux({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", cli.tmpdir(),
                           "--concurrency", "1" }, { env = env })
      finally(function() t:kill() end)
      local mid, seen = t:wait_for("%] %d+/18 recordings", 30)
      assert.truthy(mid, seen)
      assert.matches("%[[#.]+%] %d+/18 recordings  [%d.]+ %a+  [%d.]+ %a+/s  [%d:-]+ left  %d+ failed", mid)
      local done, text = t:wait_for("__EXIT__%d+", 60)
      assert.truthy(done, text)
      assert.matches("18/18 recordings", done)
      assert.matches("__EXIT__0", done)
    end)

    it("sync: each new record on stdout, the next run only the new ones, busy is 6", function()
      s:post("/_sim/seed", { count = 150, start_time = os.time() - 3600, end_time = os.time() - 60 })
      local state = cli.tmpdir() .. "/state.json"
      local r = run({ "sync", "--state", state, "--since", "2h" })
      assert.equal(0, r.code, r.stderr)
      assert.equal(150, #lines(r.stdout))
      assert.equal("number", type(cjson.decode(lines(r.stdout)[1]).id))
      s:post("/_sim/seed", { count = 2, start_time = os.time() - 30, end_time = os.time() - 10 })
      r = run({ "sync", "--state", state })
      assert.equal(0, r.code, r.stderr)
      assert.equal(2, #lines(r.stdout))
    end)

    it("sync --dry-run: what a run would write, no record on stdout, no state file", function()
      -- 20: later tests count on ids going on by tens (an id divisible by 10 has no recording)
      s:post("/_sim/seed", { count = 20, start_time = os.time() - 3600, end_time = os.time() - 60 })
      local state = cli.tmpdir() .. "/state.json"
      local r = run({ "sync", "--state", state, "--since", "2h", "--dry-run" })
      assert.equal(0, r.code, r.stderr)
      assert.matches("^dry run: would write 20 new records, skip 0 %(already delivered%), in 1 page; through would "
        .. "move to %d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d %(UTC%+8%); .* not written\n$", r.stdout)
      r = run({ "sync", "--state", state, "--since", "2h", "--dry-run", "-o", "json" })
      local plan = cjson.decode(r.stdout)
      assert.equal(20, plan.new)
      assert.equal(0, plan.skipped)
      assert.equal("missing", require("clicktocall.core").file_kind(state))
      r = run({ "sync", "--state", state, "--since", "2h" })
      assert.equal(20, #lines(r.stdout))
    end)

    it("sync --lookback: the summary names skipped and through; the state's window follows the lookback",
       function()
      local now = os.time()
      s:post("/_sim/seed", { count = 10, start_time = now - 1800, end_time = now - 60 })
      local state = cli.tmpdir() .. "/state.json"
      local r = run({ "sync", "--state", state, "--since", "1h", "--lookback", "600" })
      assert.equal(0, r.code, r.stderr)
      assert.equal(10, #lines(r.stdout))
      assert.matches("^clicktocall sync: 10 new records, 0 skipped, in 1 page; through %d%d%d%d%-%d%d%-%d%d "
        .. "%d%d:%d%d:%d%d %(UTC%+8%) in ", r.stderr)
      -- the next run re-reads the last 600 s: the records that ended there are skipped, none delivered again
      r = run({ "sync", "--state", state, "--lookback", "600" })
      assert.equal(0, r.code, r.stderr)
      assert.equal(0, #lines(r.stdout))
      local skipped = tonumber(r.stderr:match(", (%d+) skipped,"))
      assert.is_true(skipped >= 3 and skipped <= 4, r.stderr)
      r = run({ "sync", "--state", state, "--lookback", "1h" })
      assert.equal(2, r.code)
      assert.matches("%-%-lookback", r.stderr)
    end)
  end)

  describe("in a real terminal", function()
    it("records defaults to the aligned table when stdout is a terminal (tmux)", function()
      s:post("/_sim/seed", { count = 3, start_time = "2026-11-30 00:00:00", end_time = "2026-11-30 23:00:00" })
      local t = cli.tmux({ "records", "--from", "2026-11-30", "--to", "2026-11-30" }, { env = env })
      finally(function() t:kill() end)
      local text, seen = t:wait_for("__EXIT__%d+", 20)
      assert.truthy(text, seen)
      assert.matches("ID +ENDED %(UTC%+8%) +CALLER", text)
      assert.matches("3 records from 2026%-11%-30 00:00:00 to 2026%-11%-30 23:59:59", text)
      assert.matches("__EXIT__0", text)
    end)
  end)

  describe("installed", function()
    it("runs from a bin directory away from the checkout, with the modules on the normal paths", function()
      local bin = cli.tmpdir()
      assert(os.execute("cp " .. cli.quote(cli.BIN) .. " " .. cli.quote(bin .. "/clicktocall")))
      local build = rawget(_G, "jit") and "luajit" or _VERSION:match("(%d+%.%d+)")
      local r = run({ "balance" }, { bin = bin .. "/clicktocall", env = cli.sim_env(s, {
        LUA_PATH = cli.ROOT .. "/lua/?.lua;;", LUA_CPATH = cli.ROOT .. "/build/" .. build .. "/?.so;;" }) })
      assert.same({ 0, "6152\n" }, { r.code, r.stdout })
      r = run({ "balance" }, { bin = bin .. "/clicktocall" })
      assert.equal(1, r.code)
      assert.equal("clicktocall: cannot load its Lua modules (module 'clicktocall.cli' not found); install " ..
        "clicktocall (make install, or luarocks) or set LUA_PATH and LUA_CPATH.\n", r.stderr)
    end)
  end)

  describe("accounts: config init, --profile, the system file, the environment (issue 19)", function()
    it("config init writes a mode-600 file from flags and the environment, and refuses to overwrite it", function()
      local home = cli.tmpdir()
      local e = { CLICKTOCALL_APP_SECRET = CANARY }
      local r = run({ "config", "init", "--base-url", s.base_url, "--user-data", s.user_data, "--timeout", "5" },
        { env = e, home = home })
      local path = home .. "/.config/clicktocall/config"
      assert.equal(0, r.code, r.stderr)
      assert.equal("wrote the default profile to " .. path .. " (mode 600): base_url app_secret user_data timeout; " ..
        "check it with `clicktocall doctor`\n", r.stdout)
      assert.equal("rw-------", require("clicktocall.cli.config").permissions(path))
      assert.equal("6152\n", run({ "balance" }, { env = {}, home = home }).stdout)
      -- a second time: refused, the file untouched
      local before = cli.read(path)
      r = run({ "config", "init", "--base-url", "http://127.0.0.1:1", "--user-data", "x" }, { env = e, home = home })
      assert.equal(2, r.code)
      assert.matches("^clicktocall config init: The config file .* already has settings for the default profile, " ..
        "so nothing was written: add %-%-force", r.stderr)
      assert.equal(before, cli.read(path))
      -- another profile is added beside it; --profile picks it
      r = run({ "--profile", "acme", "config", "init", "--base-url", s.base_url, "--user-data", "no-such-customer" },
        { env = e, home = home })
      assert.equal(0, r.code, r.stderr)
      assert.equal(before, cli.read(path):sub(1, #before))
      assert.equal(0, run({ "balance" }, { env = {}, home = home }).code)
      r = run({ "balance", "--profile", "acme" }, { env = {}, home = home })
      assert.equal(1, r.code) -- the provider does not know that customer
      assert.equal(1, run({ "balance" }, { env = { CLICKTOCALL_PROFILE = "acme" }, home = home }).code)
      r = run({ "balance", "--profile", "acme2" }, { env = {}, home = home })
      assert.equal(2, r.code)
      assert.equal("There is no profile [acme2] (--profile acme2) in " .. path .. "; the profiles there: acme, " ..
        "default.\n", r.stderr)
      -- --force replaces the profile's lines only
      r = run({ "--profile", "acme", "config", "init", "--force", "--base-url", s.base_url, "--user-data",
        s.user_data, "-o", "json" }, { env = e, home = home })
      assert.equal(0, r.code, r.stderr)
      assert.same({ path = path, profile = "acme", keys = "base_url app_secret user_data" }, cjson.decode(r.stdout))
      assert.equal(0, run({ "balance", "--profile", "acme" }, { env = {}, home = home }).code)
    end)

    it("config init asks for nothing: it names what is missing and writes nothing", function()
      local home = cli.tmpdir()
      local r = run({ "config", "init", "--base-url", s.base_url }, { env = {}, home = home })
      assert.equal(2, r.code)
      assert.equal("clicktocall config init: nothing was written: it needs app_secret (CLICKTOCALL_APP_SECRET in " ..
        "the environment (never a flag)), user_data (--user-data or CLICKTOCALL_USER_DATA); see `clicktocall " ..
        "config init --help`.\n", r.stderr)
      assert.is_nil(cli.read(home .. "/.config/clicktocall/config"))
      r = run({ "--profile", "a b", "config", "init" }, { env = cli.sim_env(s), home = home })
      assert.equal(2, r.code)
      assert.matches("a profile's name is letters, digits", r.stderr)
      -- --config FILE (or CLICKTOCALL_CONFIG) says where
      local path = cli.tmpdir() .. "/elsewhere.conf"
      r = run({ "config", "init", "--config", path }, { env = cli.sim_env(s), home = home })
      assert.equal(0, r.code, r.stderr)
      assert.equal("6152\n", run({ "balance", "--config", path }, { env = {}, home = home }).stdout)
      path = cli.tmpdir() .. "/env.conf"
      assert.equal(0, run({ "config", "init" }, { env = cli.sim_env(s, { CLICKTOCALL_CONFIG = path }) }).code)
      assert.equal("6152\n", run({ "balance" }, { env = { CLICKTOCALL_CONFIG = path } }).stdout)
    end)

    it("reads a world-readable system file without a secret under the user's, and refuses one with it", function()
      local dir = cli.tmpdir()
      local sys = dir .. "/system.conf"
      cli.write(sys, "# for everyone\nbase_url = http://127.0.0.1:1\nuser_data = " .. s.user_data .. "\n", "644")
      local e = { CLICKTOCALL_SYSTEM_CONFIG = sys, CLICKTOCALL_APP_SECRET = CANARY }
      assert.equal(4, run({ "balance" }, { env = e }).code) -- its base_url is used: nothing listens there
      e.CLICKTOCALL_BASE_URL = s.base_url
      local r = run({ "balance" }, { env = e })
      assert.same({ 0, "6152\n" }, { r.code, r.stdout })
      local d = run({ "doctor" }, { env = e })
      assert.matches("user_data from " .. sys:gsub("%p", "%%%0") .. ":3; config file [^;]*; system config " ..
        sys:gsub("%p", "%%%0"), d.stdout)
      -- the user's file before the system's
      local home = cli.tmpdir()
      os.execute("mkdir -p " .. cli.quote(home .. "/.config/clicktocall"))
      cli.write(home .. "/.config/clicktocall/config", "user_data = nobody-known\n", "600")
      assert.equal(1, run({ "balance" }, { env = e, home = home }).code)
      -- with the secret in it, readable by others: refused
      cli.write(sys, "base_url = " .. s.base_url .. "\napp_secret = " .. CANARY .. "\n", "644")
      r = run({ "balance" }, { env = { CLICKTOCALL_SYSTEM_CONFIG = sys, CLICKTOCALL_USER_DATA = s.user_data } })
      assert.equal(2, r.code)
      assert.matches("^The system config file .* holds app_secret and can be read by group or others %(mode " ..
        "rw%-r%-%-r%-%-%), so it is not used", r.stderr)
      assert(os.execute("chmod 600 " .. cli.quote(sys)))
      assert.equal(0, run({ "balance" }, { env = { CLICKTOCALL_SYSTEM_CONFIG = sys,
        CLICKTOCALL_USER_DATA = s.user_data } }).code)
    end)

    it("takes the config path, timeout, CA file and proxy from the environment", function()
      local dir = cli.tmpdir()
      local path = dir .. "/ctc.conf"
      cli.write(path, "base_url = " .. s.base_url .. "\napp_secret = " .. CANARY .. "\nuser_data = " ..
        s.user_data .. "\n", "600")
      assert.equal("6152\n", run({ "balance" }, { env = { CLICKTOCALL_CONFIG = path } }).stdout)
      local r = run({ "balance" }, { env = { CLICKTOCALL_CONFIG = path, CLICKTOCALL_TIMEOUT = "soon" } })
      assert.same({ 2, "CLICKTOCALL_TIMEOUT must be a positive number of seconds, not 'soon'.\n" },
        { r.code, r.stderr })
      s:post("/_sim/fault", { path = "/management/customer/isallow", kind = "latency", ms = 3000, count = 5 })
      r = run({ "balance" }, { env = { CLICKTOCALL_CONFIG = path, CLICKTOCALL_TIMEOUT = "0.3" } })
      assert.equal(4, r.code)
      assert.matches("%(timeout error%)", r.stderr)
      s:post("/_sim/fault/clear")
      r = run({ "balance" }, { env = { CLICKTOCALL_CONFIG = path, CLICKTOCALL_CA_FILE = "/nonexistent/ca.pem" } })
      assert.same({ 2, "clicktocall balance: CLICKTOCALL_CA_FILE must name a readable CA bundle file.\n" },
        { r.code, r.stderr })
      r = run({ "balance" }, { env = { CLICKTOCALL_CONFIG = path,
        CLICKTOCALL_PROXY = "http://127.0.0.1:" .. nginx.free_port() } })
      assert.equal(4, r.code)
    end)
  end)

  describe("messages name the setting as it was given (issue 19)", function()
    it("a flag, a variable, a config file's line", function()
      local r = run({ "--base-url", "ftp://x", "balance" })
      assert.same({ 2, "clicktocall balance: --base-url must be an http:// or https:// URL without spaces, query " ..
        "or fragment.\n" }, { r.code, r.stderr })
      r = run({ "balance" }, { env = cli.sim_env(s, { CLICKTOCALL_BASE_URL = "http://x y" }) })
      assert.matches("^clicktocall balance: CLICKTOCALL_BASE_URL must be", r.stderr)
      local path = cli.tmpdir() .. "/c"
      cli.write(path, "# mine\nbase_url = https://api.example.com/?x=1\n", "600")
      r = run({ "--config", path, "balance" }, { env = { CLICKTOCALL_APP_SECRET = CANARY,
        CLICKTOCALL_USER_DATA = "u" } })
      assert.same({ 2, "clicktocall balance: base_url in " .. path .. ":2 must be an http:// or https:// URL " ..
        "without spaces, query or fragment.\n" }, { r.code, r.stderr })
      r = run({ "dial", "12", "13500000002", "--seat", "PP1" })
      assert.equal(2, r.code)
      assert.matches("^clicktocall dial: CALLER '12': ", r.stderr)
      for _, text in ipairs({ r.stderr }) do
        assert.is_nil(text:find("bad argument", 1, true))
      end
    end)
  end)

  describe("doctor and the environment's proxy, as libcurl uses it (issue 19)", function()
    it("reports http_proxy, fails its connect check where the calls fail too; no_proxy goes direct", function()
      local port = nginx.free_port()
      local e = cli.sim_env(s, { http_proxy = "http://127.0.0.1:" .. port })
      local r = run({ "doctor" }, { env = e })
      assert.equal(4, r.code, r.stdout)
      assert.matches("ok    proxy        http://127%.0%.0%.1:" .. port .. " %(http, host 127%.0%.0%.1, port " .. port ..
        "%), http_proxy %(the environment, which libcurl reads%)\n", r.stdout)
      assert.matches("FAIL  TCP +cannot connect to 127%.0%.0%.1 port " .. port .. " %(the proxy%)", r.stdout)
      -- the calls take the same path: doctor tells the truth
      assert.equal(4, run({ "balance" }, { env = e }).code)
      -- HTTP_PROXY (upper case) is not used by libcurl, nor by doctor
      local upper = cli.sim_env(s, { HTTP_PROXY = "http://127.0.0.1:" .. port })
      assert.equal(0, run({ "doctor" }, { env = upper }).code)
      assert.equal(0, run({ "balance" }, { env = upper }).code)
      -- no_proxy naming the host: straight to it, for doctor and for the calls
      e.no_proxy = "localhost,127.0.0.1"
      r = run({ "doctor" }, { env = e })
      assert.equal(0, r.code, r.stdout)
      assert.matches("ok    proxy        none: no_proxy %(the environment%) names 127%.0%.0%.1, so calls go " ..
        "straight to it\n", r.stdout)
      assert.equal("6152\n", run({ "balance" }, { env = e }).stdout)
      -- libcurl lets no_proxy win even over a proxy setting: doctor says the same
      e.CLICKTOCALL_PROXY = "http://127.0.0.1:" .. port
      assert.equal(0, run({ "doctor" }, { env = e }).code)
      assert.equal("6152\n", run({ "balance" }, { env = e }).stdout)
      e.no_proxy = nil
      r = run({ "doctor" }, { env = e })
      assert.equal(4, r.code)
      assert.matches("ok    proxy        http://127%.0%.0%.1:" .. port .. " %(.-%), proxy from CLICKTOCALL_PROXY\n",
        r.stdout)
    end)

    it("reports https_proxy for an https base URL, and fails at the proxy", function()
      local port = nginx.free_port()
      local https = s.base_url:gsub("^http:", "https:")
      local r = run({ "doctor" }, { env = cli.sim_env(s, { CLICKTOCALL_BASE_URL = https,
        https_proxy = "127.0.0.1:" .. port }) })
      assert.equal(4, r.code)
      assert.matches("ok    proxy        127%.0%.0%.1:" .. port .. " %(http, host 127%.0%.0%.1, port " .. port ..
        "%), https_proxy", r.stdout)
      assert.matches("FAIL  TCP +cannot connect to 127%.0%.0%.1 port " .. port .. " %(the proxy%)", r.stdout)
    end)
  end)

  describe("-o on every command, --quiet (issue 19)", function()
    it("balance, bind, dial, normalize, doctor and records as json, jsonl and csv", function()
      assert.same({ balance = 6152 }, cjson.decode(run({ "balance", "-o", "json" }).stdout))
      local r = run({ "-o", "csv", "bind", "PP9", "13918337711" })
      assert.same({ { "seat", "phone" }, { "PP9", "+8613918337711" } }, cli.parse_csv(r.stdout))
      r = run({ "dial", "13918337711", "13500000002", "--seat", "PP9", "--output", "jsonl" })
      assert.equal(0, r.code, r.stderr)
      local d = cjson.decode(r.stdout)
      assert.same({ "+8613918337711", "+8613500000002", "PP9" }, { d.caller, d.callee, d.seat })
      assert.matches("^[%x-]+_%d+$", d.session_id)
      r = run({ "normalize", "13918337711", "12", "-o", "json" }, { env = {} })
      assert.equal(2, r.code)
      local n = cjson.decode(r.stdout)
      assert.same({ "13918337711", "+8613918337711" }, { n[1].input, n[1].output })
      assert.same({ "12", "string" }, { n[2].input, type(n[2].error) })
      r = run({ "doctor", "-o", "jsonl" })
      assert.equal(0, r.code)
      local checks = {}
      for _, l in ipairs(lines(r.stdout)) do
        local c = cjson.decode(l)
        assert.equal("ok", c.status)
        checks[#checks + 1] = c.check
      end
      assert.same({ "config", "base URL", "proxy", "DNS", "TCP", "TLS", "clock", "credentials" }, checks)
      r = run({ "doctor", "-o", "csv" }, { env = cli.sim_env(s, { CLICKTOCALL_APP_SECRET = "wrong" }) })
      assert.equal(1, r.code)
      local rows = cli.parse_csv(r.stdout)
      assert.same({ "check", "status", "detail" }, rows[1])
      assert.same({ "credentials", "fail" }, { rows[9][1], rows[9][2] })
      s:post("/_sim/seed", { count = 3, start_time = "2026-11-30 00:00:00", end_time = "2026-11-30 23:00:00" })
      r = run({ "records", "--from", "2026-11-30", "--to", "2026-11-30", "-o", "json" })
      assert.equal(3, #cjson.decode(r.stdout))
    end)

    it("--from and --to take ISO 8601 with a zone and Unix seconds", function()
      s:post("/_sim/seed", { count = 40, start_time = "2026-11-30 00:00:00", end_time = "2026-11-30 23:00:00" })
      local plain = run({ "records", "--from", "2026-11-30 06:00:00", "--to", "2026-11-30 18:00:00" })
      assert.equal(0, plain.code, plain.stderr)
      assert.truthy(#lines(plain.stdout) > 5)
      local from = assert(require("clicktocall.core").parse_time("2026-11-30 06:00:00"))
      for _, w in ipairs({ { "2026-11-29T22:00:00Z", "2026-11-30T10:00:00Z" },
                           { "2026-11-30T06:00:00+08:00", "2026-11-30T05:00:00-05:00" },
                           { tostring(from), tostring(from + 12 * 3600) } }) do
        local r = run({ "records", "--from", w[1], "--to", w[2] })
        assert.equal(0, r.code, r.stderr)
        assert.equal(plain.stdout, r.stdout, w[1])
      end
    end)

    it("archive: -q prints no progress; -o json gives the summary with the failures", function()
      s:post("/_sim/seed", { count = 5, start_time = "2026-11-30 00:00:00", end_time = "2026-11-30 23:00:00" })
      local dir = cli.tmpdir()
      local r = run({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", dir, "-q" })
      assert.equal(0, r.code, r.stderr)
      assert.equal("", r.stderr)
      assert.matches("^archived 4, ", r.stdout)
      s:post("/_sim/seed", { count = 2, start_time = "2026-11-30 00:00:00", end_time = "2026-11-30 23:00:00" })
      s:post("/_sim/fault", { path = "/recordings/*", kind = "status", status = 404, count = 100 })
      r = run({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", dir, "-o", "json", "-q" })
      assert.equal(5, r.code)
      local summary = cjson.decode(r.stdout)
      assert.same({ 0, 4, 2 }, { summary.downloaded, summary.skipped, summary.failed })
      assert.equal(2, #summary.failures)
      assert.matches("404", summary.failures[1].error)
      assert.matches("^clicktocall archive: 2 recordings failed", r.stderr) -- an error: kept by -q
    end)
  end)

  describe("the man page and the completion scripts, generated (issue 19)", function()
    local function sh(cmd)
      local p = io.popen("unset LD_PRELOAD; cd " .. cli.quote(cli.ROOT) .. " && " .. cmd .. " 2>&1")
      local text = p:read("*a")
      local ok, _, code = p:close()
      return text, (ok == true or ok == 0) and 0 or code
    end

    it("renders every command, option and example of the help into roff that groff reads cleanly", function()
      local page, code = sh(cli.lua() .. " scripts/manpage.lua")
      assert.equal(0, code, page)
      assert.matches('^%.TH CLICKTOCALL 1 "" "clicktocall ' .. clicktocall._VERSION:gsub("%p", "%%%0"), page)
      local function roff(text)
        return (text:gsub("%-", "\\-"))
      end
      local parser = require("clicktocall.cli").build_parser()
      for _, o in ipairs(parser._options) do
        assert.truthy(page:find(roff(o._name), 1, true), o._name)
      end
      local function check(c)
        assert.truthy(page:find("\n.SS " .. roff(c:_get_fullname(true)) .. "\n", 1, true), c._name)
        for _, o in ipairs(c._options) do
          assert.truthy(page:find(roff(o._name), 1, true), c._name .. " " .. o._name)
        end
        for line in ((c._epilog or ""):match("Examples:\n(.-)\n\n") or ""):gmatch("[^\n]+") do
          assert.truthy(page:find(roff(line:gsub("^%s+", "")), 1, true), line)
        end
        for _, sub in ipairs(c._commands) do
          check(sub)
        end
      end
      for _, c in ipairs(parser._commands) do
        check(c)
      end
      for _, section in ipairs({ "NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "CONFIGURATION",
                                 "OUTPUT", "TIMES", "EXIT CODES" }) do
        assert.truthy(page:find("\n.SH " .. section .. "\n", 1, true), section)
      end
      if sh("command -v groff >/dev/null; echo $?") ~= "0\n" then
        return pending("groff is not installed")
      end
      local tmp = cli.tmpdir() .. "/clicktocall.1"
      cli.write(tmp, page)
      local warnings = sh("groff -man -Tutf8 -ww -z " .. cli.quote(tmp))
      assert.equal("", warnings)
    end)

    it("completes commands and options in bash", function()
      local script, code = sh(cli.lua() .. " bin/clicktocall completion bash")
      assert.equal(0, code, script)
      local file = cli.tmpdir() .. "/clicktocall.bash"
      cli.write(file, script)
      local function complete(...)
        local words = { "clicktocall", ... }
        for i, w in ipairs(words) do
          words[i] = cli.quote(w)
        end
        return (sh(("bash -c %s"):format(cli.quote(("source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _clicktocall; " ..
          "echo \"${COMPREPLY[*]}\""):format(cli.quote(file), table.concat(words, " "), #words - 1)))))
      end
      assert.equal("records\n", complete("rec"))
      assert.equal("completion config\n", complete("co"))
      assert.equal("--from --format\n", complete("records", "--f"))
      assert.equal("csv\n", complete("balance", "-o", "c"))
      assert.equal("init\n", complete("config", "i"))
    end)

    it("make install puts them under share/man/man1 and share/bash-completion/completions", function()
      local dest = cli.tmpdir()
      local log, code = sh("make -s install DESTDIR=" .. cli.quote(dest) .. " PREFIX=/usr/local")
      assert.equal(0, code, log)
      local page = cli.read(dest .. "/usr/local/share/man/man1/clicktocall.1")
      assert.equal(sh(cli.lua() .. " scripts/manpage.lua"), page)
      assert.equal(sh(cli.lua() .. " bin/clicktocall completion bash"),
        cli.read(dest .. "/usr/local/share/bash-completion/completions/clicktocall"))
      assert.truthy(cli.read(dest .. "/usr/local/share/zsh/site-functions/_clicktocall"))
      assert.truthy(cli.read(dest .. "/usr/local/share/fish/vendor_completions.d/clicktocall.fish"))
      sh("make -s uninstall DESTDIR=" .. cli.quote(dest) .. " PREFIX=/usr/local")
      assert.is_nil(cli.read(dest .. "/usr/local/share/man/man1/clicktocall.1"))
    end)
  end)

  it("never printed the secret or its base64 in any stdout or stderr above", function()
    assert.truthy(#outputs > 50)
    for _, text in ipairs(outputs) do
      assert.is_nil(text:find(CANARY, 1, true), text)
      assert.is_nil(text:find(CANARY_B64, 1, true), text)
    end
  end)
end)
