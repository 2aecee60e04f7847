-- Keep every recording of the last days on disk before the provider drops it (7 days after the call).
-- Run it from cron (hourly is good: a failure gets many more chances before it expires):
--
--   lua5.4 examples/archive_recordings.lua DIR [DAYS]     (DAYS: the window, default 2)
--   CLICKTOCALL_BASE_URL, CLICKTOCALL_APP_SECRET, CLICKTOCALL_USER_DATA   (required, as for the
--   clicktocall command; sim/README.md shows the values that point them at the bundled simulator)
--
-- A re-run downloads only what is missing (the manifest in DIR says what is whole there). Prints one
-- line; each failure on stderr, those expiring within 24 h first. Exit 0: all there; 5: some failed
-- (run again soon); 6: another archive holds DIR; 2: a usage or setting error (nothing was done);
-- 1: the job could not run.

local dir, days = arg[1], tonumber(arg[2] or "2")
if not dir or not days or days <= 0 then
  io.stderr:write("usage: archive_recordings.lua DIR [DAYS]\n")
  os.exit(2)
end

-- The settings come from the environment only, never from a default (examples/settings.lua says why).
local settings = dofile((arg[0]:match("^(.*/)") or "") .. "settings.lua")

local env = settings { "CLICKTOCALL_BASE_URL", "CLICKTOCALL_APP_SECRET", "CLICKTOCALL_USER_DATA" }
local clicktocall = require "clicktocall"

local client, cerr = clicktocall.new {
  base_url = env.CLICKTOCALL_BASE_URL,
  app_secret = env.CLICKTOCALL_APP_SECRET,
  user_data = env.CLICKTOCALL_USER_DATA,
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
