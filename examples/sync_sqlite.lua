-- Keep an SQLite table in step with the provider's call records: run it from cron as often as you like.
--
--   lua5.4 examples/sync_sqlite.lua DATABASE STATE_FILE
--   CLICKTOCALL_BASE_URL, CLICKTOCALL_APP_SECRET, CLICKTOCALL_USER_DATA   (required, as for the
--   clicktocall command; sim/README.md shows the values that point them at the bundled simulator)
--   CLICKTOCALL_SINCE   first run only: where to start (Unix seconds or "yyyy-MM-dd HH:mm:ss"; default
--   24 h ago)
--
-- Needs lua-sql-sqlite3 (Debian: apt install lua-sql-sqlite3). Each record is stored by id with an upsert:
-- delivery is at least once (a run cut short delivers its last page again), so storing twice must be
-- harmless. Every run prints one line; it exits 0 on success, 6 when another run holds the state, 2 on a
-- usage or setting error (nothing was done), 1 else.

local db_path, state_path = arg[1], arg[2]
if not db_path or not state_path then
  io.stderr:write("usage: sync_sqlite.lua DATABASE STATE_FILE\n")
  os.exit(2)
end

-- The settings come from the environment only, never from a default (examples/settings.lua says why).
local settings = dofile((arg[0]:match("^(.*/)") or "") .. "settings.lua")

local env = settings { "CLICKTOCALL_BASE_URL", "CLICKTOCALL_APP_SECRET", "CLICKTOCALL_USER_DATA" }
local clicktocall = require "clicktocall"
local luasql = require "luasql.sqlite3"

local function die(what, err, code)
  io.stderr:write(what, ": ", tostring(err), "\n")
  os.exit(code or 1)
end

local client, cerr = clicktocall.new {
  base_url = env.CLICKTOCALL_BASE_URL,
  app_secret = env.CLICKTOCALL_APP_SECRET,
  user_data = env.CLICKTOCALL_USER_DATA,
}
if not client then die("clicktocall.new", cerr, 2) end

local sqlite = luasql.sqlite3()
local con, derr = sqlite:connect(db_path)
if not con then die("open " .. db_path, derr) end

local function exec(sql)
  local ok, err = con:execute(sql)
  if not ok then die("sqlite", err) end
  if type(ok) ~= "number" then ok:close() end -- a statement that returns rows gives a cursor
end

exec [[CREATE TABLE IF NOT EXISTS call_records (
  id            TEXT PRIMARY KEY,  -- text: ids may pass 2^53
  session_id    TEXT,
  caller        TEXT,
  callee        TEXT,
  call_end_time TEXT,              -- provider clock (UTC+8), as sent
  duration      INTEGER,
  recording_url TEXT,
  synced_at     INTEGER
)]]

local function q(v)
  if v == nil then return "NULL" end
  return "'" .. con:escape(tostring(v)) .. "'"
end

local function id_text(id)
  if math.type and math.type(id) == "integer" then return string.format("%d", id) end
  if type(id) == "number" then return string.format("%.0f", id) end
  return tostring(id)
end

local now = os.time()
local since = os.getenv("CLICKTOCALL_SINCE")
if since and since:match("^%d+$") then since = tonumber(since) end

-- Each upsert commits by itself (WAL keeps that cheap): sync writes its state after each page, so a
-- transaction held across pages could be lost in a crash while the state had moved past it.
-- on_record failing stops the run; the state keeps what was stored, and the next run stores the rest.
exec "PRAGMA journal_mode = WAL"
local summary, err = client:sync {
  state = state_path,
  since = since,
  on_record = function(rec)
    local ok, e = con:execute(("INSERT INTO call_records (id, session_id, caller, callee, call_end_time, duration,"
      .. " recording_url, synced_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %d)"
      .. " ON CONFLICT(id) DO UPDATE SET session_id = excluded.session_id, caller = excluded.caller,"
      .. " callee = excluded.callee, call_end_time = excluded.call_end_time, duration = excluded.duration,"
      .. " recording_url = excluded.recording_url, synced_at = excluded.synced_at")
      :format(q(id_text(rec.id)), q(rec.sessionId), q(rec.callerNum), q(rec.calleeNum), q(rec.callEndTime),
              tonumber(rec.duration) and ("%d"):format(tonumber(rec.duration)) or "NULL",
              q(rec.recordFileDownloadUrl), now))
    if not ok then return nil, e end
    return true
  end,
}
if not summary then
  die("sync", err, err.kind == "busy" and 6 or 1)
end
local cur = con:execute("SELECT count(*) FROM call_records")
local rows = cur:fetch()
cur:close()
local function plural(n, word)
  return n .. " " .. word .. (n == 1 and "" or "s")
end
print(("sync: %s in %s (%d skipped), %s in %s, through %s (UTC+8)"):format(plural(summary.delivered, "new record"),
  plural(summary.pages, "page"), summary.skipped, plural(rows, "row"), db_path,
  clicktocall.format_time(summary.through)))
con:close()
sqlite:close()
