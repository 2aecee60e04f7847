-- Keep a PostgreSQL table in step with the provider's call records: run it from cron as often as you like.
--
--   lua5.4 examples/sync_postgres.lua STATE_FILE
--   CLICKTOCALL_BASE_URL, CLICKTOCALL_APP_SECRET, CLICKTOCALL_USER_DATA   (required, as for the
--   clicktocall command; sim/README.md shows the values that point them at the bundled simulator)
--   CLICKTOCALL_POSTGRES   (required) the database, as libpq takes it: a URI, postgresql://ctc@db.internal/crm,
--   or key=value pairs, "host=/run/postgresql dbname=crm user=ctc"; the password from PGPASSWORD or ~/.pgpass
--   (never in the URI: cron mails and `ps` show the environment of a failing job)
--   CLICKTOCALL_SINCE   first run only: where to start (Unix seconds or "yyyy-MM-dd HH:mm:ss"; default
--   24 h ago)
--
-- Needs lua-sql-postgres (Debian: apt install lua-sql-postgres). The table and its indexes are created on the
-- first run. Each record is stored by id with an upsert (INSERT ... ON CONFLICT (id) DO UPDATE), a page's
-- records in one transaction: delivery is at least once (a run cut short delivers its last page again), so
-- storing twice must be harmless. Every run
-- prints one line; it exits 0 on success, 6 when another run holds the state, 2 on a usage or setting error
-- (nothing was done), 1 else.

local state_path = arg[1]
if not state_path then
  io.stderr:write("usage: sync_postgres.lua STATE_FILE\n")
  os.exit(2)
end

-- The settings come from the environment only, never from a default (examples/settings.lua says why).
local settings = dofile((arg[0]:match("^(.*/)") or "") .. "settings.lua")

local env = settings { "CLICKTOCALL_BASE_URL", "CLICKTOCALL_APP_SECRET", "CLICKTOCALL_USER_DATA",
                       "CLICKTOCALL_POSTGRES" }
local clicktocall = require "clicktocall"
local luasql = require "luasql.postgres"

local function die(what, err, code)
  -- one line: libpq's messages run over several
  io.stderr:write(what, ": ", (tostring(err):gsub("%s+$", ""):gsub("%s*\n%s*", " ")), "\n")
  os.exit(code or 1)
end

local client, cerr = clicktocall.new {
  base_url = env.CLICKTOCALL_BASE_URL,
  app_secret = env.CLICKTOCALL_APP_SECRET,
  user_data = env.CLICKTOCALL_USER_DATA,
}
if not client then die("clicktocall.new", cerr, 2) end

-- libpq reads a URI or key=value pairs given as the database name (PQsetdbLogin)
local pg = luasql.postgres()
local con, derr = pg:connect(env.CLICKTOCALL_POSTGRES)
if not con then die("could not connect to CLICKTOCALL_POSTGRES", derr) end

local function exec(sql)
  local ok, err = con:execute(sql)
  if not ok then die("postgres", err) end
  if type(ok) ~= "number" then ok:close() end -- a statement that returns rows gives a cursor
end

-- What a CRM asks: "the call of this session" (the session id the dial returned) and "the calls of the last
-- hour" (by end time); the primary key answers "is this record stored".
exec [[CREATE TABLE IF NOT EXISTS call_records (
  id            bigint PRIMARY KEY,
  session_id    text,
  caller        text,
  callee        text,
  call_end_time timestamptz,         -- the provider's callEndTime (its clock is UTC+8) as a point in time
  duration      integer,
  recording_url text,
  synced_at     timestamptz NOT NULL DEFAULT now()
)]]
exec "CREATE INDEX IF NOT EXISTS call_records_session_id ON call_records (session_id)"
exec "CREATE INDEX IF NOT EXISTS call_records_call_end_time ON call_records (call_end_time)"

local function q(v)
  if v == nil then return "NULL" end
  return "'" .. con:escape(tostring(v)) .. "'"
end

local function id_text(id)
  if math.type and math.type(id) == "integer" then return string.format("%d", id) end
  if type(id) == "number" then return string.format("%.0f", id) end
  return tostring(id)
end

-- "yyyy-MM-dd HH:mm:ss" on the provider's clock -> a timestamptz literal; anything else is stored as NULL
local function end_time(s)
  if type(s) == "string" and s:match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$") then
    return q(s .. "+08")
  end
  return "NULL"
end

local since = os.getenv("CLICKTOCALL_SINCE")
if since and since:match("^%d+$") then since = tonumber(since) end

-- A transaction a page: BEGIN at the page's first record, COMMIT in on_page, which sync calls after the page's
-- records and before it writes the page into its state. A crash or a failure before the COMMIT leaves neither
-- the rows nor the state (PostgreSQL rolls back a transaction whose connection goes), so the next run
-- delivers the page again; one after it delivers the page again too, and the upsert makes that harmless.
local in_page = false
local summary, err = client:sync {
  state = state_path,
  since = since,
  on_record = function(rec)
    if not in_page then
      local ok, e = con:execute("BEGIN")
      if not ok then return nil, e end
      in_page = true
    end
    local ok, e = con:execute(("INSERT INTO call_records (id, session_id, caller, callee, call_end_time, duration,"
      .. " recording_url) VALUES (%s, %s, %s, %s, %s, %s, %s)"
      .. " ON CONFLICT (id) DO UPDATE SET session_id = excluded.session_id, caller = excluded.caller,"
      .. " callee = excluded.callee, call_end_time = excluded.call_end_time, duration = excluded.duration,"
      .. " recording_url = excluded.recording_url, synced_at = now()")
      :format(q(id_text(rec.id)), q(rec.sessionId), q(rec.callerNum), q(rec.calleeNum), end_time(rec.callEndTime),
              tonumber(rec.duration) and ("%d"):format(tonumber(rec.duration)) or "NULL",
              q(rec.recordFileDownloadUrl)))
    if not ok then return nil, e end
    return true
  end,
  on_page = function()
    if not in_page then return true end -- every record of the page was stored before: nothing to commit
    in_page = false
    local ok, e = con:execute("COMMIT")
    if not ok then return nil, e end
    return true
  end,
}
if not summary then
  die("sync", err, err.kind == "busy" and 6 or 1)
end
local cur = assert(con:execute("SELECT count(*) FROM call_records"))
local rows = tonumber(cur:fetch())
cur:close()
local function plural(n, word)
  return n .. " " .. word .. (n == 1 and "" or "s")
end
print(("sync: %s in %s (%d skipped), %s in call_records, through %s (UTC+8)"):format(
  plural(summary.delivered, "new record"), plural(summary.pages, "page"), summary.skipped, plural(rows, "row"),
  clicktocall.format_time(summary.through)))
con:close()
pg:close()
