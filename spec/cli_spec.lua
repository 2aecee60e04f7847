-- The clicktocall command's parts, in process: times, configuration, output
-- formats, the progress bar, and the archive and sync commands over a stand-in
-- job (the jobs are built apart). The command as a user runs it, against the
-- simulator, is spec/cli_e2e_spec.lua.
local clicktocall = require "clicktocall"
local mock = require "clicktocall.mock"
local cli = require "clicktocall.cli"
local times = require "clicktocall.cli.times"
local config = require "clicktocall.cli.config"
local output = require "clicktocall.cli.output"
local progress = require "clicktocall.cli.progress"
local helper = require "spec.helpers.cli"

local UD = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"

-- The local dial guard's claims live under XDG_RUNTIME_DIR (else ~/.cache: /nonexistent is writable by root),
-- in a directory of this run's own, so no other run's dial is taken for a repeat.
local GUARD_DIR
local function guard_dir()
  GUARD_DIR = GUARD_DIR or helper.tmpdir()
  return GUARD_DIR
end
local SECRET = "CANARY-s3cr3t-XYZ"

-- an in-memory file handle
local function sink()
  local parts = {}
  return {
    write = function(self, ...)
      for i = 1, select("#", ...) do
        parts[#parts + 1] = tostring((select(i, ...)))
      end
      return self
    end,
    flush = function() end,
    text = function() return table.concat(parts) end,
  }
end

describe("cli times", function()
  local NOW = 1764547200 -- 2025-12-01 08:00:00 UTC+8

  it("reads dates and times on the provider's clock, UTC+8", function()
    local t = assert(times.parse("2026-11-30 10:20:30", NOW))
    assert.equal("2026-11-30 10:20:30", clicktocall.format_time(t))
    assert.equal(t, times.parse("2026-11-30T10:20:30", NOW))
    -- 00:00 in Shanghai is 16:00 UTC the day before
    assert.equal("2026-11-29 16:00:00", os.date("!%Y-%m-%d %H:%M:%S", times.parse("2026-11-30", NOW)))
  end)

  it("takes a bare date as the start of the day, or as its last second for --to", function()
    assert.equal("2026-11-30 00:00:00", clicktocall.format_time(times.parse("2026-11-30", NOW)))
    assert.equal("2026-11-30 23:59:59", clicktocall.format_time(times.parse("2026-11-30", NOW, true)))
    assert.equal("2024-02-29 00:00:00", clicktocall.format_time(times.parse("2024-02-29", NOW)))
  end)

  it("reads now and ages before now", function()
    assert.equal(NOW, times.parse("now", NOW))
    assert.equal(NOW - 7 * 86400, times.parse("7d", NOW))
    assert.equal(NOW - 24 * 3600, times.parse("24h", NOW))
    assert.equal(NOW - 30 * 60, times.parse("30m", NOW))
    assert.equal(NOW - 2 * 7 * 86400, times.parse("2w", NOW))
    assert.equal(NOW - 90, times.parse(" 90s ", NOW))
  end)

  it("refuses what is not a time, with a sentence that shows the forms", function()
    for _, bad in ipairs({ "yesterday", "7", "-7d", "2026-13-01", "2026-02-29", "2026-11-31", "2026-11-30 24:00:00",
                           "2026-11-30 10:60:00", "30/11/2026", "", "1969-12-31" }) do
      local t, err = times.parse(bad, NOW)
      assert.is_nil(t, bad)
      assert.is_string(err)
    end
    local _, err = times.parse("yesterday", NOW)
    assert.matches("yyyy%-MM%-dd HH:mm:ss", err)
  end)

  it("reads an HTTP date", function()
    assert.equal(784111777, times.http_date("Sun, 06 Nov 1994 08:49:37 GMT"))
    assert.is_nil(times.http_date("yesterday"))
    assert.is_nil(times.http_date(nil))
  end)
end)

describe("cli config", function()
  after_each(helper.cleanup)

  local function env(t)
    return function(k) return t[k] end
  end

  it("parses key = value lines, comments, quotes and dashes", function()
    local v = assert(config.parse(table.concat({
      "# clicktocall", "", "base_url = https://api.example.com/ ", "app_secret = \"a b = c\"",
      "user-data=UD", "; also a comment", "timeout = 2.5", "insecure = yes", "proxy = 'http://p:3128'\r",
    }, "\n"), "F"))
    assert.same({ base_url = "https://api.example.com/", app_secret = "a b = c", user_data = "UD",
                  timeout = 2.5, insecure = true, proxy = "http://p:3128" }, v)
  end)

  it("names the line and key of a mistake", function()
    local v, err = config.parse("base_url = x\nsecret = y\n", "/etc/f")
    assert.is_nil(v)
    assert.matches("Line 2 of the config file /etc/f has the unknown key 'secret'", err, 1, true)
    assert.matches("Line 1 .* is not `key = value`", select(2, config.parse("just words", "f")))
    assert.matches("timeout must be a positive number", select(2, config.parse("timeout = soon", "f")))
    assert.matches("insecure must be true or false", select(2, config.parse("insecure = maybe", "f")))
  end)

  it("takes flags first, then the environment, then the file; the secret never from a flag", function()
    local home = helper.tmpdir()
    os.execute("mkdir -p " .. helper.quote(home .. "/.config/clicktocall"))
    local path = home .. "/.config/clicktocall/config"
    helper.write(path, "base_url = http://file\napp_secret = FILE-SECRET\nuser_data = file-ud\ntimeout = 7\n", "600")
    local s, src = assert(config.resolve({ base_url = "http://flag", app_secret = "FLAG" },
      env { HOME = home, CLICKTOCALL_BASE_URL = "http://env", CLICKTOCALL_USER_DATA = "env-ud" }))
    assert.equal("http://flag", s.base_url)
    assert.equal("the --base-url flag", src.base_url)
    assert.equal("env-ud", s.user_data)
    assert.equal("CLICKTOCALL_USER_DATA", src.user_data)
    assert.equal("FILE-SECRET", s.app_secret)
    assert.equal(path .. ":2", src.app_secret) -- the file and the line
    assert.equal(7, s.timeout)
    s = assert(config.resolve({}, env { HOME = home, CLICKTOCALL_APP_SECRET = "ENV-SECRET" }))
    assert.equal("ENV-SECRET", s.app_secret)
    assert.equal("http://file", s.base_url)
  end)

  it("finds the file under XDG_CONFIG_HOME when it is set", function()
    assert.equal("/x/clicktocall/config", config.default_path(env { XDG_CONFIG_HOME = "/x", HOME = "/h" }))
    assert.equal("/h/.config/clicktocall/config", config.default_path(env { HOME = "/h" }))
  end)

  it("refuses a file that group or others can read or change, giving the chmod to run", function()
    local dir = helper.tmpdir()
    local path = dir .. "/my config"
    for _, mode in ipairs({ "644", "640", "604", "620", "602" }) do
      helper.write(path, "app_secret = x\n", mode)
      local s, err = config.resolve({ config = path }, env {})
      assert.is_nil(s, mode)
      assert.matches("run `chmod 600 '" .. dir .. "/my config'` and try again.", err, 1, true)
    end
    helper.write(path, "app_secret = x\n", "400")
    assert.truthy(config.resolve({ config = path }, env {}))
    assert.equal("rw-------", (function() helper.write(path, "", "600"); return config.permissions(path) end)())
  end)

  it("reads a file's mode from the core, without running a command", function()
    local dir = helper.tmpdir()
    local path = dir .. "/c"
    local popen = io.popen
    io.popen = function() error("io.popen called") end -- luacheck: ignore 122
    local ok, perms = pcall(function()
      helper.write(path, "", "640")
      local a = config.permissions(path)
      helper.write(path, "", "4711")
      return { a, config.permissions(path), select(2, config.permissions(dir .. "/none")) }
    end)
    io.popen = popen -- luacheck: ignore 122
    assert(ok, perms)
    assert.same({ "rw-r-----", "rwx--x--x", "could not read its permissions" }, perms)
  end)

  it("says so when --config names a file that is not there", function()
    local s, err = config.resolve({ config = "/nonexistent/ctc" }, env {})
    assert.is_nil(s)
    assert.matches("/nonexistent/ctc does not exist", err, 1, true)
  end)
end)

describe("cli output", function()
  local NASTY = { 'a,b', 'say "hi"', "two\r\nlines", "one\nline", "中文，逗号", "", "trailing ", "=1+2" }

  it("quotes CSV fields by RFC 4180, and they survive a round trip", function()
    assert.equal('"a,b","say ""hi""",plain\r\n', output.csv_line({ "a,b", 'say "hi"', "plain" }))
    assert.equal("1,,\r\n", output.csv_line({ 1, nil, nil }, 3))
    local text = output.csv_line({ "h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8" }) .. output.csv_line(NASTY)
    local rows = helper.parse_csv(text)
    assert.same({ { "h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8" }, NASTY }, rows)
  end)

  it("writes JSON with the provider's fields first and ids exact past 2^53", function()
    local big = math.type and math.tointeger(9007199254740993) or "9007199254740993"
    local s = output.json_object({ zeta = 1, recordFlag = "1", id = big, sessionId = "s/1", note = 'q"\n\1' })
    assert.equal('{"id":9007199254740993,"sessionId":"s/1","recordFlag":"1","note":"q\\"\\n\\u0001","zeta":1}', s)
    assert.equal("1.5", output.json_value(1.5))
    assert.equal("null", output.json_value(0 / 0))
  end)

  it("aligns the table, counting wide characters twice and hiding control characters", function()
    local fh = sink()
    local w = output.new("table", fh)
    w:row({ id = 1, callEndTime = "2026-11-30 10:00:00", callerNum = "+8613800000001", calleeNum = "+8613900000007",
            setingNbr = "坐席一", duration = "99", recordFlag = "1", sessionId = "s1" })
    w:row({ id = 22, callEndTime = "2026-11-30 11:00:00", callerNum = "+8613800000002", calleeNum = "\27[31mred",
            setingNbr = "PP7568000002", duration = "5", recordFlag = "0", sessionId = "s2" })
    w:flush()
    local lines = {}
    for l in fh:text():gmatch("([^\n]*)\n") do
      lines[#lines + 1] = l
    end
    assert.equal(3, #lines)
    assert.is_nil(fh:text():find("\27", 1, true))
    assert.matches("^ID  ENDED %(UTC%+8%)", lines[1])
    -- every column starts at the same screen column on every line
    local function col(line, text)
      local a = line:find(text, 1, true)
      return output.width(line:sub(1, a - 1))
    end
    assert.equal(col(lines[1], "SEAT"), col(lines[2], "坐席一"))
    assert.equal(col(lines[1], "SEAT"), col(lines[3], "PP7568000002"))
    assert.equal(col(lines[1], "REC"), col(lines[2], "yes"))
    assert.equal(col(lines[1], "REC"), col(lines[3], "no"))
    assert.equal(col(lines[1], "SESSION"), col(lines[3], "s2"))
    assert.equal(2, output.width("中"))
  end)
end)

describe("cli progress", function()
  it("formats bytes and durations", function()
    assert.equal("512 B", progress.bytes(512))
    assert.equal("8.0 KiB", progress.bytes(8192))
    assert.equal("1.5 MiB", progress.bytes(1.5 * 1024 * 1024))
    assert.equal("1:05", progress.duration(65))
    assert.equal("1:01:05", progress.duration(3665))
    assert.equal("--:--", progress.duration(nil))
  end)

  it("draws done/total, bytes, rate, time left and failures in place on a terminal", function()
    local t = 100
    local fh = sink()
    local bar = progress.new { fh = fh, tty = true, total = 4, clock = function() return t end, columns = 200 }
    t = 102
    bar:file({ bytes = 8192, file = "a.wav" })
    bar:set_failed(1)
    local text = fh:text()
    assert.matches("\r%[######%.+%] 1/4 recordings  8%.0 KiB  4%.0 KiB/s  0:06 left  0 failed\27%[K\r", text)
    -- a failure is finished work too: the bar moves and the time left shrinks
    assert.matches("\r%[############%.+%] 1/4 recordings  8%.0 KiB  4%.0 KiB/s  0:02 left  1 failed\27%[K$", text)
    bar:finish()
    assert.matches("\n$", fh:text())
  end)

  it("fits the line to a narrow terminal: a shorter bar, then none, then the text cut", function()
    local function line(columns)
      local bar = progress.new { fh = sink(), tty = true, total = 100, clock = function() return 0 end,
                                 columns = columns }
      bar.done, bar.bytes = 50, 4096
      return bar:line()
    end
    local text = "50/100 recordings  4.0 KiB  0 B/s  0:00 left  0 failed"
    assert.equal("[############............] " .. text, line(200))
    assert.equal("[#####.....] " .. text, line(#text + 3 + 10 + 1))
    assert.equal(text, line(#text + 3 + 4 + 1))
    assert.equal(text:sub(1, 29), line(30))
    assert.equal(progress.columns(function() return "132" end), 132)
  end)

  it("writes plain lines when stderr is not a terminal", function()
    local fh = sink()
    local bar = progress.new { fh = fh, tty = false, total = 2 }
    bar:file({ bytes = 10, file = "2026-11-30/x.wav" })
    bar:finish()
    assert.equal("archived 1/2 2026-11-30/x.wav (10 bytes)\n", fh:text())
  end)
end)

describe("cli commands in process", function()
  local provider, out, err, mt, saved

  local function run(args, tty, home)
    out, err = sink(), sink()
    local code = cli.main(args, {
      stdout = out, stderr = err, isatty = function() return tty == true end,
      getenv = function(k)
        return ({ CLICKTOCALL_BASE_URL = "http://mock", CLICKTOCALL_APP_SECRET = SECRET,
                  CLICKTOCALL_USER_DATA = UD, HOME = home or "/nonexistent" })[k]
      end,
      client_options = { transport = provider.transport, sleep = provider.sleep },
    })
    assert.is_nil(out:text():find(SECRET, 1, true))
    assert.is_nil(err:text():find(SECRET, 1, true))
    return code
  end

  before_each(function()
    provider = mock.new { user_data = UD, secret = SECRET }
    provider:seed_records(5, { start_time = "2026-11-30 00:00:00", end_time = "2026-11-30 12:00:00" })
    mt = getmetatable(assert(clicktocall.new { base_url = "http://mock", app_secret = "x" })).__index
    saved = { archive_recordings = rawget(mt, "archive_recordings"), sync = rawget(mt, "sync") }
  end)

  after_each(function()
    mt.archive_recordings, mt.sync = saved.archive_recordings, saved.sync
  end)

  it("maps error kinds to the exit codes of API.md", function()
    local codes = { argument = 2, api = 1, network = 4, timeout = 4, http = 4, busy = 6, protocol = 1,
                    callback = 1, duplicate = 8 }
    for kind, code in pairs(codes) do
      assert.equal(code, cli.exit_code({ kind = kind }), kind)
    end
    assert.equal(1, cli.exit_code("a string"))
    assert.equal(130, cli.exit_code("[string \"x\"]:1: interrupted!"))
    assert.equal("clicktocall records: interrupted", cli.describe("records", "x:1: interrupted!"))
  end)

  it("never shows the secret, in any of the library's forms (base64, URL-safe, unpadded), in an error", function()
    local b64 = require("clicktocall.core").base64(SECRET)
    local s = cli.redact("echo " .. SECRET .. " and " .. b64, SECRET)
    assert.equal("echo *** and ***", s)
    local weird = "a?b>c~d" -- its base64 holds '/' and '+' and padding
    local w64 = require("clicktocall.core").base64(weird)
    local url = w64:gsub("=+$", ""):gsub("[+/]", { ["+"] = "-", ["/"] = "_" })
    assert.matches("[+/]", w64)
    assert.equal("x *** y", cli.redact("x " .. url .. " y", weird))
    assert.equal("x *** y", cli.redact("x " .. w64:gsub("=+$", "") .. " y", weird))
    provider:fail("balance", { status = 200, body = '{"meta":{"success":false,"message":"bad ' .. SECRET ..
      '"},"data":""}' })
    assert.equal(1, run({ "balance" }))
    assert.matches("the provider refused: bad %*%*%*%.\n$", err:text())
  end)

  it("tells a dialler that a failed dial may have been placed, and what guards a repeat", function()
    local s = cli.describe("dial", { kind = "network", message = "connection reset", sent = true }, { hold = 300 })
    assert.matches("MAY have been placed", s)
    assert.matches("only once the call has ended, so a list without it proves nothing; the dial guard refuses " ..
      "the same dial for the next 300 s %(%-%-force dials anyway%)$", s)
    assert.is_nil(s:find("--from", 1, true))
    s = cli.describe("dial", { kind = "timeout", message = "timed out", sent = true }, { why = "--force" })
    assert.matches("no dial guard was used %(%-%-force%), so nothing stops a repeat", s)
    for _, e in ipairs { { kind = "network", message = "refused", sent = false },
                         { kind = "api", message = "no balance", sent = true },
                         { kind = "http", message = "unauthorized", sent = true, status = 401 },
                         { kind = "http", message = "bad gateway", sent = true, status = 502,
                           may_have_rung = false } } do
      assert.is_nil(cli.describe("dial", e, { hold = 300 }):find("MAY"), e.message)
    end
    assert.matches("MAY", cli.describe("dial", { kind = "http", message = "bad gateway", sent = true, status = 502 }))
    assert.equal(8, cli.exit_code({ kind = "duplicate" }))
    assert.equal("clicktocall dial: refused by the dial guard: a dial from +861 to +862 on seat S was placed " ..
      "1.0 s ago; if you know that it did not ring, run the same command with --force to dial anyway",
      cli.describe("dial", { kind = "duplicate", message = "a dial from +861 to +862 on seat S was placed 1.0 s " ..
        "ago; pass force = true to dial anyway" }))
  end)

  it("a dial whose local guard cannot be set up sends nothing and says what to change (exit 2)", function()
    -- HOME is a file: no directory can be made under it, even by root
    local home = os.tmpname()
    finally(function() os.remove(home) end)
    assert.equal(2, run({ "dial", "13500000002", "13500000003", "--seat", "PP1" }, false, home))
    assert.matches("^clicktocall dial: the dial guard %(local%) could not be set up, so nothing was sent: the file " ..
      "dial guard could not make its directory: .*; fix it, write dial_guard = off in the config " ..
      "file, or pass %-%-force; see `clicktocall dial %-%-help`%.\n$", err:text())
    assert.equal(0, provider.dials)
    assert.equal(0, #provider.requests)
  end)

  it("finds the local dial guard's directory: XDG_RUNTIME_DIR, XDG_CACHE_HOME, then ~/.cache", function()
    local function env(t) return function(k) return t[k] end end
    assert.equal("/run/user/1/clicktocall/dials",
      cli.local_guard_dir(env { XDG_RUNTIME_DIR = "/run/user/1", XDG_CACHE_HOME = "/c", HOME = "/h" }))
    assert.equal("/c/clicktocall/dials", cli.local_guard_dir(env { XDG_CACHE_HOME = "/c", HOME = "/h" }))
    assert.equal("/h/.cache/clicktocall/dials", cli.local_guard_dir(env { XDG_RUNTIME_DIR = "rel", HOME = "/h" }))
    assert.is_nil(cli.local_guard_dir(env {}))
  end)

  -- a stand-in for the job (the real one is specced with the library): it
  -- downloads nothing, calls on_file for three recordings, fails one that expires soon
  local function fake_archive(seen)
    return function(_, args)
      seen.args = args
      args.on_plan(5) -- the job's own count of what it will download
      for i = 1, 3 do
        args.on_file({ id = i, sessionId = "s" .. i, file = "2026-11-30/s" .. i .. ".wav", bytes = 1000,
                       path = args.dir .. "/2026-11-30/s" .. i .. ".wav" })
      end
      local failed = { id = 4, sessionId = "s4", expires_at = os.time() + 3600,
                       err = { kind = "http", message = "the recording server answered HTTP 404" } }
      return { downloaded = 3, skipped = 0, no_recording = 1, bytes = 3000, failed = { failed },
               expiring = { failed } }
    end
  end

  it("archive: passes the window and options, prints plain progress and a summary naming failed and expiring, exit 5",
    function()
    local seen = {}
    mt.archive_recordings = fake_archive(seen)
    local code = run({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", "/var/calls",
                       "--concurrency", "8", "--layout", "flat" })
    assert.equal(5, code)
    assert.equal("2026-11-30 00:00:00", clicktocall.format_time(seen.args.start_time))
    assert.equal("2026-11-30 23:59:59", clicktocall.format_time(seen.args.end_time))
    assert.equal("/var/calls", seen.args.dir)
    assert.equal(8, seen.args.concurrency)
    assert.equal("flat", seen.args.layout)
    local e = err:text()
    -- the total comes from the job (on_plan): the window is paged once
    assert.matches("archived 1/5 2026%-11%-30/s1%.wav %(1000 bytes%)\n", e)
    assert.matches("archived 3/5 ", e)
    assert.matches("1 recording failed; run the same command again to retry them%.\n$", e)
    local o = out:text()
    assert.matches("^archived 3, skipped 0 %(already there%), 1 without a recording, 1 failed; 2%.9 KiB", o)
    assert.matches("failed: id 4, session s4, expires .- %(UTC%+8%): the recording server answered HTTP 404\n", o)
    assert.matches("EXPIRING within 24 h: id 4, session s4", o)
  end)

  it("archive's summary line with an upload counts downloads and uploads apart, failures by stage", function()
    local function f(stage)
      return { id = 1, sessionId = "s", stage = stage, err = { kind = "http", message = "x" } }
    end
    local base = { downloaded = 3, skipped = 4, no_recording = 1, bytes = 3072, uploaded = 1 }
    base.failed = { f("upload"), f("upload"), f("download") }
    base.failed_upload = 2
    assert.equal("downloaded 3, uploaded 1 to s3://b/p/, skipped 4 (already there), 1 without a recording, 3 failed " ..
      "(1 download, 2 upload); 3.0 KiB written to /d", cli.archive_line(base, "/d", "s3://b/p/"))
    base.failed, base.failed_upload = { f("upload"), f("upload") }, 2
    assert.matches(", 2 failed %(upload%); ", cli.archive_line(base, "/d", "s3://b/p/"))
    base.failed, base.failed_upload = { f("download") }, 0
    assert.matches(", 1 failed %(download%); ", cli.archive_line(base, "/d", "s3://b/p/"))
    base.failed = {}
    assert.matches(", 0 failed; ", cli.archive_line(base, "/d", "s3://b/p/"))
    -- without an upload the line is as it was: each one archived is on disk
    assert.equal("archived 3, skipped 4 (already there), 1 without a recording, 0 failed; 3.0 KiB written to /d",
      cli.archive_line(base, "/d"))
  end)

  it("archive --mode: an octal mode passed on as a number; anything else a usage error (2), nothing run", function()
    local seen = {}
    mt.archive_recordings = fake_archive(seen)
    run({ "archive", "--from", "2026-11-30", "--dir", "/d", "--mode", "0600" })
    assert.equal(384, seen.args.mode)
    seen.args = nil
    run({ "archive", "--from", "2026-11-30", "--dir", "/d" })
    assert.is_nil(seen.args.mode) -- the library's default (0640)
    for _, bad in ipairs { "0800", "1777", "rw-r-----", "-1", "" } do
      seen.args = nil
      assert.equal(2, run({ "archive", "--from", "2026-11-30", "--dir", "/d", "--mode", bad }))
      assert.is_nil(seen.args)
    end
  end)

  it("archive --verify: no client or window needed; exit 0 all ok, 5 missing/changed/torn, a row each with -o",
    function()
    local d = os.tmpname()
    os.remove(d)
    os.execute("mkdir '" .. d .. "'")
    local f = assert(io.open(d .. "/a.wav", "wb"))
    f:write("hello")
    f:close()
    local sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    local m = assert(io.open(d .. "/manifest.jsonl", "wb"))
    m:write('{"id":1,"sessionId":"s1","file":"a.wav","bytes":5,"sha256":"' .. sha .. '","archived_at":1}\n')
    m:write('{"id":2,"sessionId":"s2","file":"b.wav","bytes":5,"sha256":"' .. sha .. '","archived_at":1,'
      .. '"uploaded":{"key":"k","etag":"e","at":2}}\n')
    m:close()
    mt.archive_recordings = function() error("not a verify") end
    assert.equal(0, run({ "archive", "--verify", "--dir", d }))
    assert.matches("1 ok, 1 uploaded %(no local copy%), 0 missing, 0 changed, 0 torn lines", err:text())
    m = assert(io.open(d .. "/manifest.jsonl", "ab"))
    m:write('{"id":3,"sessionId":"s3","file":"c.wav","bytes":5,"sha256":"' .. sha .. '","archived_at":1}\n{"id":4,')
    m:close()
    assert.equal(5, run({ "archive", "--verify", "--dir", d, "-o", "jsonl" }))
    local rows = {}
    for line in out:text():gmatch("[^\n]+") do rows[#rows + 1] = require("clicktocall.json").decode(line).status end
    assert.same({ "torn", "ok", "uploaded", "missing" }, rows)
    assert.equal(2, run({ "archive", "--dir", d })) -- no --from, no --verify: a usage error
    os.execute("rm -rf '" .. d .. "'")
  end)

  it("archive: draws a bar on a terminal and exits 0 when nothing failed", function()
    mt.archive_recordings = function(_, args)
      args.on_plan(5)
      args.on_file({ id = 1, sessionId = "s1", file = "s1.wav", bytes = 2048 })
      return { downloaded = 1, skipped = 0, no_recording = 0, bytes = 2048, failed = {}, expiring = {} }
    end
    assert.equal(0, run({ "archive", "--from", "2026-11-30", "--dir", "/d" }, true))
    local e = err:text()
    assert.matches("\r%[#+%.*%] 1/5 recordings  2%.0 KiB  .-/s  .- left  0 failed\27%[K", e)
    assert.matches("\n$", e)
    assert.is_nil(out:text():find("\r", 1, true))
  end)

  it("archive: exit 6 when another run holds the directory, 2 on a bad argument", function()
    mt.archive_recordings = function()
      return nil, { kind = "busy", message = "another archive holds /d", retryable = true, sent = false }
    end
    assert.equal(6, run({ "archive", "--from", "2026-11-30", "--dir", "/d" }))
    assert.matches("another archive holds /d; another run holds it, so nothing was done%.\n$", err:text())
    assert.equal(2, run({ "archive", "--from", "2026-11-30", "--dir", "/d", "--concurrency", "0" }))
    assert.equal(2, run({ "archive", "--from", "tomorrow", "--dir", "/d" }))
    assert.equal(2, run({ "archive", "--from", "now", "--to", "1d", "--dir", "/d" }))
    assert.matches("is after %-%-to", err:text())
  end)

  it("sync: each record on stdout as it is delivered, the summary on stderr", function()
    local seen = {}
    mt.sync = function(_, args)
      seen.args = args
      local n = 0
      for rec in provider.transport and clicktocall.new { base_url = "http://mock", app_secret = SECRET,
          user_data = UD, transport = provider.transport }:records { start_time = "2026-11-29 00:00:00",
          end_time = "2026-12-01 00:00:00" } do
        assert(args.on_record(rec))
        n = n + 1
      end
      return { delivered = n, skipped = 2, pages = 1, max_id = n, state = args.state,
               through = 1796054400 }
    end
    assert.equal(0, run({ "sync", "--state", "/tmp/state.json", "--since", "2026-11-29" }))
    assert.equal("/tmp/state.json", seen.args.state)
    assert.is_nil(seen.args.lookback)
    assert.equal("2026-11-29 00:00:00", clicktocall.format_time(seen.args.since))
    local n = 0
    for line in out:text():gmatch("[^\n]+") do
      n = n + 1
      assert.equal(n, require("cjson").decode(line).id)
    end
    assert.equal(5, n)
    -- (state version 2) the summary names skipped and through, on the provider's clock
    assert.equal("clicktocall sync: 5 new records, 2 skipped, in 1 page; through 2026-12-01 00:00:00 (UTC+8) in "
      .. "/tmp/state.json\n", err:text())
    assert.equal(0, run({ "sync", "--state", "/tmp/state.json", "--format", "csv" }))
    assert.equal(6, #helper.parse_csv(out:text()))
  end)

  it("sync --lookback S: passed on as seconds; anything else is a usage error, exit 2, nothing run", function()
    local seen
    mt.sync = function(_, args)
      seen = args
      return { delivered = 0, skipped = 0, pages = 1, through = 1796054400, state = args.state }
    end
    assert.equal(0, run({ "sync", "--state", "/tmp/state.json", "--lookback", "600" }))
    assert.equal(600, seen.lookback)
    assert.matches("0 new records, 0 skipped, in 1 page; through", err:text())
    for _, bad in ipairs { "1h", "2592001", "1.5", "", "+5" } do
      seen = nil
      assert.equal(2, run({ "sync", "--state", "/tmp/state.json", "--lookback", bad }), bad)
      assert.is_nil(seen)
      assert.matches("%-%-lookback", err:text())
    end
  end)

  it("sync: exit 6 when busy, 1 when a record could not be stored", function()
    mt.sync = function() return nil, { kind = "busy", message = "another sync holds /s" } end
    assert.equal(6, run({ "sync", "--state", "/s" }))
    mt.sync = function() return nil, { kind = "callback", message = "on_record failed", cause = "disk full" } end
    assert.equal(1, run({ "sync", "--state", "/s" }))
    assert.matches("on_record failed %(disk full%)%.\n$", err:text())
  end)

  -- the CLI with this environment over the mock provider: code, stdout, stderr
  local function run_with(args, envt)
    local o, e = sink(), sink()
    local base = { CLICKTOCALL_BASE_URL = "http://mock", CLICKTOCALL_APP_SECRET = SECRET,
                   CLICKTOCALL_USER_DATA = UD, HOME = "/nonexistent", XDG_RUNTIME_DIR = guard_dir() }
    for k, v in pairs(envt or {}) do base[k] = v end
    local code = cli.main(args, {
      stdout = o, stderr = e, isatty = function() return false end,
      getenv = function(k) return base[k] end,
      client_options = { transport = provider.transport, sleep = provider.sleep },
    })
    return code, o:text(), e:text()
  end

  it("busy: the library's sentence once, never its clause twice (a real lock held), exit 6", function()
    local dir = helper.tmpdir()
    local lock = assert(require("clicktocall.core").lock_file(dir .. "/.clicktocall.lock"))
    finally(function() lock:unlock() end)
    local code, _, e = run_with({ "archive", "--from", "2026-11-30", "--to", "2026-11-30", "--dir", dir })
    assert.equal(6, code, e)
    assert.matches("^clicktocall archive: another archive holds .-; nothing was done%.\n$", e)
    local _, times_said = e:gsub("nothing was done", "")
    assert.equal(1, times_said, e)
    -- a lease another host took mid-run: something was done, and the sentence does not say otherwise
    local lost = cli.describe("sync", { kind = "busy", sent = true,
      message = "the sync lease k expired and another host took it; this run stopped" })
    assert.is_nil(lost:find("nothing was done", 1, true), lost)
  end)

  it("an authentication failure has exit 7 and says what to check", function()
    for _, args in ipairs { { "balance" }, { "dial", "13500000002", "13500000003", "--seat", "PP1" },
                            { "records", "--from", "2026-11-30", "--to", "2026-11-30" } } do
      local code, _, e = run_with(args, { CLICKTOCALL_APP_SECRET = "not-the-secret" })
      assert.equal(7, code, e)
      assert.matches("^clicktocall " .. args[1] .. ": the provider refused the credentials", e)
      assert.matches("wrong Authorization", e, 1, true)
      assert.matches("CLICKTOCALL_APP_SECRET", e, 1, true)
      assert.matches("base URL", e, 1, true)
      assert.matches("`clicktocall doctor`", e, 1, true)
      assert.is_nil(e:find("not-the-secret", 1, true))
      assert.is_nil(e:find("MAY have been placed", 1, true)) -- the provider refused it: nothing rang
    end
    assert.equal(7, cli.exit_code({ kind = "http", status = 401, auth = true }))
    assert.equal(7, cli.exit_code({ kind = "api", auth = true }))
    assert.equal(1, cli.exit_code({ kind = "api" }))
    assert.equal(0, provider.dials) -- the mock refused before placing anything
  end)

  it("an argument error is a sentence naming the field, never Lua's 'bad argument #1 to'", function()
    local code, _, e = run_with({ "dial", "12", "13500000003", "--seat", "PP1" })
    assert.equal(2, code, e)
    assert.equal("clicktocall dial: CALLER '12': phone number has 2 digits; a Chinese mobile number has 11.\n", e)
    code, _, e = run_with({ "bind", "PP1", "12345678901234567890123" })
    assert.equal(2, code, e)
    assert.equal("clicktocall bind: PHONE '12345678901234567890123': phone number has more than 20 digits.\n", e)
    local s = cli.describe("records", { kind = "argument", field = "start_time",
                                        message = "records_page: start_time is after end_time" })
    assert.equal("clicktocall records: start_time is after end_time", s)
    -- a message that does not start with a call's name is left whole
    assert.equal("clicktocall archive: dir: /x is not writable",
                 cli.describe("archive", { kind = "argument", field = "dir", message = "dir: /x is not writable" }))
  end)
end)

describe("cli times, ISO 8601 and Unix seconds (issue 19)", function()
  local NOW = 1764547200

  it("reads ISO 8601 with a zone: Z, +08:00, +0800, -05:00, a fraction ignored", function()
    local want = times.parse("2026-12-05 10:00:00", NOW) -- on the provider's clock, UTC+8
    for _, s in ipairs({ "2026-12-05T02:00:00Z", "2026-12-05T02:00:00z", "2026-12-05T10:00:00+08:00",
                         "2026-12-05T10:00:00+0800", "2026-12-05T10:00:00+08", "2026-12-04T21:00:00-05:00",
                         "2026-12-05T02:00:00.750Z", "2026-12-05 02:00:00Z" }) do
      assert.equal(want, times.parse(s, NOW), s)
    end
    assert.equal(want, times.parse("2026-12-05T02:00:00Z", NOW, true)) -- end_of_day is for bare dates only
  end)

  it("reads Unix seconds, and takes a small number for a forgotten unit", function()
    assert.equal(1796436000, times.parse("1796436000", NOW))
    assert.equal(946684800, times.parse("946684800", NOW))
    local t, err = times.parse("7", NOW)
    assert.is_nil(t)
    assert.equal("'7' read as Unix seconds is before the year 2000; for an age add a unit (7d, 7h, 7m)", err)
    assert.is_nil(times.parse("99999999999999", NOW))
  end)

  it("refuses a zone or a fraction that is not one, naming the forms", function()
    for _, bad in ipairs({ "2026-12-05T02:00:00+25:00", "2026-12-05T02:00:00+08:0", "2026-12-05T02:00:00Q",
                           "2026-12-05T02:00:0012", "2026-12-05T02:00:00.Z", "2026-02-30T02:00:00Z",
                           "2026-12-05T02:00:00+08:60" }) do
      local t, err = times.parse(bad, NOW)
      assert.is_nil(t, bad)
      assert.is_string(err)
    end
    assert.matches("2026%-12%-05T02:00:00Z", select(2, times.parse("2026-12-05T02:00:00+25:00", NOW)))
    assert.matches("Unix seconds", select(2, times.parse("yesterday", NOW)))
  end)
end)

describe("cli config: profiles, the system file, the environment (issue 19)", function()
  after_each(helper.cleanup)

  local function env(t)
    return function(k) return t[k] end
  end

  local function file(text, mode)
    local path = helper.tmpdir() .. "/config"
    helper.write(path, text, mode or "600")
    return path
  end

  it("reads [name] sections: top lines are the default profile, a profile does not inherit them", function()
    local path = file("base_url = http://default\nuser_data = ud0\n\n[acme]\nbase_url = http://acme\n" ..
      "# a comment\n[default]\ntimeout = 3\n")
    local s, src, origins = assert(config.resolve({ config = path }, env { CLICKTOCALL_SYSTEM_CONFIG = "" }))
    assert.same({ "http://default", "ud0", 3 }, { s.base_url, s.user_data, s.timeout })
    assert.equal(path .. ":1", src.base_url)
    assert.same({ how = "file", path = path, line = 1 }, origins.base_url)
    s, src = assert(config.resolve({ config = path, profile = "acme" }, env { CLICKTOCALL_SYSTEM_CONFIG = "" }))
    assert.equal("http://acme", s.base_url)
    assert.equal(path .. ":5", src.base_url)
    assert.is_nil(s.user_data) -- not the default profile's
    assert.equal("acme", s.profile)
    -- CLICKTOCALL_PROFILE as --profile, the flag first
    s = assert(config.resolve({ config = path }, env { CLICKTOCALL_PROFILE = "acme", CLICKTOCALL_SYSTEM_CONFIG = "" }))
    assert.equal("http://acme", s.base_url)
    s = assert(config.resolve({ config = path, profile = "default" },
      env { CLICKTOCALL_PROFILE = "acme", CLICKTOCALL_SYSTEM_CONFIG = "" }))
    assert.equal("http://default", s.base_url)
  end)

  it("names a profile that is not there, and the ones that are", function()
    local path = file("base_url = http://d\n[acme]\nuser_data = a\n[beta]\nuser_data = b\n")
    local s, err = config.resolve({ config = path, profile = "acne" }, env { CLICKTOCALL_SYSTEM_CONFIG = "" })
    assert.is_nil(s)
    assert.equal("There is no profile [acne] (--profile acne) in " .. path .. "; the profiles there: acme, beta, " ..
      "default.", err)
    s, err = config.resolve({ config = path }, env { CLICKTOCALL_PROFILE = "x", CLICKTOCALL_SYSTEM_CONFIG = "" })
    assert.is_nil(s)
    assert.matches("(CLICKTOCALL_PROFILE x)", err, 1, true)
    s, err = config.resolve({ profile = "acme" }, env { HOME = "/nonexistent", CLICKTOCALL_SYSTEM_CONFIG = "" })
    assert.is_nil(s)
    assert.equal("There is no profile [acme] (--profile acme): there is no config file (/nonexistent/.config/" ..
      "clicktocall/config is not there); `clicktocall --profile acme config init` writes one.", err)
    assert.matches("Line 2 .* not a `%[profile%]` line", select(2, config.parse("timeout = 1\n[bad name]\n", "f")))
  end)

  it("reads the system file before the user's: flag > environment > user's profile > system's", function()
    local sys = file("base_url = http://system\nuser_data = sys-ud\ntimeout = 9\nca_file = /sys/ca.pem\n" ..
      "proxy = http://sys-proxy:3128\n", "644") -- world-readable: it holds no secret
    local user = file("user_data = user-ud\ntimeout = 8\napp_secret = S\n")
    local e = { CLICKTOCALL_SYSTEM_CONFIG = sys, CLICKTOCALL_CONFIG = user, CLICKTOCALL_TIMEOUT = "7" }
    local s, src = assert(config.resolve({ ca_file = "/flag/ca.pem" }, env(e)))
    assert.same({ "http://system", "user-ud", 7, "/flag/ca.pem", "http://sys-proxy:3128", "S" },
      { s.base_url, s.user_data, s.timeout, s.ca_file, s.proxy, s.app_secret })
    assert.same({ sys .. ":1", user .. ":1", "CLICKTOCALL_TIMEOUT", "the --ca-file flag", sys .. ":5" },
      { src.base_url, src.user_data, src.timeout, src.ca_file, src.proxy })
    assert.is_true(s.system_used)
    -- the environment's ca_file and proxy
    e.CLICKTOCALL_CA_FILE, e.CLICKTOCALL_PROXY = "/env/ca.pem", "http://env-proxy:8080"
    s, src = assert(config.resolve({}, env(e)))
    assert.same({ "/env/ca.pem", "http://env-proxy:8080", "CLICKTOCALL_PROXY" }, { s.ca_file, s.proxy, src.proxy })
    -- a profile in the system file
    local sys2 = file("[acme]\nbase_url = http://acme-system\n", "644")
    s = assert(config.resolve({ profile = "acme" }, env { CLICKTOCALL_SYSTEM_CONFIG = sys2, HOME = "/nonexistent" }))
    assert.equal("http://acme-system", s.base_url)
  end)

  it("refuses a system file holding the secret that group or others can read, or one they can change", function()
    for _, mode in ipairs({ "644", "640", "604" }) do
      local sys = file("base_url = http://s\n[acme]\napp_secret = x\n", mode)
      local s, err = config.resolve({}, env { CLICKTOCALL_SYSTEM_CONFIG = sys, HOME = "/nonexistent" })
      assert.is_nil(s, mode)
      assert.matches("The system config file " .. sys .. " holds app_secret and can be read by group or others",
        err, 1, true)
    end
    assert.truthy(config.resolve({}, env { CLICKTOCALL_SYSTEM_CONFIG = file("app_secret = x\n", "600"),
      HOME = "/nonexistent" }))
    local sys = file("base_url = http://s\n", "664")
    local s, err = config.resolve({}, env { CLICKTOCALL_SYSTEM_CONFIG = sys, HOME = "/nonexistent" })
    assert.is_nil(s)
    assert.matches("can be changed by group or others (mode rw-rw-r--), so it is not used: run `chmod go-w",
      err, 1, true)
  end)

  local root = io.popen("id -u"):read("*l") == "0"
  local it_not_root = root and function(name) pending(name .. " (root reads every file)") end or it
  it_not_root("passes over a system file it cannot read, and says so to doctor", function()
    local dir = helper.tmpdir()
    local sys = dir .. "/locked/config"
    os.execute("mkdir -p " .. helper.quote(dir .. "/locked"))
    helper.write(sys, "app_secret = x\n", "600")
    os.execute("chmod 000 " .. helper.quote(dir .. "/locked"))
    finally(function() os.execute("chmod 700 " .. helper.quote(dir .. "/locked")) end)
    local s = assert(config.resolve({}, env { CLICKTOCALL_SYSTEM_CONFIG = sys, HOME = "/nonexistent" }))
    assert.is_nil(s.app_secret)
    assert.matches("cannot be read .*passed over", s.system_note)
  end)

  it("checks CLICKTOCALL_TIMEOUT and names CLICKTOCALL_CONFIG when it names no file", function()
    local s, err = config.resolve({}, env { CLICKTOCALL_TIMEOUT = "soon", CLICKTOCALL_SYSTEM_CONFIG = "" })
    assert.is_nil(s)
    assert.equal("CLICKTOCALL_TIMEOUT must be a positive number of seconds, not 'soon'.", err)
    s, err = config.resolve({}, env { CLICKTOCALL_CONFIG = "/nonexistent/c", CLICKTOCALL_SYSTEM_CONFIG = "" })
    assert.is_nil(s)
    assert.equal("The config file /nonexistent/c does not exist or cannot be read (given by CLICKTOCALL_CONFIG).", err)
  end)

  it("names a setting the way it was given", function()
    local path = file("\nbase_url = x\n")
    local _, _, origins = assert(config.resolve({ proxy = "http://p" }, env { CLICKTOCALL_CONFIG = path,
      CLICKTOCALL_USER_DATA = "u", CLICKTOCALL_SYSTEM_CONFIG = "" }))
    assert.equal("--proxy", config.setting_name(origins, "proxy"))
    assert.equal("CLICKTOCALL_USER_DATA", config.setting_name(origins, "user_data"))
    assert.equal("base_url in " .. path .. ":2", config.setting_name(origins, "base_url"))
    assert.equal("timeout", config.setting_name(origins, "timeout"))
  end)

  it("writes a profile mode 600, keeps the others, replaces one only with force", function()
    local dir = helper.tmpdir()
    local path = dir .. "/sub/config"
    assert(config.write_profile(path, "default", { base_url = "http://a", app_secret = " padded ", user_data = "u" }))
    assert.equal("rw-------", config.permissions(path))
    assert.same({ base_url = "http://a", app_secret = " padded ", user_data = "u" }, (config.read(path)))
    local ok, err = config.write_profile(path, "default", { base_url = "http://b" })
    assert.is_nil(ok)
    assert.equal("The config file " .. path .. " already has settings for the default profile, so nothing was " ..
      "written: add --force to replace its top-level lines, or pick another --profile.", err)
    assert(config.write_profile(path, "acme", { base_url = "http://acme", user_data = "ua", app_secret = "sa" }))
    assert.is_nil(config.write_profile(path, "acme", { base_url = "http://other" }))
    assert(config.write_profile(path, "default", { base_url = "http://b", user_data = "u2", app_secret = "s2" }, true))
    assert(config.write_profile(path, "acme", { base_url = "http://acme2", user_data = "ua", app_secret = "sa" },
      true))
    assert.same({ base_url = "http://b", user_data = "u2", app_secret = "s2" }, (config.read(path)))
    assert.same({ base_url = "http://acme2", user_data = "ua", app_secret = "sa" }, (config.read(path, "acme")))
    assert.equal(1, select(2, helper.read(path):gsub("%[acme%]", "")))
    assert.equal("rw-------", config.permissions(path))
    -- a file others can read is not written into
    helper.write(path, "", "644")
    assert.matches("chmod 600", select(2, config.write_profile(path, "default", { base_url = "http://c" })))
  end)
end)

describe("cli output, any rows (issue 19)", function()
  it("writes records as a JSON array, [] when there are none", function()
    local fh = sink()
    local w = output.new("json", fh)
    w:row({ id = 1, sessionId = "a" })
    w:row({ id = 2, sessionId = "b" })
    w:finish()
    assert.same({ { id = 1, sessionId = "a" }, { id = 2, sessionId = "b" } }, require("cjson").decode(fh:text()))
    fh = sink()
    output.new("json", fh):finish()
    assert.equal("[]\n", fh:text())
  end)

  it("writes any rows by their columns, and one result as one object", function()
    local cols = { { "CHECK", "check" }, { "DETAIL", "detail" } }
    for fmt, want in pairs({
      csv = "check,detail\r\nDNS,\"a, b\"\r\nTCP,\r\n",
      jsonl = '{"check":"DNS","detail":"a, b"}\n{"check":"TCP"}\n',
      json = '[\n{"check":"DNS","detail":"a, b"},\n{"check":"TCP"}\n]\n',
      table = "CHECK  DETAIL\nDNS    a, b\nTCP    \n" }) do
      local fh = sink()
      local w = output.rows(fmt, fh, cols)
      w:row({ check = "DNS", detail = "a, b" })
      w:row({ check = "TCP" })
      w:finish()
      assert.equal(want, fh:text(), fmt)
    end
    local fh = sink()
    output.object("json", fh, { balance = 6152 }, { { "BALANCE", "balance" } })
    assert.equal('{"balance":6152}\n', fh:text())
  end)
end)

describe("cli in process: output, quiet, completion, help, messages (issue 19)", function()
  local provider, out, err

  local function run(args, extra, tty)
    out, err = sink(), sink()
    local e = { CLICKTOCALL_BASE_URL = "http://mock", CLICKTOCALL_APP_SECRET = SECRET, CLICKTOCALL_USER_DATA = UD,
                HOME = "/nonexistent", CLICKTOCALL_SYSTEM_CONFIG = "", XDG_RUNTIME_DIR = guard_dir() }
    for k, v in pairs(extra or {}) do
      e[k] = v ~= false and v or nil
    end
    local code = cli.main(args, {
      stdout = out, stderr = err, isatty = function() return tty == true end,
      getenv = function(k) return e[k] end,
      client_options = { transport = provider.transport, sleep = provider.sleep },
    })
    assert.is_nil(out:text():find(SECRET, 1, true))
    assert.is_nil(err:text():find(SECRET, 1, true))
    return code
  end

  before_each(function()
    provider = mock.new { user_data = UD, secret = SECRET }
    provider:seed_records(3, { start_time = "2026-11-30 00:00:00", end_time = "2026-11-30 12:00:00" })
  end)

  it("-o on balance: the number for people, an object for json and jsonl, a header and a row for csv", function()
    assert.equal(0, run({ "balance" }))
    assert.equal("6152\n", out:text())
    assert.equal(0, run({ "balance", "-o", "json" }))
    assert.equal('{"balance":6152}\n', out:text())
    assert.equal(0, run({ "-o", "jsonl", "balance" }))
    assert.equal('{"balance":6152}\n', out:text())
    assert.equal(0, run({ "balance", "--output", "csv" }))
    assert.equal("balance\r\n6152\r\n", out:text())
    assert.equal(3, run({ "balance", "--min", "9999", "-o", "json" }))
    assert.equal('{"balance":6152}\n', out:text())
    assert.equal(2, run({ "balance", "-o", "xml" }))
    assert.matches("'%-o' must be one of 'table', 'csv', 'json', 'jsonl'", err:text())
  end)

  it("-o on bind and dial: the result as a record", function()
    assert.equal(0, run({ "bind", "PP1", "139 1833 7711", "-o", "json" }))
    assert.same({ seat = "PP1", phone = "+8613918337711" }, require("cjson").decode(out:text()))
    assert.equal(0, run({ "dial", "13918337711", "0755-28000123", "--seat", "PP1", "-o", "csv" }))
    local rows = helper.parse_csv(out:text())
    assert.same({ "session_id", "caller", "callee", "seat" }, rows[1])
    assert.same({ "+8613918337711", "+8675528000123", "PP1" }, { rows[2][2], rows[2][3], rows[2][4] })
    assert.matches("^[%x-]+_%d+$", rows[2][1])
  end)

  it("records: -o json is an array; --format stays as its old name; the two must agree", function()
    assert.equal(0, run({ "records", "--from", "2026-11-30", "--to", "2026-11-30", "-o", "json" }))
    assert.equal(3, #require("cjson").decode(out:text()))
    assert.equal(0, run({ "records", "--from", "2026-11-30", "--to", "2026-11-30", "--format", "json" }))
    assert.equal(3, #require("cjson").decode(out:text()))
    assert.equal(0, run({ "records", "--from", "2026-11-30", "--to", "2026-11-30", "--format", "csv", "-o", "csv" }))
    assert.equal(2, run({ "records", "--from", "2026-11-30", "--format", "csv", "-o", "json" }))
    assert.matches("%-o json and %-%-format csv disagree", err:text())
  end)

  it("--quiet leaves stderr to errors: no count after the table; -q with -v is a usage error", function()
    assert.equal(0, run({ "records", "--from", "2026-11-30", "--to", "2026-11-30", "-o", "table" }))
    assert.matches("^3 records from ", err:text())
    assert.equal(0, run({ "-q", "records", "--from", "2026-11-30", "--to", "2026-11-30", "-o", "table" }))
    assert.equal("", err:text())
    assert.equal(4, #helper.parse_csv(select(1, (function() run({ "records", "--from", "2026-11-30", "--quiet",
      "-o", "csv" }); return out:text() end)())))
    assert.equal(2, run({ "-q", "-v", "balance" }))
    assert.matches("%-q %(%-%-quiet%) and %-v %(%-%-verbose%) cannot be used together", err:text())
    provider:fail("balance", 503, 10)
    assert.equal(4, run({ "-q", "balance" }))
    assert.matches("HTTP 503", err:text()) -- errors still
  end)

  it("names the setting the way it was given when the library refuses it, never `bad argument`", function()
    assert.equal(2, run({ "balance" }, { CLICKTOCALL_BASE_URL = "ftp://x" }))
    assert.equal("clicktocall balance: CLICKTOCALL_BASE_URL must be an http:// or https:// URL without spaces, " ..
      "query or fragment.\n", err:text())
    assert.equal(2, run({ "--base-url", "ftp://x", "balance" }))
    assert.matches("^clicktocall balance: %-%-base%-url must be an http", err:text())
    assert.equal(2, run({ "--ca-file", "/nonexistent/ca.pem", "balance" }))
    assert.equal("clicktocall balance: --ca-file must name a readable CA bundle file.\n", err:text())
    assert.equal(2, run({ "dial", "12", "13500000002", "--seat", "PP1" }))
    assert.matches("^clicktocall dial: CALLER '12': phone number has 2 digits", err:text())
    assert.is_nil(err:text():find("bad argument", 1, true))
  end)

  it("reads the field from err.field, or from the message when there is none", function()
    local names = { base_url = "--base-url", caller = "CALLER '12'" }
    local function name_of(f) return names[f] or f end
    assert.equal("--base-url must be an http URL", cli.argument_message({ kind = "argument",
      message = "bad argument #1 to 'new' (field 'base_url' must be an http URL)" }, name_of))
    assert.equal("--base-url must be an http URL", cli.argument_message({ kind = "argument", field = "base_url",
      message = "base_url must be an http URL" }, name_of))
    assert.equal("CALLER '12': phone number has 2 digits", cli.argument_message({ kind = "argument",
      field = "caller", message = "field 'caller': phone number has 2 digits" }, name_of))
    assert.equal("'dial' called on a closed client", cli.argument_message({ kind = "argument",
      message = "'dial' called on a closed client" }, name_of))
  end)

  it("prints the completion script for bash, zsh and fish, naming every command", function()
    for _, shell in ipairs({ "bash", "zsh", "fish" }) do
      assert.equal(0, run({ "completion", shell }))
      for _, cmd in ipairs({ "bind", "dial", "balance", "records", "archive", "sync", "normalize", "doctor",
                             "completion", "config", "init" }) do
        assert.matches(cmd, out:text(), 1, true)
      end
      assert.matches("output", out:text(), 1, true)
    end
    assert.equal(2, run({ "completion", "tcsh" }))
  end)

  it("gives every command examples, and the Times paragraph only to those that take times", function()
    local p = cli.build_parser()
    for _, c in ipairs(p._commands) do
      if c._name ~= "help" then
        local help = c:get_help()
        local examples = help:match("\nExamples:\n(.-)\n\n")
        assert.matches("clicktocall[^\n]* " .. c._name, examples, 1, false)
        local takes = ({ records = true, archive = true, sync = true })[c._name] == true
        assert.equal(takes, help:find("\nTimes:", 1, true) ~= nil, c._name)
      end
    end
  end)
end)

describe("cli doctor's proxy, as libcurl picks it (issue 19)", function()
  local doctor = require "clicktocall.cli.doctor"
  local function env(t)
    return function(k) return t[k] end
  end
  local http = doctor.parse_url("http://api.example.com:8080")
  local https = doctor.parse_url("https://10.1.2.3")

  it("matches no_proxy as libcurl does", function()
    local m = doctor.no_proxy_matches
    assert.is_true(m("api.example.com", "*"))
    assert.is_true(m("api.example.com", "localhost, example.com"))
    assert.is_true(m("api.example.com", ".example.com"))
    assert.is_true(m("API.Example.com", "api.example.com."))
    assert.is_false(m("api.example.com", "ample.com"))
    assert.is_false(m("api.example.com", "other.com *.x"))
    assert.is_true(m("10.1.2.3", "10.0.0.0/8"))
    assert.is_false(m("10.1.2.3", "10.0.0.0/16"))
    assert.is_true(m("10.1.2.3", "10.1.2.3"))
    assert.is_false(m("10.1.2.3", "1.2.3"))
    assert.is_false(m("api.example.com", nil))
  end)

  it("takes no_proxy first, then the setting, then <scheme>_proxy and all_proxy, never HTTP_PROXY", function()
    local p, why = doctor.proxy_for(http, nil, nil, env {})
    assert.is_nil(p)
    assert.matches("no http_proxy or all_proxy in the environment", why)
    assert.is_nil(doctor.proxy_for(http, nil, nil, env { HTTP_PROXY = "http://upper:1" }))
    assert.same({ url = "http://lower:1", from = "http_proxy (the environment, which libcurl reads)" },
      doctor.proxy_for(http, nil, nil, env { http_proxy = "http://lower:1", https_proxy = "http://s:1" }))
    assert.equal("http://S:1", doctor.proxy_for(https, nil, nil, env { HTTPS_PROXY = "http://S:1" }).url)
    assert.equal("http://s:1", doctor.proxy_for(https, nil, nil, env { https_proxy = "http://s:1",
      HTTPS_PROXY = "http://S:1" }).url)
    assert.equal("socks5h://a:1", doctor.proxy_for(https, nil, nil, env { ALL_PROXY = "socks5h://a:1" }).url)
    assert.same({ url = "http://set:1", from = "proxy from the --proxy flag" },
      doctor.proxy_for(http, "http://set:1", "proxy from the --proxy flag", env { http_proxy = "http://lower:1" }))
    p, why = doctor.proxy_for(https, "http://set:1", "x", env { NO_PROXY = "10.0.0.0/8", https_proxy = "http://s:1" })
    assert.is_nil(p)
    assert.equal("NO_PROXY (the environment) names 10.1.2.3, so calls go straight to it", why)
    assert.is_nil(doctor.proxy_for(http, nil, nil, env { http_proxy = "" }))
  end)

  it("reads a proxy as libcurl does: http without a scheme, port 1080 without one", function()
    assert.same({ scheme = "http", host = "proxy", port = 1080 }, doctor.parse_proxy("proxy"))
    assert.same({ scheme = "https", host = "p", port = 443 }, doctor.parse_proxy("https://user:pw@p"))
    assert.same({ scheme = "http", host = "p", port = 3128 }, doctor.parse_proxy("http://p:3128/"))
    assert.is_nil(doctor.parse_proxy("ftp://p"))
  end)
end)
