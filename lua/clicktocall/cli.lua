--- The `clicktocall` command: a thin shell over the library for operators,
-- cron jobs and support staff. bin/clicktocall calls main(); everything here
-- takes its streams and environment as arguments so the specs can drive it.
--
--   local cli = require "clicktocall.cli"
--   os.exit(cli.main(arg))            -- returns the exit code
--
-- Exit codes: 0 ok; 1 the provider refused (api) or something unexpected;
-- 2 usage or argument error; 3 balance below --min; 4 network, timeout or HTTP
-- error; 5 archive finished with failed recordings; 6 busy.
local argparse = require "argparse"
local clicktocall = require "clicktocall"
local config = require "clicktocall.cli.config"
local times = require "clicktocall.cli.times"
local output = require "clicktocall.cli.output"
local progress = require "clicktocall.cli.progress"
local doctor = require "clicktocall.cli.doctor"

local type = type
local pcall = require("clicktocall.errors").pcall -- never swallows Ctrl-C: main() makes it exit 130
local tostring = tostring
local tonumber = tonumber
local format = string.format
local gsub = string.gsub
local find = string.find
local match = string.match

local M = { _VERSION = require("clicktocall.core")._VERSION }

M.EXIT = { ok = 0, api = 1, unexpected = 1, usage = 2, below_min = 3, network = 4, failed = 5, busy = 6 }

local EXIT_BY_KIND = {
  argument = 2, api = 1, network = 4, timeout = 4, http = 4, busy = 6,
}

--- exit_code(err) -> the exit code for an error object's kind
function M.exit_code(err)
  if type(err) == "string" and find(err, "interrupted!", 1, true) then
    return 130 -- Ctrl-C: the standalone interpreter raises "interrupted!" in Lua code
  end
  return type(err) == "table" and EXIT_BY_KIND[err.kind] or 1
end

local function base64(s)
  local ok, core = pcall(require, "clicktocall.core")
  if ok and type(core.base64) == "function" then
    return core.base64(s)
  end
  return nil
end

--- redact(s, secret) -> s with the secret and its base64 form replaced by "***"
function M.redact(s, secret)
  s = tostring(s)
  if type(secret) ~= "string" or secret == "" then
    return s
  end
  for _, needle in ipairs({ secret, base64(secret) }) do
    if needle and needle ~= "" then
      local from = 1
      while true do
        local a, b = find(s, needle, from, true)
        if not a then
          break
        end
        s = s:sub(1, a - 1) .. "***" .. s:sub(b + 1)
        from = a + 3
      end
    end
  end
  return s
end

-- one sentence on one line: no newlines, one final full stop
local function sentence(s)
  s = gsub(gsub(tostring(s), "[\r\n\t]+", " "), "%s+$", "")
  if not match(s, "[.!?]$") then
    s = s .. "."
  end
  return s
end

--- describe(cmd, err) -> the sentence shown for an error object
function M.describe(cmd, err)
  if M.exit_code(err) == 130 then
    return format("clicktocall %s: interrupted", cmd)
  end
  if type(err) ~= "table" then
    return format("clicktocall %s: %s", cmd, tostring(err))
  end
  local msg = gsub(tostring(err.message or err.kind or "failed"), "[.%s]+$", "")
  local kind = err.kind
  local s
  if kind == "api" then
    s = format("clicktocall %s: the provider refused: %s", cmd, msg)
  elseif kind == "http" then
    s = format("clicktocall %s: %s (HTTP %s)", cmd, msg, tostring(err.status or "error"))
  elseif kind == "network" or kind == "timeout" then
    s = format("clicktocall %s: %s (%s error)", cmd, msg, kind)
  elseif kind == "busy" then
    s = format("clicktocall %s: %s; another run holds it, so nothing was done", cmd, msg)
  elseif kind == "callback" and err.cause ~= nil then
    local cause = type(err.cause) == "table" and (err.cause.message or err.cause[1]) or err.cause
    s = format("clicktocall %s: %s (%s)", cmd, msg, tostring(cause))
  else
    s = format("clicktocall %s: %s", cmd, msg)
  end
  if cmd == "dial" and err.sent and kind ~= "api" then
    s = s .. "; the call MAY have been placed: look for it with `clicktocall records --from 10m` " ..
        "before dialling again"
  end
  return s
end

------------------------------------------------------------------------
-- the command line
------------------------------------------------------------------------

local DESCRIPTION = [[
Bind seats, place click-to-call dials, read the balance and the call records,
archive recordings before the provider deletes them (7 days), and keep a
database in step with the records.]]

local EPILOG = [[
Configuration (the first found wins): flags; the environment
(CLICKTOCALL_BASE_URL, CLICKTOCALL_APP_SECRET, CLICKTOCALL_USER_DATA); the
config file ~/.config/clicktocall/config ($XDG_CONFIG_HOME/clicktocall/config
when set) or --config FILE, with `key = value` lines: base_url, app_secret,
user_data, timeout, ca_file, insecure, proxy. The secret is never a flag
(flags show in `ps`); a config file that group or others can read is refused.

Times: "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd" (as --to: the end of that day),
"now", or an age before now: 30m, 24h, 7d, 2w. All on the provider's clock
(UTC+8).

Exit codes: 0 ok; 1 the provider refused or something unexpected; 2 usage or
argument error; 3 balance below --min; 4 network, timeout or HTTP error;
5 archive finished with failed recordings; 6 busy (another archive or sync
holds the directory or state file).

Run `clicktocall COMMAND --help` for a command's options.]]

local COMMAND_EPILOG = [[
Times: "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd", "now", or an age: 30m, 24h, 7d
(UTC+8). Global options (--base-url, --user-data, --config, --timeout,
--ca-file, --insecure, --proxy, -v) may come before or after the command; see
`clicktocall --help` for them, the configuration and the exit codes.]]

local function build_parser()
  local p = argparse("clicktocall", DESCRIPTION, EPILOG)
  p:command_target("command")
  p:help_max_width(80)
  p:option("--base-url", "The provider's base URL (https://...)."):argname("URL")
  p:option("--user-data", "Your customer id (userData)."):argname("S")
  p:option("--config", "Config file (default ~/.config/clicktocall/config)."):argname("FILE")
  p:option("--timeout", "Seconds for a whole request (default 10)."):argname("S")
  p:option("--ca-file", "CA bundle to verify the provider's certificate."):argname("F")
  p:flag("--insecure", "Do not verify TLS certificates (tests only).")
  p:option("--proxy", "HTTP proxy, http://host:port."):argname("URL")
  p:flag("-v --verbose", "Log each request, answer and retry to stderr.")
  p:flag("--version", "Print the version and exit."):action(function()
    io.stdout:write("clicktocall " .. tostring(clicktocall._VERSION) .. " (" .. _VERSION ..
      (rawget(_G, "jit") and (", " .. rawget(_G, "jit").version) or "") .. ")\n")
    os.exit(0)
  end)

  local c = p:command("bind", "Bind an agent's phone to a seat (once per seat).")
  c:argument("seat", "The seat (setingNbr), e.g. PP7568032251.")
  c:argument("phone", "The agent's phone; normalized (13918337711, 0755-28000123, +86...).")

  c = p:command("dial", "Ring CALLER (the agent), then connect CALLEE; prints the session id.")
  c:argument("caller", "The agent's phone, as bound to the seat.")
  c:argument("callee", "The customer's phone.")
  c:option("--seat", "The seat the caller is bound to."):argname("SEAT"):count(1)
  c:flag("--force", "Dial even if a dial guard would refuse a repeat.")

  c = p:command("balance", "Print the remaining talk time in seconds.")
  c:option("--min", "Exit 3 when the balance is below N (for monitoring)."):argname("N")

  c = p:command("records", "List call records: a table on a terminal, JSON lines otherwise.")
  c:option("--from", "Start of the window (see Times)."):argname("T"):count(1)
  c:option("--to", "End of the window (default now)."):argname("T")
  c:option("--format", "table, csv or jsonl."):argname("F"):choices({ "table", "csv", "jsonl" })
  c:option("--limit", "Stop after N records."):argname("N")
  c:option("--concurrency", "Page N slices of the window at once (1..16)."):argname("N")

  c = p:command("archive", "Download every recording in a window into DIR, with a manifest.")
  c:option("--from", "Start of the window (see Times)."):argname("T"):count(1)
  c:option("--to", "End of the window (default now)."):argname("T")
  c:option("--dir", "An existing, writable directory."):argname("DIR"):count(1)
  c:option("--concurrency", "Recordings downloaded at once, 1..32 (default 4)."):argname("N")
  c:option("--layout", "date: DIR/yyyy-MM-dd/NAME (default); flat: DIR/NAME."):argname("L")
    :choices({ "date", "flat" })

  c = p:command("sync", "Write each record new since the last run to stdout; the cursor lives in FILE.")
  c:option("--state", "The cursor file (created on the first run)."):argname("FILE"):count(1)
  c:option("--since", "First run only: where to start (default 24h)."):argname("T")
  c:option("--format", "jsonl (default) or csv."):argname("F"):choices({ "jsonl", "csv" })

  c = p:command("normalize", "Print each phone number as the provider wants it (+86...).")
  c:argument("phone", "Phone numbers."):args("+")
  c:option("--country-code", "For numbers given without one (default 86)."):argname("CC")

  p:command("doctor", "Check configuration, DNS, TCP, TLS and CA bundle, clock and credentials.")

  for _, cmd in ipairs(p._commands) do
    cmd:epilog(COMMAND_EPILOG)
  end
  p:add_help_command()
  return p
end
M.build_parser = build_parser

------------------------------------------------------------------------
-- the commands
------------------------------------------------------------------------

local function number_arg(v, name, opts)
  if v == nil then
    return nil
  end
  local n = tonumber(v)
  if not n or n ~= n or (opts.integer and n ~= math.floor(n)) or n < (opts.min or -math.huge) or
     n > (opts.max or math.huge) then
    return nil, format("%s must be %s, not '%s'", name, opts.what, v)
  end
  return n
end

local function time_window(ctx, a)
  local now = ctx.now()
  local from, ferr = times.parse(a.from, now, false)
  if not from then
    return nil, "--from: " .. ferr
  end
  local to, terr = times.parse(a.to or "now", now, true)
  if not to then
    return nil, "--to: " .. terr
  end
  if from > to then
    return nil, format("--from (%s) is after --to (%s)", clicktocall.format_time(from),
      clicktocall.format_time(to))
  end
  return from, to
end

local commands = {}

function commands.bind(ctx, a)
  local ok, err = ctx.client:bind_seat { seat = a.seat, phone = a.phone }
  if not ok then
    return ctx:fail(err)
  end
  ctx.out:write(format("seat %s bound to %s\n", a.seat, clicktocall.normalize_phone(a.phone) or a.phone))
  return 0
end

function commands.dial(ctx, a)
  local sid, err = ctx.client:dial { caller = a.caller, callee = a.callee, seat = a.seat, force = a.force or nil }
  if not sid then
    return ctx:fail(err)
  end
  ctx.out:write(tostring(sid), "\n")
  return 0
end

function commands.balance(ctx, a)
  local min, merr = number_arg(a.min, "--min", { what = "a number" })
  if merr then
    return ctx:usage(merr)
  end
  local n, err = ctx.client:balance()
  if not n then
    return ctx:fail(err)
  end
  ctx.out:write(output.json_value(n), "\n")
  if min and n < min then
    ctx.err:write(format("clicktocall balance: %s s of talk time left, below the minimum of %s.\n",
      output.json_value(n), output.json_value(min)))
    return 3
  end
  return 0
end

function commands.records(ctx, a)
  local from, to = time_window(ctx, a)
  if not from then
    return ctx:usage(to)
  end
  local limit, lerr = number_arg(a.limit, "--limit", { integer = true, min = 1, what = "a positive whole number" })
  if lerr then
    return ctx:usage(lerr)
  end
  local conc, cerr = number_arg(a.concurrency, "--concurrency",
    { integer = true, min = 1, max = 16, what = "a whole number from 1 to 16" })
  if cerr then
    return ctx:usage(cerr)
  end
  local fmt = a.format or (ctx.isatty(ctx.out) and "table" or "jsonl")
  local w = output.new(fmt, ctx.out)
  local args = { start_time = from, end_time = to, limit = limit, concurrency = conc }
  local ok, err = pcall(function()
    for rec in ctx.client:records(args) do
      local wok, werr = w:row(rec)
      if not wok then
        error({ kind = "io", message = "could not write to stdout: " .. tostring(werr) }, 0)
      end
    end
  end)
  w:flush()
  if not ok then
    return ctx:fail(err)
  end
  if fmt == "table" then
    ctx.err:write(format("%d record%s from %s to %s (UTC+8)\n", w.count, w.count == 1 and "" or "s",
      clicktocall.format_time(from), clicktocall.format_time(to)))
  end
  return 0
end

local function no_job(ctx, name)
  ctx.err:write(format("clicktocall %s: this clicktocall library (%s) has no client:%s; " ..
    "it needs a version with the jobs (0.2.0 or later).\n", ctx.command, tostring(clicktocall._VERSION), name))
  return 1
end

-- the ids the manifest says are on disk whole: those the job will skip
local function archived_ids(dir)
  local ids = {}
  local f = io.open(dir .. "/manifest.jsonl", "rb")
  if not f then
    return ids
  end
  for line in f:lines() do
    local id = match(line, '"id"%s*:%s*"?(%d+)')
    local file = match(line, '"file"%s*:%s*"(.-)"')
    local bytes = tonumber(match(line, '"bytes"%s*:%s*(%d+)'))
    if id and file then
      local h = io.open(dir .. "/" .. gsub(file, "\\/", "/"), "rb")
      if h then
        if h:seek("end") == bytes then
          ids[id] = true
        end
        h:close()
      end
    end
  end
  f:close()
  return ids
end

-- how many recordings the job will download: listed once before it starts,
-- because on_file tells what is done but nothing tells the total
local function count_recordings(client, from, to, dir)
  local skip = archived_ids(dir)
  local n = 0
  local ok = pcall(function()
    for rec in client:records { start_time = from, end_time = to } do
      if (rec.recordFlag == "1" or rec.recordFlag == 1) and rec.recordFileDownloadUrl and
         rec.recordFileDownloadUrl ~= "" and not skip[output.json_value(rec.id)] then
        n = n + 1
      end
    end
  end)
  return ok and n or nil
end

local function expiry(entry)
  if type(entry.expires_at) == "number" then
    return clicktocall.format_time(entry.expires_at) .. " (UTC+8)"
  end
  return "unknown"
end

function commands.archive(ctx, a)
  if type(ctx.client.archive_recordings) ~= "function" then
    return no_job(ctx, "archive_recordings")
  end
  local from, to = time_window(ctx, a)
  if not from then
    return ctx:usage(to)
  end
  local conc, cerr = number_arg(a.concurrency, "--concurrency",
    { integer = true, min = 1, max = 32, what = "a whole number from 1 to 32" })
  if cerr then
    return ctx:usage(cerr)
  end
  local tty = ctx.isatty(ctx.err)
  local bar = progress.new { fh = ctx.err, tty = tty, clock = ctx.clock,
                             columns = tty and (ctx.columns or progress.columns)(ctx.getenv) or nil }
  if tty then
    ctx.err:write("listing the recordings...\r")
  end
  bar:set_total(count_recordings(ctx.client, from, to, a.dir))
  -- failures so far: downloads whose last answer was an error and that are
  -- not being tried again (the job's summary is what counts at the end)
  local failing, nfailing = {}, 0
  ctx.on_event = function(ev)
    if ev.method ~= "GET" or not ev.url then
      return
    end
    local was = failing[ev.url]
    if ev.type == "request" or ev.type == "retry" then
      failing[ev.url] = nil
    elseif ev.type == "response" then
      failing[ev.url] = (ev.error ~= nil or (ev.status and (ev.status < 200 or ev.status > 299))) or nil
    end
    if was ~= failing[ev.url] then
      nfailing = nfailing + (failing[ev.url] and 1 or -1)
      pcall(bar.set_failed, bar, nfailing)
    end
  end
  local summary, err = ctx.client:archive_recordings {
    start_time = from, end_time = to, dir = a.dir, concurrency = conc, layout = a.layout,
    on_file = function(entry)
      pcall(bar.file, bar, entry) -- a display problem must not fail a recording
    end,
  }
  bar:set_failed(summary and #(summary.failed or {}) or nfailing)
  bar:finish()
  if not summary then
    return ctx:fail(err)
  end
  local failed = summary.failed or {}
  local out = ctx.out
  out:write(format("archived %d, skipped %d (already there), %d without a recording, %d failed; %s written to %s\n",
    summary.downloaded or 0, summary.skipped or 0, summary.no_recording or 0, #failed,
    progress.bytes(summary.bytes or 0), a.dir))
  for _, e in ipairs(failed) do
    out:write(format("failed: id %s, session %s, expires %s: %s\n", output.json_value(e.id),
      tostring(e.sessionId), expiry(e),
      gsub(ctx.redact(type(e.err) == "table" and e.err.message or tostring(e.err)), "[\r\n]+", " ")))
  end
  for _, e in ipairs(summary.expiring or {}) do
    out:write(format("EXPIRING within 24 h: id %s, session %s, expires %s: run the archive again soon\n",
      output.json_value(e.id), tostring(e.sessionId), expiry(e)))
  end
  if #failed > 0 then
    ctx.err:write(format("clicktocall archive: %d recording%s failed; run the same command again to retry them.\n",
      #failed, #failed == 1 and "" or "s"))
    return 5
  end
  return 0
end

function commands.sync(ctx, a)
  if type(ctx.client.sync) ~= "function" then
    return no_job(ctx, "sync")
  end
  local since
  if a.since then
    local s, serr = times.parse(a.since, ctx.now(), false)
    if not s then
      return ctx:usage("--since: " .. serr)
    end
    since = s
  end
  local w = output.new(a.format or "jsonl", ctx.out)
  local summary, err = ctx.client:sync {
    state = a.state, since = since,
    on_record = function(rec)
      local ok, werr = w:row(rec)
      if not ok then
        return nil, "could not write to stdout: " .. tostring(werr)
      end
      -- each record leaves at once, so a reader downstream is never behind the cursor
      w:flush()
      return true
    end,
  }
  w:flush()
  if not summary then
    return ctx:fail(err)
  end
  ctx.err:write(format("clicktocall sync: %d new record%s in %d page%s; cursor at id %s in %s\n",
    summary.delivered or 0, summary.delivered == 1 and "" or "s", summary.pages or 0,
    summary.pages == 1 and "" or "s", output.json_value(summary.max_id or 0), tostring(summary.state or a.state)))
  return 0
end

function commands.normalize(ctx, a)
  local code = 0
  for _, phone in ipairs(a.phone) do
    local n, err = clicktocall.normalize_phone(phone, a.country_code)
    if n then
      ctx.out:write(n, "\n")
    else
      ctx.err:write(sentence(format("clicktocall normalize: '%s': %s", gsub(phone, "%c", "?"),
        gsub(tostring(err and err.message or err), "[.%s]+$", ""))), "\n")
      code = 2
    end
  end
  return code
end

------------------------------------------------------------------------
-- main
------------------------------------------------------------------------

local function default_isatty(fh)
  local ok, term = pcall(require, "term")
  if ok and type(term.isatty) == "function" then
    return term.isatty(fh) == true
  end
  return false
end

local ctx_mt = {}
ctx_mt.__index = ctx_mt

function ctx_mt:say(s)
  self.err:write(sentence(self.redact(s)), "\n")
end

function ctx_mt:usage(msg)
  self:say(format("clicktocall %s: %s; see `clicktocall %s --help`", self.command, msg, self.command))
  return 2
end

function ctx_mt:fail(err)
  self:say(M.describe(self.command, err))
  return M.exit_code(err)
end

local NEEDS_CLIENT = { bind = true, dial = true, balance = true, records = true, archive = true, sync = true }

-- the first argument that names a command, for error messages
local function command_in(argv)
  local p = build_parser()
  for _, a in ipairs(argv) do
    for _, c in ipairs(p._commands) do
      if a == c._name then
        return a
      end
    end
  end
  return nil
end

local function run(argv, env, shared)
  local ctx = setmetatable({
    out = env.stdout or io.stdout, err = env.stderr or io.stderr,
    getenv = env.getenv or os.getenv, isatty = env.isatty or default_isatty,
    now = env.now or os.time, clock = env.clock, command = command_in(argv) or "",
    client_options = env.client_options or {}, columns = env.columns,
  }, ctx_mt)
  shared.secret = ctx.getenv("CLICKTOCALL_APP_SECRET")
  ctx.redact = function(s)
    return M.redact(s, shared.secret)
  end
  if not ctx.clock then
    local ok, core = pcall(require, "clicktocall.core")
    ctx.clock = ok and core.now or os.time
  end

  -- a secret on the command line is refused before anything else reads it
  for _, a in ipairs(argv) do
    local name = match(a, "^%-%-?([%w_-]+)")
    if name and (name:lower():gsub("_", "-"):find("secret", 1, true)) then
      ctx.err:write("clicktocall: the app secret is never taken from a flag (flags show in `ps` and shell " ..
        "history); set CLICKTOCALL_APP_SECRET or app_secret in the config file.\n")
      return 2
    end
  end

  local parser = build_parser()
  local ok, a = parser:pparse(argv)
  if not ok then
    local cmd = ctx.command ~= "" and (" " .. ctx.command) or ""
    -- (argparse's messages name the option or argument, not its value)
    ctx:say(format("clicktocall%s: %s; see `clicktocall%s --help`", cmd, a, cmd))
    return 2
  end
  ctx.command = a.command

  if a.command == "normalize" then
    return commands.normalize(ctx, a)
  end

  local timeout, terr = number_arg(a.timeout, "--timeout", { min = 0.001, what = "a positive number of seconds" })
  if terr then
    return ctx:usage(terr)
  end
  local flags = { config = a.config, base_url = a.base_url, user_data = a.user_data, timeout = timeout,
    ca_file = a.ca_file, insecure = a.insecure or nil, proxy = a.proxy }
  local settings, sources = config.resolve(flags, ctx.getenv)
  if settings and settings.app_secret then
    shared.secret = settings.app_secret
  end

  if a.command == "doctor" then
    return doctor.run { settings = settings, sources = sources,
      resolve_err = settings == nil and ctx.redact(sources) or nil, clicktocall = clicktocall,
      out = ctx.out, timeout = settings and settings.timeout }
  end

  if not settings then
    ctx.err:write(ctx.redact(sources), "\n") -- already a sentence
    return 2
  end
  if NEEDS_CLIENT[a.command] then
    local where = settings.config_path or "~/.config/clicktocall/config"
    if not settings.base_url then
      return ctx:usage("no base URL: set CLICKTOCALL_BASE_URL, base_url in " .. where .. ", or --base-url")
    end
    if not settings.app_secret then
      return ctx:usage("no app secret: set CLICKTOCALL_APP_SECRET, or app_secret in " .. where ..
        " (chmod 600); it is never a flag")
    end
    if not settings.user_data then
      return ctx:usage("no user data (customer id): set CLICKTOCALL_USER_DATA, user_data in " .. where ..
        ", or --user-data")
    end
    local verbose = a.verbose
    local client, err = clicktocall.new {
      base_url = settings.base_url, app_secret = settings.app_secret, user_data = settings.user_data,
      timeout = settings.timeout, ca_file = settings.ca_file, insecure = settings.insecure,
      proxy = settings.proxy, user_agent = "cli",
      transport = ctx.client_options.transport, sleep = ctx.client_options.sleep,
      on_event = function(ev)
        if verbose then
          ctx.err:write(ctx.redact(format("clicktocall: %s %s %s%s%s%s\n", ev.type, tostring(ev.method),
            tostring(ev.url), ev.status and (" " .. ev.status) or "",
            ev.attempt and (" attempt " .. ev.attempt) or "",
            ev.error and (": " .. tostring(type(ev.error) == "table" and ev.error.message or ev.error)) or "")))
        end
        if ctx.on_event then
          ctx.on_event(ev)
        end
      end,
    }
    if not client then
      return ctx:fail(err)
    end
    ctx.client = client
    local code = commands[a.command](ctx, a)
    client:close()
    return code
  end
  return ctx:usage("unknown command")
end

--- main(argv [, env]) -> exit code. For tests, env = { stdout =, stderr =, getenv =, isatty =, now =,
-- clock =, client_options = { transport =, sleep = } }.
function M.main(argv, env)
  env = env or {}
  local args = {}
  for i = 1, #(argv or {}) do
    args[i] = argv[i]
  end
  local shared = {}
  local ok, code = _G.pcall(run, args, env, shared) -- the one pcall that catches an interrupt
  if ok then
    return code
  end
  local stderr = env.stderr or io.stderr
  if M.exit_code(code) == 130 then
    -- Ctrl-C: the library let go of its locks and removed its temporary files before passing it on; a
    -- collection finalizes what an interrupted step still held (a file sink removes its file), since
    -- os.exit does not. Then one line naming the command: no path, no traceback.
    collectgarbage()
    local cmd = command_in(args)
    if (env.isatty or default_isatty)(stderr) then
      stderr:write("\n") -- off the progress bar's line, or the ^C the terminal echoed
    end
    stderr:write(sentence(format("clicktocall%s: interrupted", cmd and (" " .. cmd) or "")), "\n")
    return 130
  end
  -- a bug of ours: one sentence, never the secret, exit 1
  stderr:write(sentence(M.redact("clicktocall: unexpected error (please report it): " ..
    (type(code) == "table" and tostring(code.message or code.kind) or tostring(code)), shared.secret)), "\n")
  return 1
end

return M
