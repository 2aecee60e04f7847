--- The `clicktocall` command: a thin shell over the library for operators,
-- cron jobs and support staff. bin/clicktocall calls main(); everything here
-- takes its streams and environment as arguments so the specs can drive it.
--
--   local cli = require "clicktocall.cli"
--   os.exit(cli.main(arg))            -- returns the exit code
--
-- Exit codes: 0 ok; 1 the provider refused (api) or something unexpected;
-- 2 usage or argument error; 3 balance below --min; 4 network, timeout or HTTP
-- error; 5 archive finished with failed recordings; 6 busy; 7 the provider
-- refused the credentials; 8 a dial refused by the dial guard (a repeat; --force
-- dials anyway); 9 a request refused by the rate limit (nothing sent).
local argparse = require "argparse"
local clicktocall = require "clicktocall"
local config = require "clicktocall.cli.config"
local times = require "clicktocall.cli.times"
local output = require "clicktocall.cli.output"
local progress = require "clicktocall.cli.progress"
local doctor = require "clicktocall.cli.doctor"
local errors = require "clicktocall.errors"
local exchange = require "clicktocall.exchange"
local core = require "clicktocall.core"
local DEFAULTS = require("clicktocall.options").DEFAULTS
local LIMITS = require "clicktocall.limits"
local RATE = require "clicktocall.rate_limit"

local type = type
local pcall = require("clicktocall.errors").pcall -- never swallows Ctrl-C: main() makes it exit 130
local tostring = tostring
local tonumber = tonumber
local format = string.format
local gsub = string.gsub
local find = string.find
local match = string.match

local M = { _VERSION = require "clicktocall.version" }

M.EXIT = { ok = 0, api = 1, unexpected = 1, usage = 2, below_min = 3, network = 4, failed = 5, busy = 6,
           auth = 7, duplicate = 8, rate_limited = 9 }

local EXIT_BY_KIND = {
  argument = 2, api = 1, network = 4, timeout = 4, http = 4, busy = 6, duplicate = 8, rate_limited = 9,
}

--- exit_code(err) -> the exit code for an error object's kind (7: the provider refused the credentials)
function M.exit_code(err)
  if type(err) == "string" and find(err, "interrupted!", 1, true) then
    return 130 -- Ctrl-C: the standalone interpreter raises "interrupted!" in Lua code
  end
  if type(err) == "table" and err.auth == true then
    return M.EXIT.auth
  end
  return type(err) == "table" and EXIT_BY_KIND[err.kind] or 1
end

-- The library's argument errors begin with the call's name ("dial: caller is missing"); the command
-- line names its command already.
local LIBRARY_CALLS = {
  ["clicktocall.new"] = true, bind_seat = true, dial = true, balance = true, records_page = true,
  records = true, download_recording = true, archive_recordings = true, sync = true,
}

local function without_call(msg)
  local call, rest = match(msg, "^([%w_.]+): (.+)$")
  if call and LIBRARY_CALLS[call] then
    return rest
  end
  return msg
end

--- redact(s, secret) -> s with the secret in every form the library knows (exchange.secret_forms: raw,
-- base64, URL-safe, unpadded) replaced by "***"
function M.redact(s, secret)
  if type(secret) ~= "string" or secret == "" then
    return tostring(s)
  end
  return exchange.redact({ secrets = exchange.secret_forms(secret) }, tostring(s))
end

-- one sentence on one line: no newlines, one final full stop
local function sentence(s)
  s = gsub(gsub(tostring(s), "[\r\n\t]+", " "), "%s+$", "")
  if not match(s, "[.!?]$") then
    s = s .. "."
  end
  return s
end

-- what a dial that may have rung leaves behind, for describe(): guard = { hold = seconds } when the dial
-- guard kept the dial's claim, { why = "..." } when no guard was used
local function after_ambiguous(guard)
  local s = "; the call MAY have been placed and the agent's phone may be ringing now: its record shows in " ..
            "`clicktocall records` only once the call has ended, so a list without it proves nothing"
  if guard and guard.hold then
    return s .. format("; the dial guard refuses the same dial for the next %d s (--force dials anyway)",
                       math.ceil(guard.hold))
  end
  return s .. format("; no dial guard was used (%s), so nothing stops a repeat: wait for the call to end " ..
                     "before dialling again", guard and guard.why or "none")
end

-- strips what names the field from the start of a library message
local function without_field(text, field)
  local plain = gsub(field, "%p", "%%%0")
  for _, pat in ipairs({ "^field '" .. plain .. "'%s*:?%s*(.*)$", "^'" .. plain .. "'%s*:?%s*(.*)$",
                         "^" .. plain .. "%s*:?%s+(.*)$" }) do
    local rest = match(text, pat)
    if rest then
      return rest
    end
  end
  return text
end

--- argument_message(err, name_of) -> the library's argument error as a
-- sentence naming the setting the way the user gave it: name_of(field) says
-- how ("--base-url", "CLICKTOCALL_BASE_URL", "base_url in /path:3", "CALLER
-- '12'"). The field is err.field, or else read from the message ("bad
-- argument #1 to 'new' (field 'base_url' must be ...)").
function M.argument_message(err, name_of)
  local msg = tostring(type(err) == "table" and err.message or err)
  local inner = match(msg, "^bad argument #%d+ to '[^']*' %((.*)%)$") or without_call(msg)
  local field = type(err) == "table" and type(err.field) == "string" and err.field or
                match(inner, "^field '([%w_]+)'")
  if not field then
    return inner
  end
  local rest = without_field(inner, field)
  local name = name_of and name_of(field) or field
  if match(rest, "^must ") or match(rest, "^cannot ") or match(rest, "^is ") or match(rest, "^has ") then
    return name .. " " .. rest
  end
  return name .. ": " .. rest
end

--- describe(cmd, err [, guard] [, name_of]) -> the sentence shown for an error object
-- guard (dial): { hold = seconds } or { why = "--force" | "dial_guard = off" }; name_of: see argument_message
-- (either may be left out)
function M.describe(cmd, err, guard, name_of)
  if type(guard) == "function" then
    guard, name_of = nil, guard
  end
  if M.exit_code(err) == 130 then
    return format("clicktocall %s: interrupted", cmd)
  end
  if type(err) ~= "table" then
    return format("clicktocall %s: %s", cmd, tostring(err))
  end
  local msg = gsub(tostring(err.message or err.kind or "failed"), "[.%s]+$", "")
  local kind = err.kind
  local s
  if err.auth == true then
    s = format("clicktocall %s: the provider refused the credentials: %s; check the app secret "
      .. "(CLICKTOCALL_APP_SECRET or app_secret in the config file) and the base URL, "
      .. "or run `clicktocall doctor`", cmd, msg)
  elseif kind == "argument" then
    s = format("clicktocall %s: %s", cmd, (gsub(M.argument_message(err, name_of), "[.%s]+$", "")))
  elseif kind == "api" then
    s = format("clicktocall %s: the provider refused: %s", cmd, msg)
  elseif kind == "http" then
    s = format("clicktocall %s: %s (HTTP %s)", cmd, msg, tostring(err.status or "error"))
  elseif kind == "network" or kind == "timeout" then
    s = format("clicktocall %s: %s (%s error)", cmd, msg, kind)
  elseif kind == "busy" then
    -- the library's sentence says who holds what and that nothing was done (or, for a lease lost
    -- mid-run, that the run stopped): said once
    s = format("clicktocall %s: %s", cmd, msg)
    if not err.sent and not find(msg, "nothing was done", 1, true) then
      s = s .. "; another run holds it, so nothing was done"
    end
  elseif kind == "rate_limited" then
    -- the library's sentence names the call, the limit and when the next may go; say what to do
    local after = type(err.retry_after) == "number" and math.ceil(err.retry_after) or nil
    s = format("clicktocall %s: refused by the rate limit: %s", cmd, msg)
    if after then
      s = s .. format("; run it again in %d s", after)
      if after <= RATE.MAX_WAIT then
        s = s .. format(", or give --rate-limit-wait %d to wait for the turn", after)
      end
    end
  elseif kind == "duplicate" and cmd == "dial" then
    s = format("clicktocall dial: refused by the dial guard: %s; if you know that it did not ring, run the same " ..
               "command with --force to dial anyway", (gsub(msg, ";? ?pass force = true to dial anyway$", "")))
  elseif kind == "callback" and err.cause ~= nil then
    local cause = type(err.cause) == "table" and (err.cause.message or err.cause[1]) or err.cause
    s = format("clicktocall %s: %s (%s)", cmd, msg, tostring(cause))
  else
    s = format("clicktocall %s: %s", cmd, msg)
  end
  if cmd == "dial" then
    local rang = err.may_have_rung
    if rang == nil then
      rang = errors.may_have_rung(err)
    end
    if rang then
      s = s .. after_ambiguous(guard)
    end
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
(CLICKTOCALL_BASE_URL, CLICKTOCALL_APP_SECRET, CLICKTOCALL_USER_DATA,
CLICKTOCALL_TIMEOUT, CLICKTOCALL_CA_FILE, CLICKTOCALL_PROXY,
CLICKTOCALL_RATE_LIMIT, CLICKTOCALL_RATE_LIMIT_WAIT); the user's config
file ~/.config/clicktocall/config ($XDG_CONFIG_HOME/clicktocall/config when
set; or --config FILE, or CLICKTOCALL_CONFIG); the system-wide config file
/etc/clicktocall/config (CLICKTOCALL_SYSTEM_CONFIG). A config file holds
`key = value` lines: base_url, app_secret, user_data, timeout, ca_file,
insecure, proxy; dial_guard (local, off or redis[s]://...:port[/db]),
dial_guard_hold (seconds), lock (redis://..., for archive and sync);
rate_limit (CALL=RATE[/PER], ...), rate_limit_wait (seconds), rate_limit_store
(redis[s]://..., shared with the nginx workers) and rate_limit_name; lines
after `[NAME]` are the profile NAME (--profile NAME or CLICKTOCALL_PROFILE),
those before any the default one. The secret is never a flag (flags show in
`ps`); a user's config file that group or others can read
is refused, and so is a system one holding app_secret. `clicktocall config
init` writes the file. libcurl takes http_proxy, https_proxy, all_proxy and
no_proxy from the environment when no proxy is set, and doctor checks that
path.

Output: -o table (for people: the default, but records and sync write JSON
lines when stdout is not a terminal), csv, json (one object, or an array of
them) or jsonl (one object a line), for every command. Only results go to
stdout; progress, counts and errors go to stderr, and -q leaves only errors.

Times: "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd" (as --to: the end of that day),
"now", an age before now (30m, 24h, 7d, 2w), ISO 8601 with a zone
(2026-12-05T02:00:00Z, 2026-12-05T10:00:00+08:00) or Unix seconds
(1796436000). Without a zone, on the provider's clock (UTC+8).

Exit codes: 0 ok; 1 the provider refused or something unexpected; 2 usage or
argument error; 3 balance below --min; 4 network, timeout or HTTP error;
5 archive finished with failed recordings; 6 busy (another archive or sync
holds the directory or state file); 7 the provider refused the credentials
(check the app secret and base URL, or run `clicktocall doctor`); 8 a repeated
dial refused by the dial guard (--force dials anyway); 9 refused by the rate
limit (nothing sent: run it again later, or give --rate-limit-wait); 130
interrupted.

Run `clicktocall COMMAND --help` for a command's options and examples.]]

-- the commands that take times get this paragraph in their --help
local TIMES_EPILOG = [[
Times: "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd", "now", an age (30m, 24h, 7d), ISO
8601 with a zone (2026-12-05T02:00:00Z, ...+08:00) or Unix seconds. Without a
zone, on the provider's clock (UTC+8).]]

local COMMAND_EPILOG = [[
Global options (--profile, --base-url, --user-data, --config, --timeout,
--ca-file, --insecure, --proxy, --rate-limit, --rate-limit-wait,
--rate-limit-store, -o, -q, -v, --log-format, --metrics-file)
may come before or after the command; see `clicktocall --help` for them,
the configuration and the exit codes.]]

-- examples for each command's --help (and the man page)
local EXAMPLES = {
  bind = [[
  clicktocall bind PP7568032251 13918337711
  clicktocall bind PP7568032251 0755-28000123 -o json]],
  dial = [[
  clicktocall dial 13918337711 0755-28000123 --seat PP7568032251
  clicktocall dial 13918337711 13500000002 --seat PP7568032251 -o json]],
  balance = [[
  clicktocall balance
  clicktocall balance --min 3600 >/dev/null || echo "talk time is low"
  clicktocall --profile acme balance -o json]],
  records = [[
  clicktocall records --from 2026-11-30 --to 2026-11-30
  clicktocall records --from 24h -o csv > last-day.csv
  clicktocall records --from 2026-12-05T02:00:00Z --to now -o json]],
  archive = [[
  clicktocall archive --from 2026-11-30 --to 2026-11-30 --dir /var/calls
  clicktocall archive --from 2d --dir /var/calls -q    # cron: errors only
  clicktocall archive --from 2d --dir /var/calls --region cn-hangzhou \
      --upload s3://call-recordings/ctc/ \
      --endpoint https://oss-cn-hangzhou.aliyuncs.com
      # the keys from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, never flags]],
  sync = [[
  clicktocall sync --state /var/lib/ctc/sync.json >> records.jsonl
  clicktocall sync --state /var/lib/ctc/sync.json --since 7d -o csv]],
  normalize = [[
  clicktocall normalize 0755-28000123
  clicktocall normalize --country-code 852 91234567
  clicktocall normalize 13918337711 12 -o csv    # input,output,error]],
  doctor = [[
  clicktocall doctor
  clicktocall doctor --upload s3://call-recordings/ctc/ --region us-east-1
  clicktocall --profile acme doctor -o json]],
  completion = [[
  clicktocall completion bash > ~/.local/share/bash-completion/completions/clicktocall
  clicktocall completion zsh > ~/.zfunc/_clicktocall    # a directory in $fpath
  clicktocall completion fish > ~/.config/fish/completions/clicktocall.fish]],
  config = [[
  export CLICKTOCALL_APP_SECRET   # read -rs CLICKTOCALL_APP_SECRET first
  clicktocall config init --base-url https://api.example.com --user-data 4e22...
  clicktocall --profile acme config init --base-url https://... --user-data ...]],
}
EXAMPLES.init = EXAMPLES.config

local TAKES_TIMES = { records = true, archive = true, sync = true }

--- upload_options(command, for_doctor): archive's and doctor's object-store flags. The keys are never flags (flags
-- show in `ps`): AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, as aws-cli reads them.
function M.upload_options(c, for_doctor)
  c:option("--upload", (for_doctor and "Check this S3-compatible store too (a signed HEAD of the bucket)" or
    "Upload each recording to an S3-compatible store under this bucket and prefix") .. "; the keys from "
    .. "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN)."):argname("s3://BUCKET/PREFIX/")
  c:option("--endpoint", "The store's URL (default AWS_ENDPOINT_URL, else https://s3.REGION.amazonaws.com)."
    ):argname("URL")
  c:option("--region", "The store's region (default AWS_REGION)."):argname("R")
  c:flag("--path-style", "Address the bucket as ENDPOINT/BUCKET/KEY (MinIO), not BUCKET.ENDPOINT/KEY.")
  if not for_doctor then
    c:flag("--no-keep-local", "Remove each local copy once its upload is recorded in the manifest.")
  end
end

local UPLOAD_ONLY = { { "endpoint", "--endpoint" }, { "region", "--region" }, { "path_style", "--path-style" },
                      { "no_keep_local", "--no-keep-local" } }

--- upload_settings(a, getenv) -> archive_recordings' upload table | nil (no --upload) | false, usage message.
-- The flags first, then aws-cli's environment names; the keys from the environment only.
function M.upload_settings(a, getenv)
  local function env(name)
    local v = getenv(name)
    return v ~= "" and v or nil
  end
  if a.upload == nil then
    for _, f in ipairs(UPLOAD_ONLY) do
      if a[f[1]] then
        return false, f[2] .. " goes with --upload s3://bucket/prefix/"
      end
    end
    return nil
  end
  local access, secret = env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")
  if not access or not secret then
    return false, "--upload needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment (the keys are "
      .. "never flags: flags show in `ps`)"
  end
  local region = a.region or env("AWS_REGION") or env("AWS_DEFAULT_REGION")
  if not region then
    return false, "--upload needs --region or AWS_REGION (the store's region, such as us-east-1 or cn-hangzhou)"
  end
  return { url = a.upload, endpoint = a.endpoint or env("AWS_ENDPOINT_URL"), region = region,
           access_key = access, secret_key = secret, session_token = env("AWS_SESSION_TOKEN"),
           path_style = a.path_style or nil, keep_local = not a.no_keep_local }
end

local RATE_CALLS = "dial, bind_seat, balance, records_page, download"

--- rate_limit_option(settings, name_of) -> clicktocall.new's rate_limit | nil (no limit) | false, usage
-- message. settings: rate_limit ("records_page=20/60, download=10": CALL=RATE[/PER], PER seconds, default 1),
-- rate_limit_wait, rate_limit_store, rate_limit_name, as config.resolve found them; name_of(key): the setting
-- as the user gave it ("--rate-limit", "CLICKTOCALL_RATE_LIMIT", "rate_limit in FILE:LINE").
function M.rate_limit_option(settings, name_of)
  local text = settings.rate_limit
  if text == nil then
    for _, key in ipairs { "rate_limit_wait", "rate_limit_store", "rate_limit_name" } do
      if settings[key] ~= nil then
        return false, name_of(key) .. " goes with a rate limit: --rate-limit CALL=RATE[/PER] (or rate_limit in " ..
          "the config file)"
      end
    end
    return nil
  end
  local name = name_of("rate_limit")
  local o, n = {}, 0
  for item in string.gmatch(text, "[^,%s]+") do
    local shown = gsub(item, "%c", "?")
    local call, rate, per = match(item, "^([%w_]+)=([^/]*)/?(.*)$")
    if not call then
      return false, format("%s: '%s' is not CALL=RATE[/PER] (records_page=20/60: at most 20 pages in any 60 s)",
        name, shown)
    end
    if not RATE.OPS[call] then
      return false, format("%s: '%s' names no call the library limits (%s)", name, shown, RATE_CALLS)
    end
    if o[call] then
      return false, format("%s names %s twice", name, call)
    end
    rate = tonumber(rate)
    if not rate or rate ~= math.floor(rate) or rate < 1 or rate > RATE.MAX_RATE then
      return false, format("%s: '%s': RATE must be a whole number of requests from 1 to %d", name, shown,
        RATE.MAX_RATE)
    end
    per = per == "" and 1 or tonumber(per)
    if not per or per ~= per or per < 0.001 or per > RATE.MAX_PER then
      return false, format("%s: '%s': PER must be a number of seconds from 0.001 to %d", name, shown, RATE.MAX_PER)
    end
    o[call], n = { rate = rate, per = per }, n + 1
  end
  if n == 0 then
    return false, format("%s is empty: give CALL=RATE[/PER], such as records_page=20/60", name)
  end
  local wait = settings.rate_limit_wait
  if wait ~= nil then
    if type(wait) ~= "number" or wait ~= wait or wait < 0 or wait > RATE.MAX_WAIT then
      return false, format("%s must be a number of seconds from 0 to %d", name_of("rate_limit_wait"), RATE.MAX_WAIT)
    end
    o.wait = wait
  end
  local store = settings.rate_limit_store
  if store ~= nil then
    -- the value is never echoed: it may hold a password
    if store:sub(1, 8) ~= "redis://" and store:sub(1, 9) ~= "rediss://" then
      return false, format("%s must be a redis[s]://[[user:]password@]host:port[/db] address (the store the nginx " ..
        "workers share; outside nginx a lua_shared_dict cannot be reached)", name_of("rate_limit_store"))
    end
    o.store = store
  end
  local lname = settings.rate_limit_name
  if lname ~= nil then
    if not match(lname, "^[%w_.:%-]+$") or #lname > 64 then
      return false, format("%s must be 1 to 64 letters, digits or _ . : -", name_of("rate_limit_name"))
    end
    o.name = lname
  end
  return o
end

-- a command's --help epilog: its examples, the times when it takes some, the global options
local function command_epilog(name)
  local parts = {}
  if EXAMPLES[name] then
    parts[#parts + 1] = "Examples:\n" .. EXAMPLES[name]
  end
  if TAKES_TIMES[name] then
    parts[#parts + 1] = TIMES_EPILOG
  end
  parts[#parts + 1] = COMMAND_EPILOG
  return table.concat(parts, "\n\n")
end

local function build_parser()
  local p = argparse("clicktocall", DESCRIPTION, EPILOG)
  p:command_target("command")
  p:help_max_width(80)
  p:option("--base-url", "The provider's base URL (https://...)."):argname("URL")
  p:option("--user-data", "Your customer id (userData)."):argname("S")
  p:option("--config", "Config file (default ~/.config/clicktocall/config)."):argname("FILE")
  p:option("--timeout", "Seconds for a whole request (default " .. DEFAULTS.timeout .. ")."):argname("S")
  p:option("--ca-file", "CA bundle to verify the provider's certificate."):argname("F")
  p:flag("--insecure", "Do not verify TLS certificates (tests only).")
  p:option("--proxy", "HTTP proxy, http://host:port (default: the environment's http_proxy, " ..
    "https_proxy, no_proxy, as libcurl reads them)."):argname("URL")
  p:option("--rate-limit", "At most RATE requests of CALL (dial, bind_seat, balance, records_page, download) " ..
    "in any PER seconds (default 1); repeat it for several calls."):argname("CALL=RATE[/PER]"):count("*")
  p:option("--rate-limit-wait", "Seconds a request may wait for its turn under --rate-limit (default 0: " ..
    "refused at once, exit 9)."):argname("S")
  p:option("--rate-limit-store", "Share the limit through this Redis (the nginx workers' store); one with a " ..
    "password only as rate_limit_store in the config file."):argname("URL")
  p:flag("-v --verbose", "Log each request, answer and retry to stderr, with its time.")
  p:option("--log-format", "text (default) or json: one JSON line an event on stderr (turns the log on)."
    ):argname("F"):choices { "text", "json" }
  p:option("--metrics-file", "Write Prometheus metrics of the run there at its end, atomically (for " ..
    "node_exporter's textfile collector)."):argname("PATH")
  p:option("--profile", "The config file's [NAME] section to use (default: its top lines)."):argname("NAME")
  p:option("-o --output", "table, csv, json or jsonl (see Output below)."):argname("F"):choices(output.FORMATS)
  p:flag("-q --quiet", "Print only errors on stderr: no progress, counts or summaries.")
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
  c:flag("--force", "Skip the dial guard: dial even if the same dial was placed moments ago or may still be " ..
    "ringing (exit 8 otherwise).")

  c = p:command("balance", "Print the remaining talk time in seconds.")
  c:option("--min", "Exit 3 when the balance is below N (for monitoring)."):argname("N")

  c = p:command("records", "List call records: a table on a terminal, JSON lines otherwise.")
  c:option("--from", "Start of the window (see Times)."):argname("T"):count(1)
  c:option("--to", "End of the window (default now)."):argname("T")
  c:option("--format", "The same as -o (kept for old scripts)."):argname("F"):choices(output.FORMATS)
  c:option("--limit", "Stop after N records."):argname("N")
  c:option("--concurrency", "Page N slices of the window at once (1.." .. LIMITS.records_concurrency .. ")."
    ):argname("N")

  c = p:command("archive", "Download every recording in a window into DIR, with a manifest.")
  c:option("--from", "Start of the window (see Times); required but with --verify."):argname("T"):count("0-1")
  c:option("--to", "End of the window (default now)."):argname("T")
  c:option("--dir", "An existing, writable directory."):argname("DIR"):count(1)
  c:option("--concurrency", "Recordings downloaded at once, 1.." .. LIMITS.archive_concurrency .. " (default 4)."
    ):argname("N")
  c:option("--layout", "date: DIR/yyyy-MM-dd/NAME (default); flat: DIR/NAME."):argname("L")
    :choices({ "date", "flat" })
  c:option("--mode", "The recordings' and the manifest's mode, octal (default 0640; the umask only narrows it)."
    ):argname("OCTAL")
  c:flag("--dry-run", "Page the window and print what a run would download, skip and lose within 24 h; "
    .. "write nothing, take no lock.")
  c:flag("--verify", "Re-hash every file the manifest in DIR names and report what is missing or changed "
    .. "(exit 5); no network.")
  c:option("--manifest", "With --verify: the manifest (default DIR/manifest.jsonl)."):argname("FILE")
  M.upload_options(c)

  c = p:command("sync", "Write each record new since the last run to stdout; the cursor lives in FILE.")
  c:option("--state", "The cursor file (created on the first run)."):argname("FILE"):count(1)
  c:option("--since", "First run only: where to start (default 24h)."):argname("T")
  c:option("--lookback", "How late after its end a record may reach the provider, 0.." .. LIMITS.lookback_max
    .. " (default 3600)."
    .. " Each run re-reads that much."):argname("S")
  c:option("--format", "The same as -o (default jsonl)."):argname("F"):choices(output.FORMATS)
  c:flag("--dry-run", "Print how many records a run would write and skip, and where the cursor would go; "
    .. "write no record, no state, take no lock.")

  c = p:command("normalize", "Print each phone number as the provider wants it (+86...).")
  c:argument("phone", "Phone numbers."):args("+")
  c:option("--country-code", "For numbers given without one (default " .. DEFAULTS.country_code .. ")."):argname("CC")

  c = p:command("doctor", "Check configuration, proxy, DNS, TCP, TLS and CA bundle, clock and credentials; "
    .. "with --upload, the object store too.")
  M.upload_options(c, true)

  M.add_commands(p)
  for _, cmd in ipairs(p._commands) do
    cmd:epilog(command_epilog(cmd._name))
    for _, sub in ipairs(cmd._commands) do
      sub:epilog(command_epilog(sub._name))
    end
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

------------------------------------------------------------------------
-- results: each command's result as a line for people (-o table, the
-- default) or as a record for csv, json and jsonl
------------------------------------------------------------------------

-- a file handle that writes nothing (--quiet's stderr for progress)
local NULL_FH = { write = function(self) return self end, flush = function() return true end }

local NORMALIZE_COLUMNS = { { "INPUT", "input" }, { "OUTPUT", "output" }, { "ERROR", "error" } }
local DOCTOR_COLUMNS = { { "CHECK", "check" }, { "STATUS", "status" }, { "DETAIL", "detail" } }
local ARCHIVE_COLUMNS = { { "DOWNLOADED", "downloaded" }, { "SKIPPED", "skipped" },
  { "NO_RECORDING", "no_recording" }, { "FAILED", "failed" }, { "BYTES", "bytes" }, { "DIR", "dir" } }

local ARCHIVE_PLAN_COLUMNS = { { "TO_DOWNLOAD", "to_download" }, { "BYTES", "bytes" },
  { "BYTES_UNKNOWN", "bytes_unknown" }, { "SKIPPED", "skipped" }, { "NO_RECORDING", "no_recording" },
  { "EXPIRING", "expiring" }, { "PAGES", "pages" }, { "DIR", "dir" } }
local SYNC_PLAN_COLUMNS = { { "NEW", "new" }, { "SKIPPED", "skipped" }, { "PAGES", "pages" },
  { "THROUGH", "through" }, { "STATE", "state" } }

local function normalized(phone)
  return clicktocall.normalize_phone(phone) or phone
end

-- kind -> { columns (CSV's header and JSON's keys), object(value, args), human(object) }
local RESULTS = {
  bind = {
    columns = { { "SEAT", "seat" }, { "PHONE", "phone" } },
    object = function(_, a) return { seat = a.seat, phone = normalized(a.phone) } end,
    human = function(t) return format("seat %s bound to %s\n", t.seat, t.phone) end,
  },
  dial = {
    columns = { { "SESSION", "session_id" }, { "CALLER", "caller" }, { "CALLEE", "callee" }, { "SEAT", "seat" } },
    object = function(sid, a)
      return { session_id = tostring(sid), caller = normalized(a.caller), callee = normalized(a.callee),
               seat = a.seat }
    end,
    human = function(t) return t.session_id .. "\n" end,
  },
  balance = {
    columns = { { "BALANCE", "balance" } },
    object = function(n) return { balance = n } end,
    human = function(t) return output.json_value(t.balance) .. "\n" end,
  },
}

--- archive_result(ctx, fmt, summary, dir): the archive's summary for csv, json and jsonl;
-- JSON also lists the failed and the expiring recordings
function M.archive_result(ctx, fmt, summary, dir)
  local function entries(list)
    local t = {}
    for i, e in ipairs(list or {}) do
      local why = type(e.err) == "table" and e.err.message or e.err
      t[i] = { id = e.id, sessionId = e.sessionId, file = e.file,
               expires_at = type(e.expires_at) == "number" and e.expires_at or nil,
               expires = type(e.expires_at) == "number" and clicktocall.format_time(e.expires_at) or nil,
               error = why ~= nil and gsub(ctx.redact(tostring(why)), "[\r\n]+", " ") or nil,
               kind = type(e.err) == "table" and e.err.kind or nil, stage = e.stage }
    end
    return t
  end
  local row = { downloaded = summary.downloaded or 0, skipped = summary.skipped or 0,
                no_recording = summary.no_recording or 0, failed = #(summary.failed or {}),
                bytes = summary.bytes or 0, dir = dir, uploaded = summary.uploaded }
  local columns = ARCHIVE_COLUMNS
  if summary.uploaded then -- archive --upload: more columns (added, none renamed)
    columns = { { "UPLOADED", "uploaded" } }
    for i, c in ipairs(ARCHIVE_COLUMNS) do
      columns[i + 1] = c
    end
    columns[#columns + 1] = { "FAILED_DOWNLOAD", "failed_download" }
    columns[#columns + 1] = { "FAILED_UPLOAD", "failed_upload" }
    local up = math.min(summary.failed_upload or 0, row.failed)
    row.failed_download, row.failed_upload = row.failed - up, up
  end
  if fmt == "json" or fmt == "jsonl" then
    local keys = {}
    for i, c in ipairs(columns) do
      keys[i] = c[2]
    end
    row.failures, row.expiring = entries(summary.failed), entries(summary.expiring)
    keys[#keys + 1], keys[#keys + 2] = "failures", "expiring"
    ctx.out:write(output.json_fields(row, keys), "\n")
    return
  end
  output.object(fmt, ctx.out, row, columns)
end

-- "2 failed (upload)", "3 failed (1 download, 2 upload)"
local function failed_words(n, up)
  if n == 0 then
    return "0 failed"
  elseif up == 0 then
    return format("%d failed (download)", n)
  elseif up == n then
    return format("%d failed (upload)", n)
  end
  return format("%d failed (%d download, %d upload)", n, n - up, up)
end

--- archive_line(summary, dir [, upload_url]) -> the archive's summary for people. Without an upload
-- "archived N, ..." (each one archived is on disk); with one, what was downloaded and what was uploaded are
-- counted apart, so a download whose upload failed is never called archived.
function M.archive_line(summary, dir, upload_url)
  local nfailed = #(summary.failed or {})
  local rest = format("skipped %d (already there), %d without a recording", summary.skipped or 0,
    summary.no_recording or 0)
  local bytes = progress.bytes(summary.bytes or 0)
  if not upload_url then
    return format("archived %d, %s, %d failed; %s written to %s", summary.downloaded or 0, rest, nfailed, bytes, dir)
  end
  return format("downloaded %d, uploaded %d to %s, %s, %s; %s written to %s", summary.downloaded or 0,
    summary.uploaded or 0, upload_url, rest, failed_words(nfailed, math.min(summary.failed_upload or 0, nfailed)),
    bytes, dir)
end

local VERIFY_COLUMNS = { { "STATUS", "status" }, { "LINE", "line", right = true }, { "ID", "id" },
  { "SESSION", "sessionId" }, { "FILE", "file" }, { "DETAIL", "detail" } }

--- archive --verify: every file the manifest names, re-hashed; a row each (-o), a summary line -> exit code:
-- 0 all there and unchanged (or uploaded), 5 something missing, changed or a torn line, 1 no manifest
function M.archive_verify(ctx, a)
  local fmt = ctx.fmt
  local report, err = clicktocall.verify_archive { dir = a.dir, manifest = a.manifest }
  if not report then
    return ctx:fail(err)
  end
  local w = output.rows(fmt or "table", ctx.out, VERIFY_COLUMNS)
  for _, row in ipairs(report.rows) do
    -- the table shows only what needs a look; -o shows every row
    if (fmt and fmt ~= "table") or row.status ~= "ok" then
      w:row(row)
    end
  end
  w:finish()
  local bad = report.missing + report.changed + report.torn
  ctx.err:write(format("clicktocall archive --verify: %d ok, %d uploaded (no local copy), %d missing, %d changed, "
    .. "%d torn line%s in %s\n", report.ok, report.uploaded, report.missing, report.changed, report.torn,
    report.torn == 1 and "" or "s", ctx.redact(report.manifest)))
  return bad > 0 and 5 or 0
end

local commands = {}

function commands.bind(ctx, a)
  local ok, err = ctx.client:bind_seat { seat = a.seat, phone = a.phone }
  if not ok then
    return ctx:fail(err)
  end
  return ctx:emit("bind", true, a)
end

function commands.dial(ctx, a)
  local sid, err = ctx.client:dial { caller = a.caller, callee = a.callee, seat = a.seat, force = a.force or nil }
  if not sid then
    local guard = ctx.dial_guard
    if a.force then
      guard = { why = "--force" }
    end
    ctx:say(M.describe(ctx.command, err, guard, function(field) return ctx:setting_name(field) end))
    return M.exit_code(err)
  end
  return ctx:emit("dial", sid, a)
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
  ctx:emit("balance", n, a)
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
    { integer = true, min = 1, max = LIMITS.records_concurrency,
      what = "a whole number from 1 to " .. LIMITS.records_concurrency })
  if cerr then
    return ctx:usage(cerr)
  end
  local fmt = ctx.fmt
  fmt = fmt or (ctx.isatty(ctx.out) and "table" or "jsonl")
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
  w:finish()
  if not ok then
    return ctx:fail(err)
  end
  if fmt == "table" then
    ctx:info(format("%d record%s from %s to %s (UTC+8)\n", w.count, w.count == 1 and "" or "s",
      clicktocall.format_time(from), clicktocall.format_time(to)))
  end
  return 0
end

local function expiry(entry)
  if type(entry.expires_at) == "number" then
    return clicktocall.format_time(entry.expires_at) .. " (UTC+8)"
  end
  return "unknown"
end

-- archive --dry-run: the plan, on stdout in the format asked
local function archive_plan(ctx, fmt, args, dir)
  args.dry_run = true
  local plan, err = ctx.client:archive_recordings(args)
  if not plan then
    return ctx:fail(err)
  end
  local expiring = {}
  for i, e in ipairs(plan.expiring or {}) do
    expiring[i] = { id = e.id, sessionId = e.sessionId, file = e.file, expires_at = e.expires_at,
                    expires = type(e.expires_at) == "number" and clicktocall.format_time(e.expires_at) or nil }
  end
  local row = { dry_run = true, to_download = plan.to_download, bytes = plan.bytes, bytes_unknown = plan.bytes_unknown,
                skipped = plan.skipped, no_recording = plan.no_recording, pages = plan.pages, dir = dir,
                to_upload = plan.to_upload }
  if fmt == "json" or fmt == "jsonl" then
    row.expiring = expiring
    ctx.out:write(output.json_fields(row, { "dry_run", "to_download", "to_upload", "bytes", "bytes_unknown",
                                            "skipped", "no_recording", "pages", "dir", "expiring" }), "\n")
  elseif fmt and fmt ~= "table" then
    row.expiring = #expiring
    output.object(fmt, ctx.out, row, ARCHIVE_PLAN_COLUMNS)
  else
    local size = plan.bytes_unknown == plan.to_download and "size unknown"
      or progress.bytes(plan.bytes or 0) .. (plan.bytes_unknown > 0 and " where known" or "")
    ctx.out:write(format("dry run: would download %d (%s)%s, skip %d (already there), %d without a recording; "
      .. "%d page%s listed; nothing written to %s\n", plan.to_download, size,
      plan.to_upload and format(", upload %d", plan.to_upload) or "", plan.skipped, plan.no_recording,
      plan.pages, plan.pages == 1 and "" or "s", dir))
    for _, e in ipairs(expiring) do
      ctx.out:write(format("EXPIRING within 24 h: id %s, session %s, expires %s: not archived yet\n",
        output.json_value(e.id), tostring(e.sessionId), expiry(e)))
    end
  end
  return 0
end

-- --mode 0640 -> 416 | nil, a usage message
local function octal_mode(s)
  if s == nil then
    return nil
  end
  local n = s:match("^[0-7]+$") and tonumber(s, 8)
  if not n or n > 511 then
    return nil, "--mode must be an octal mode from 0 to 0777, such as 0640"
  end
  return n
end

function commands.archive(ctx, a)
  if a.from == nil then
    return ctx:usage("archive needs --from (or --verify)")
  end
  local from, to = time_window(ctx, a)
  if not from then
    return ctx:usage(to)
  end
  local mode, merr = octal_mode(a.mode)
  if merr then
    return ctx:usage(merr)
  end
  local conc, cerr = number_arg(a.concurrency, "--concurrency",
    { integer = true, min = 1, max = LIMITS.archive_concurrency,
      what = "a whole number from 1 to " .. LIMITS.archive_concurrency })
  if cerr then
    return ctx:usage(cerr)
  end
  local fmt = ctx.fmt
  local upload, uerr = M.upload_settings(a, ctx.getenv)
  if upload == false then
    return ctx:usage(uerr)
  end
  if a.dry_run then
    return archive_plan(ctx, fmt, { start_time = from, end_time = to, dir = a.dir, concurrency = conc,
                                    layout = a.layout, upload = upload }, a.dir)
  end
  local tty = not ctx.quiet and ctx.isatty(ctx.err)
  local bar = progress.new { fh = ctx.quiet and NULL_FH or ctx.err, tty = tty, clock = ctx.clock,
                             columns = tty and (ctx.columns or progress.columns)(ctx.getenv) or nil,
                             upload = upload ~= nil }
  if tty then
    ctx.err:write("listing the recordings...\r") -- until on_plan gives the total
  end
  -- failures so far: downloads whose last answer was an error and that are
  -- not being tried again (the job's summary is what counts at the end); puts: the uploads' URLs, so that the
  -- summary can say which failures were uploads
  local failing, nfailing, puts = {}, 0, {}
  ctx.on_event = function(ev)
    -- GET: a download; PUT: an upload (the bar counts those that the store took)
    if (ev.method ~= "GET" and ev.method ~= "PUT") or not ev.url then
      return
    end
    local was = failing[ev.url]
    if ev.method == "PUT" then
      puts[ev.url] = true
    end
    if ev.type == "request" or ev.type == "retry" then
      failing[ev.url] = nil
    elseif ev.type == "response" then
      failing[ev.url] = (ev.error ~= nil or (ev.status and (ev.status < 200 or ev.status > 299))) or nil
      if ev.method == "PUT" and not failing[ev.url] then
        pcall(bar.uploaded, bar, ev.url)
      end
    end
    if was ~= failing[ev.url] then
      nfailing = nfailing + (failing[ev.url] and 1 or -1)
      pcall(bar.set_failed, bar, nfailing)
    end
  end
  local summary, err = ctx.client:archive_recordings {
    start_time = from, end_time = to, dir = a.dir, concurrency = conc, layout = a.layout, mode = mode,
    lock = ctx.settings.lock, -- the config file's lock = "redis://...": one run across machines
    upload = upload,
    on_file = function(entry)
      pcall(bar.file, bar, entry) -- a display problem must not fail a recording
    end,
    on_plan = function(total)
      pcall(bar.set_total, bar, total) -- the job's own count: the window is paged once
    end,
  }
  bar:set_failed(summary and #(summary.failed or {}) or nfailing)
  bar:finish()
  if not summary then
    return ctx:fail(err)
  end
  local failed = summary.failed or {}
  if upload then
    -- which failures were uploads: the job's own word where it gives one (failed[i].stage), else the uploads
    -- whose last answer was an error: recordings whole locally (now or from an earlier run) not in the store
    local n, staged = 0, false
    for _, e in ipairs(failed) do
      staged = staged or e.stage ~= nil
      n = n + (e.stage == "upload" and 1 or 0)
    end
    if not staged then
      for url in pairs(puts) do
        n = n + (failing[url] and 1 or 0)
      end
    end
    summary.failed_upload = n
  end
  local out = ctx.out
  if fmt and fmt ~= "table" then
    M.archive_result(ctx, fmt, summary, a.dir)
  else
    out:write(M.archive_line(summary, a.dir, upload and a.upload), "\n")
    for _, e in ipairs(failed) do
      out:write(format("failed: id %s, session %s, expires %s: %s\n", output.json_value(e.id),
        tostring(e.sessionId), expiry(e),
        gsub(ctx.redact(type(e.err) == "table" and e.err.message or tostring(e.err)), "[\r\n]+", " ")))
    end
    for _, e in ipairs(summary.expiring or {}) do
      out:write(format("EXPIRING within 24 h: id %s, session %s, expires %s: run the archive again soon\n",
        output.json_value(e.id), tostring(e.sessionId), expiry(e)))
    end
  end
  if #failed > 0 then
    ctx.err:write(format("clicktocall archive: %d recording%s failed; run the same command again to retry them.\n",
      #failed, #failed == 1 and "" or "s"))
    return 5
  end
  return 0
end

function commands.sync(ctx, a)
  local since
  if a.since then
    local s, serr = times.parse(a.since, ctx.now(), false)
    if not s then
      return ctx:usage("--since: " .. serr)
    end
    since = s
  end
  local lookback
  if a.lookback then
    lookback = a.lookback:match("^%d+$") and tonumber(a.lookback)
    if not lookback or lookback > LIMITS.lookback_max then
      return ctx:usage("--lookback: a number of seconds from 0 to " .. LIMITS.lookback_max .. " expected, got "
        .. a.lookback)
    end
  end
  local fmt = ctx.fmt
  if a.dry_run then
    local plan, err = ctx.client:sync { state = a.state, since = since, lookback = lookback, dry_run = true }
    if not plan then
      return ctx:fail(err)
    end
    local row = { dry_run = true, new = plan.new, skipped = plan.skipped, pages = plan.pages,
                  through = plan.through, through_time = clicktocall.format_time(plan.through),
                  state = plan.state }
    if fmt == "json" or fmt == "jsonl" then
      ctx.out:write(output.json_fields(row, { "dry_run", "new", "skipped", "pages", "through", "through_time",
                                              "state" }), "\n")
    elseif fmt and fmt ~= "table" then
      output.object(fmt, ctx.out, row, SYNC_PLAN_COLUMNS)
    else
      ctx.out:write(format("dry run: would write %d new record%s, skip %d (already delivered), in %d page%s; "
        .. "through would move to %s (UTC+8); %s not written\n", plan.new, plan.new == 1 and "" or "s", plan.skipped,
        plan.pages, plan.pages == 1 and "" or "s", row.through_time, tostring(plan.state)))
    end
    return 0
  end
  local w = output.new(fmt or "jsonl", ctx.out)
  local summary, err = ctx.client:sync {
    state = a.state, since = since, lookback = lookback, lock = ctx.settings.lock,
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
  w:finish()
  if not summary then
    return ctx:fail(err)
  end
  ctx:info(format("clicktocall sync: %d new record%s, %d skipped, in %d page%s; through %s (UTC+8) in %s\n",
    summary.delivered or 0, summary.delivered == 1 and "" or "s", summary.skipped or 0, summary.pages or 0,
    summary.pages == 1 and "" or "s", summary.through and clicktocall.format_time(summary.through) or "-",
    tostring(summary.state or a.state)))
  return 0
end

function commands.normalize(ctx, a)
  local fmt = ctx.fmt
  local code, nfailed = 0, 0
  local several = #a.phone > 1
  local w = fmt and fmt ~= "table" and output.rows(fmt, ctx.out, NORMALIZE_COLUMNS)
  for _, phone in ipairs(a.phone) do
    local n, err = clicktocall.normalize_phone(phone, a.country_code)
    local why = not n and gsub(tostring(err and err.message or err), "[.%s]+$", "")
    local shown = gsub(phone, "%c", "?") -- a tab or newline would break the pairing
    if w then
      w:row({ input = phone, output = n or nil, error = why or nil })
    elseif several then
      -- one line an input, in order, so the output pairs with the input line by line
      ctx.out:write(shown, "\t", n or ("error: " .. gsub(why, "%c", " ")), "\n")
    elseif n then
      ctx.out:write(n, "\n")
    else
      ctx.err:write(sentence(format("clicktocall normalize: '%s': %s", shown, why)), "\n")
    end
    if not n then
      code, nfailed = 2, nfailed + 1
    end
  end
  if w then
    w:finish()
  end
  if nfailed > 0 and (several or w) then
    ctx.err:write(format("clicktocall normalize: %d of %d number%s could not be normalized; see %s.\n", nfailed,
      #a.phone, #a.phone == 1 and "" or "s", w and "the error field" or "the lines with \"error:\""))
  end
  return code
end

------------------------------------------------------------------------
-- completion, config init, doctor's output
------------------------------------------------------------------------

--- add_commands(p): the commands about the command itself
function M.add_commands(p)
  local c = p:command("completion", "Print the completion script for bash, zsh or fish.")
  c:argument("shell", "bash, zsh or fish."):choices({ "bash", "zsh", "fish" })

  -- (its target is not "config": that is --config's)
  c = p:command("config", "Write the config file: `clicktocall config init`."):target("config_command")
  local init = c:command("init", "Write the user's config file, mode 600, from the flags (--base-url, " ..
    "--user-data, --timeout, --ca-file, --insecure, --proxy) and the environment (CLICKTOCALL_APP_SECRET and " ..
    "the other CLICKTOCALL_* variables); with --profile NAME as the section [NAME]. Asks nothing. Into " ..
    "--config FILE, CLICKTOCALL_CONFIG or ~/.config/clicktocall/config; another profile's lines are kept.")
  init:summary("Write the config file (mode 600) from the flags and the environment.")
  init:flag("--force", "Replace the profile's lines if the file has them already.")
end

function commands.completion(ctx, a)
  local parser = build_parser()
  ctx.out:write(parser["get_" .. a.shell .. "_complete"](parser))
  return 0
end

RESULTS.config_init = {
  columns = { { "PATH", "path" }, { "PROFILE", "profile" }, { "KEYS", "keys" } },
  object = function(t) return t end,
  human = function(t)
    return format("wrote %s to %s (mode 600): %s; check it with `clicktocall%s doctor`\n",
      t.profile == config.DEFAULT_PROFILE and "the default profile" or ("the profile [" .. t.profile .. "]"),
      t.path, t.keys, t.profile == config.DEFAULT_PROFILE and "" or (" --profile " .. t.profile))
  end,
}

--- config_init(ctx, a, flags) -> exit code: `clicktocall config init`
function M.config_init(ctx, a, flags)
  local getenv = ctx.getenv
  local function env(name)
    local v = getenv(name)
    return v ~= "" and v or nil
  end
  local path = flags.config or env(config.ENV_CONFIG) or config.default_path(getenv)
  if not path then
    return ctx:usage("HOME is not set, so there is no default config file: give --config FILE")
  end
  local profile = flags.profile or env(config.ENV_PROFILE) or config.DEFAULT_PROFILE
  if not match(profile, "^[%w_.%-]+$") then
    return ctx:usage(format("a profile's name is letters, digits, '.', '_' and '-', not '%s'",
      gsub(profile, "%c", "?")))
  end
  local values, written = {}, {}
  for _, key in ipairs(config.ORDER) do
    local v
    if key ~= "app_secret" and flags[key] ~= nil and flags[key] ~= false then
      v = flags[key]
    elseif config.ENV[key] and env(config.ENV[key]) then
      v = env(config.ENV[key])
      local kind = config.KEYS[key]
      if (kind == "number" or kind == "seconds") and not config.number(v, kind) then
        return ctx:usage(format("%s must be %s, not '%s'", config.ENV[key],
          kind == "number" and "a positive number of seconds" or config.WHAT[kind], gsub(v, "%c", "?")))
      end
    end
    if v ~= nil then
      values[key], written[#written + 1] = v, key
    end
  end
  local missing = {}
  local HOW = { base_url = "--base-url or CLICKTOCALL_BASE_URL", user_data = "--user-data or CLICKTOCALL_USER_DATA",
                app_secret = "CLICKTOCALL_APP_SECRET in the environment (never a flag)" }
  for _, key in ipairs({ "base_url", "app_secret", "user_data" }) do
    if values[key] == nil then
      missing[#missing + 1] = key .. " (" .. HOW[key] .. ")"
    end
  end
  if #missing > 0 then
    return ctx:usage("nothing was written: it needs " .. table.concat(missing, ", "))
  end
  local ok, err = config.write_profile(path, profile, values, a.force)
  if not ok then
    ctx:say("clicktocall config init: " .. err)
    return 2
  end
  return ctx:emit("config_init", { path = path, profile = profile, keys = table.concat(written, " ") }, a)
end

--- doctor(ctx, o) -> exit code: doctor's lines, or its checks as csv/json/jsonl rows
function M.doctor(ctx, o)
  local fmt = ctx.fmt
  o.name_of = function(key)
    return ctx:setting_name(key)
  end
  o.explain = function(err)
    return M.argument_message(err, function(field) return ctx:setting_name(field) end)
  end
  if not fmt or fmt == "table" then
    return doctor.run(o)
  end
  local w = output.rows(fmt, ctx.out, DOCTOR_COLUMNS)
  o.report = function(status, check, detail)
    w:row({ check = check, status = status, detail = detail })
  end
  local code = doctor.run(o)
  w:finish()
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
  self:say(M.describe(self.command, err, function(field) return self:setting_name(field) end))
  return M.exit_code(err)
end

--- local_guard_dir(getenv) -> the directory of the local dial guard's claims | nil
-- $XDG_RUNTIME_DIR (per user, emptied at logout), else $XDG_CACHE_HOME, else ~/.cache: one directory for
-- every clicktocall process of the user on this machine.
function M.local_guard_dir(getenv)
  for _, v in ipairs { { "XDG_RUNTIME_DIR", "" }, { "XDG_CACHE_HOME", "" }, { "HOME", "/.cache" } } do
    local d = getenv(v[1])
    if d and d:sub(1, 1) == "/" then
      return d .. v[2] .. "/clicktocall/dials"
    end
  end
  return nil
end

-- The dial guard of `clicktocall dial` (the config file's dial_guard): "local" (the default) keeps the
-- claims in files shared by the user's processes on this machine, "redis://..." in a Redis shared by
-- several machines, "off" nowhere. -> the client's dial_guard | nil, and ctx.dial_guard for messages;
-- or false, sentence.
local function dial_guard(ctx, settings, sources, force)
  if force then
    return nil -- --force: no guard is asked, and no claim is left for a later dial to meet
  end
  local v = settings.dial_guard or "local"
  if v == "off" then
    ctx.dial_guard = { why = "dial_guard = off in " .. tostring(sources.dial_guard) }
    return nil
  end
  local url = v
  if v == "local" then
    local dir = M.local_guard_dir(ctx.getenv)
    if not dir then
      return false, "the local dial guard needs a directory: set HOME (or XDG_RUNTIME_DIR), or write " ..
        "dial_guard = off in the config file to dial unguarded"
    end
    url = "file:" .. dir
  elseif v:sub(1, 8) ~= "redis://" and v:sub(1, 9) ~= "rediss://" then
    -- the value is not echoed: a mistyped Redis address may hold its password
    return false, format("dial_guard in %s must be local, off or redis[s]://[user:password@]host:port[/db]",
      tostring(sources.dial_guard))
  end
  ctx.dial_guard = { hold = settings.dial_guard_hold or DEFAULTS.dial_guard_hold }
  return url
end

-- a library field as the user gave it: a command's argument or option, or a setting
local ARG_NAMES = {
  caller = "CALLER", callee = "CALLEE", phone = "PHONE", seat = "--seat", start_time = "--from",
  end_time = "--to", since = "--since", limit = "--limit", concurrency = "--concurrency", dir = "--dir",
  layout = "--layout", state = "--state", country_code = "--country-code", mode = "--mode",
  ["upload.url"] = "--upload", ["upload.endpoint"] = "--endpoint (or AWS_ENDPOINT_URL)",
  ["upload.region"] = "--region (or AWS_REGION)", ["upload.access_key"] = "AWS_ACCESS_KEY_ID",
  ["upload.secret_key"] = "AWS_SECRET_ACCESS_KEY", ["upload.session_token"] = "AWS_SESSION_TOKEN",
  ["upload.path_style"] = "--path-style", ["upload.keep_local"] = "--no-keep-local",
}
local POSITIONAL = { caller = true, callee = true, phone = true }

function ctx_mt:setting_name(field)
  if self.origins and self.origins[field] then
    return config.setting_name(self.origins, field)
  end
  local name = ARG_NAMES[field]
  if not name then
    return field
  end
  local v = self.args and self.args[field]
  if POSITIONAL[field] and type(v) == "string" then
    return format("%s '%s'", name, gsub(v, "%c", "?"))
  end
  return name
end

-- progress, counts and summaries on stderr: dropped by --quiet
function ctx_mt:info(s)
  if not self.quiet then
    self.err:write(s)
  end
end

--- ctx:emit(kind, value, args) -> 0: a command's one result, for people or as csv/json/jsonl
function ctx_mt:emit(kind, value, a)
  local r = RESULTS[kind]
  local t = r.object(value, a)
  local fmt = self.fmt
  if fmt == nil or fmt == "table" then
    self.out:write(r.human(t))
  else
    output.object(fmt, self.out, t, r.columns)
  end
  return 0
end

-- -v: the rate limit's events (they have no method or URL: nothing was sent)
local RATE_EVENTS = {
  rate_wait = function(ev)
    return format("clicktocall: rate_wait %s: waiting %.3f s for its turn under the rate limit", tostring(ev.op),
      tonumber(ev.delay) or 0)
  end,
  rate_limited = function(ev)
    return format("clicktocall: rate_limited %s: refused by the rate limit, nothing sent; the next may go in %.3f s",
      tostring(ev.op), tonumber(ev.retry_after) or 0)
  end,
  rate_limit_unavailable = function(ev)
    return format("clicktocall: rate_limit_unavailable %s: %s", tostring(ev.op), tostring(ev.error))
  end,
}

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
  -- the object store's keys (archive --upload) are secrets too, wherever they are used
  shared.more = { ctx.getenv("AWS_SECRET_ACCESS_KEY"), ctx.getenv("AWS_SESSION_TOKEN") }
  ctx.redact = function(s) -- the secret may come from the config file later
    s = M.redact(s, shared.secret)
    for i = 1, 2 do
      s = M.redact(s, shared.more[i])
    end
    return s
  end
  ctx.clock = ctx.clock or core.now

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
  ctx.args, ctx.quiet = a, a.quiet
  if a.quiet and a.verbose then
    return ctx:usage("-q (--quiet) and -v (--verbose) cannot be used together")
  end
  -- the output format asked for, for every command: -o, or --format (its older name)
  if a.output and a.format and a.output ~= a.format then
    return ctx:usage(format("-o %s and --format %s disagree; --format is the old name of -o, give one", a.output,
      a.format))
  end
  ctx.fmt = a.output or a.format

  if a.command == "normalize" or a.command == "completion" then
    return commands[a.command](ctx, a)
  end

  local timeout, terr = number_arg(a.timeout, "--timeout", { min = 0.001, what = "a positive number of seconds" })
  if terr then
    return ctx:usage(terr)
  end
  if a.rate_limit_store and find(a.rate_limit_store, "@", 1, true) then
    -- as for dial_guard and lock: a Redis password goes in the config file, never on the command line
    return ctx:usage("--rate-limit-store holds a password, and flags show in `ps` and shell history: write " ..
      "rate_limit_store = redis[s]://... in the config file (chmod 600) instead")
  end
  local wait, werr = number_arg(a.rate_limit_wait, "--rate-limit-wait",
    { min = 0, max = RATE.MAX_WAIT, what = "a number of seconds from 0 to " .. RATE.MAX_WAIT })
  if werr then
    return ctx:usage(werr)
  end
  local flags = { config = a.config, base_url = a.base_url, user_data = a.user_data, timeout = timeout,
    ca_file = a.ca_file, insecure = a.insecure or nil, proxy = a.proxy, profile = a.profile,
    -- --rate-limit is repeatable; as one setting, like the config file's line
    rate_limit = a.rate_limit and #a.rate_limit > 0 and table.concat(a.rate_limit, ",") or nil,
    rate_limit_wait = wait, rate_limit_store = a.rate_limit_store }
  if a.command == "config" then
    ctx.command = "config init"
    return M.config_init(ctx, a, flags)
  end
  local settings, sources, origins = config.resolve(flags, ctx.getenv)
  ctx.origins = origins
  if settings and settings.app_secret then
    shared.secret = settings.app_secret
  end

  if a.command == "doctor" then
    local upload, uerr = M.upload_settings(a, ctx.getenv)
    if upload == false then
      return ctx:usage(uerr)
    end
    return M.doctor(ctx, { settings = settings, sources = sources, upload = upload,
      resolve_err = settings == nil and ctx.redact(sources) or nil, clicktocall = clicktocall,
      out = ctx.out, timeout = settings and settings.timeout, getenv = ctx.getenv })
  end

  if a.command == "archive" and a.verify then
    return M.archive_verify(ctx, a) -- the files on disk only: no settings, no client, no network
  end
  if not settings then
    ctx.err:write(ctx.redact(sources), "\n") -- already a sentence
    return 2
  end
  if NEEDS_CLIENT[a.command] then
    local where = (settings.config_path or "~/.config/clicktocall/config") ..
      (settings.profile and settings.profile ~= config.DEFAULT_PROFILE and (" under [" .. settings.profile .. "]")
       or "")
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
    -- --metrics-file: every call and job through an instrumented client, written when the command ends
    local metrics = a.metrics_file and assert(require("clicktocall.metrics").new())
    local jsonlog = a.log_format == "json" and assert(require("clicktocall.log").json(function(line)
      ctx.err:write(ctx.redact(line), "\n")
    end))
    local guard_url, gerr
    if a.command == "dial" then
      guard_url, gerr = dial_guard(ctx, settings, sources, a.force)
      if guard_url == false then
        return ctx:usage(gerr)
      end
    end
    ctx.settings = settings
    local rate_limit, rerr = M.rate_limit_option(settings, function(key) return ctx:setting_name(key) end)
    if rate_limit == false then
      return ctx:usage(rerr)
    end
    local client, err = clicktocall.new {
      rate_limit = rate_limit,
      dial_guard = guard_url, dial_guard_hold = guard_url and settings.dial_guard_hold or nil,
      base_url = settings.base_url, app_secret = settings.app_secret, user_data = settings.user_data,
      timeout = settings.timeout, ca_file = settings.ca_file, insecure = settings.insecure,
      proxy = settings.proxy, user_agent = "cli",
      transport = ctx.client_options.transport, sleep = ctx.client_options.sleep,
      on_event = function(ev)
        if metrics then
          metrics.on_event(ev)
        end
        if jsonlog then
          jsonlog(ev)
        elseif verbose and RATE_EVENTS[ev.type] then
          ctx.err:write(ctx.redact(RATE_EVENTS[ev.type](ev)), "\n")
        elseif verbose then
          ctx.err:write(ctx.redact(format("clicktocall: %s %s %s%s%s%s%s%s\n", ev.type, tostring(ev.method),
            tostring(ev.url), ev.status and (" " .. ev.status) or "",
            ev.attempt and (" attempt " .. ev.attempt) or "",
            type(ev.elapsed) == "number" and format(" (%.3f s)", ev.elapsed) or "",
            ev.error and (": " .. tostring(type(ev.error) == "table" and ev.error.message or ev.error)) or "",
            type(ev.delay) == "number" and format("; again in %.3f s", ev.delay) or "")))
        end
        if ctx.on_event then
          ctx.on_event(ev)
        end
      end,
    }
    if not client then
      local why = guard_url and err and err.field == "dial_guard" and match(tostring(err.message), "dial_guard: (.*)$")
      if why then
        -- the guard could not be set up: say which setting to change, not the library's field
        return ctx:usage(format("the dial guard (%s) could not be set up, so nothing was sent: %s; fix it, " ..
          "write dial_guard = off in the config file, or pass --force", settings.dial_guard or "local",
          gsub(why, "[.%s]+$", "")))
      end
      if rate_limit and err and err.field == "rate_limit" then
        return ctx:usage(format("the rate limit could not be set up (%s): %s",
          ctx:setting_name(rate_limit.store and "rate_limit_store" or "rate_limit"),
          gsub(gsub(tostring(err.message), "^[%w_.]+: rate_limit%.store: ", ""), "[.%s]+$", "")))
      end
      return ctx:fail(err)
    end
    ctx.client = metrics and metrics:instrument(client) or client
    local code = commands[a.command](ctx, a)
    client:close()
    if metrics then
      local wrote, merr = metrics:write_textfile(a.metrics_file)
      if not wrote then
        ctx.err:write(sentence(ctx.redact(format("clicktocall %s: %s", a.command, merr.message))), "\n")
        return code ~= 0 and code or 1
      end
    end
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
  local msg = M.redact("clicktocall: unexpected error (please report it): " ..
    (type(code) == "table" and tostring(code.message or code.kind) or tostring(code)), shared.secret)
  for i = 1, 2 do
    msg = M.redact(msg, shared.more and shared.more[i])
  end
  stderr:write(sentence(msg), "\n")
  return 1
end

return M
