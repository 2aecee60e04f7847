-- Keep every recording of the last days on disk before the provider drops it (7 days after the call).
-- Run it from cron (hourly is good: a failure gets many more chances before it expires):
--
--   lua5.4 examples/archive_recordings.lua DIR [DAYS]     (DAYS: the window, default 2)
--   CTC_BASE_URL, CTC_APP_SECRET, CTC_USER_DATA   (default: the bundled simulator's)
--
-- A re-run downloads only what is missing (the manifest in DIR says what is whole there). Prints one
-- line; each failure on stderr, those expiring within 24 h first. Exit 0: all there; 5: some failed
-- (run again soon); 6: another archive holds DIR; 1: the job could not run.
local clicktocall = require "clicktocall"

local dir, days = arg[1], tonumber(arg[2] or "2")
if not dir or not days or days <= 0 then
  io.stderr:write("usage: archive_recordings.lua DIR [DAYS]\n")
  os.exit(2)
end

local function env(name, default) return os.getenv(name) or default end

local client, cerr = clicktocall.new {
  base_url = env("CTC_BASE_URL", "http://127.0.0.1:18080"),
  app_secret = env("CTC_APP_SECRET", "TEST"),
  user_data = env("CTC_USER_DATA", "4e2239c5-a6e6-4201-a072-8342e29c3ae3"),
}
if not client then
  io.stderr:write("clicktocall.new: ", tostring(cerr), "\n")
  os.exit(2)
end

local now = os.time()
local summary, err = client:archive_recordings {
  start_time = now - math.floor(days * 86400), end_time = now, dir = dir, concurrency = 4,
}
if not summary then
  io.stderr:write("archive: ", tostring(err), "\n")
  os.exit(err.kind == "busy" and 6 or 1)
end
print(("archive: %d downloaded (%d bytes), %d already there, %d without a recording, %d failed (%d expiring) in %s")
  :format(summary.downloaded, summary.bytes, summary.skipped, summary.no_recording, #summary.failed,
          #summary.expiring, dir))
for _, f in ipairs(summary.expiring) do
  io.stderr:write(("EXPIRING %s (id %s) before %s: %s\n"):format(tostring(f.sessionId), tostring(f.id),
    os.date("!%Y-%m-%d %H:%M UTC", f.expires_at), tostring(f.err)))
end
for _, f in ipairs(summary.failed) do
  io.stderr:write(("failed %s (id %s): %s\n"):format(tostring(f.sessionId), tostring(f.id), tostring(f.err)))
end
client:close()
os.exit(#summary.failed > 0 and 5 or 0)
