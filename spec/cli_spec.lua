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
    assert.equal(path, src.app_secret)
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

  local function run(args, tty)
    out, err = sink(), sink()
    local code = cli.main(args, {
      stdout = out, stderr = err, isatty = function() return tty == true end,
      getenv = function(k)
        return ({ CLICKTOCALL_BASE_URL = "http://mock", CLICKTOCALL_APP_SECRET = SECRET,
                  CLICKTOCALL_USER_DATA = UD, HOME = "/nonexistent" })[k]
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
                    callback = 1, duplicate = 1 }
    for kind, code in pairs(codes) do
      assert.equal(code, cli.exit_code({ kind = kind }), kind)
    end
    assert.equal(1, cli.exit_code("a string"))
    assert.equal(130, cli.exit_code("[string \"x\"]:1: interrupted!"))
    assert.equal("clicktocall records: interrupted", cli.describe("records", "x:1: interrupted!"))
  end)

  it("never shows the secret, nor its base64, in an error", function()
    local b64 = require("clicktocall.core").base64(SECRET)
    local s = cli.redact("echo " .. SECRET .. " and " .. b64, SECRET)
    assert.equal("echo *** and ***", s)
    provider:fail("balance", { status = 200, body = '{"meta":{"success":false,"message":"bad ' .. SECRET ..
      '"},"data":""}' })
    assert.equal(1, run({ "balance" }))
    assert.matches("the provider refused: bad %*%*%*%.\n$", err:text())
  end)

  it("tells a dialler that a failed dial may have been placed", function()
    local s = cli.describe("dial", { kind = "network", message = "connection reset", sent = true })
    assert.matches("MAY have been placed", s)
    assert.is_nil(cli.describe("dial", { kind = "network", message = "refused", sent = false }):find("MAY"))
  end)

  it("says in one sentence, exit 1, that the library has no archive_recordings or sync", function()
    mt.archive_recordings, mt.sync = nil, nil
    if rawget(mt, "archive_recordings") == nil and saved.archive_recordings == nil then
      assert.equal(1, run({ "archive", "--from", "2026-11-30", "--dir", "/tmp" }))
      assert.matches("^clicktocall archive: this clicktocall library %(.-%) has no client:archive_recordings; .*%.\n$",
        err:text())
      assert.equal(1, run({ "sync", "--state", "/tmp/x" }))
      assert.matches("has no client:sync", err:text())
    end
  end)

  -- a stand-in for the job (the real one is specced with the library): it
  -- downloads nothing, calls on_file for three recordings, fails one that expires soon
  local function fake_archive(seen)
    return function(_, args)
      seen.args = args
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
    -- the total comes from a listing: 5 records, all recorded, none archived yet
    assert.matches("archived 1/5 2026%-11%-30/s1%.wav %(1000 bytes%)\n", e)
    assert.matches("archived 3/5 ", e)
    assert.matches("1 recording failed; run the same command again to retry them%.\n$", e)
    local o = out:text()
    assert.matches("^archived 3, skipped 0 %(already there%), 1 without a recording, 1 failed; 2%.9 KiB", o)
    assert.matches("failed: id 4, session s4, expires .- %(UTC%+8%): the recording server answered HTTP 404\n", o)
    assert.matches("EXPIRING within 24 h: id 4, session s4", o)
  end)

  it("archive: draws a bar on a terminal and exits 0 when nothing failed", function()
    mt.archive_recordings = function(_, args)
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
end)
