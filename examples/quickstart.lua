-- clicktocall quick start: bind a seat, dial, check the balance, read today's
-- call records and download a recording.
--
--   CTC_BASE_URL, CTC_APP_SECRET, CTC_USER_DATA   (default: the bundled simulator's)
--   CTC_SEAT, CTC_AGENT_PHONE, CTC_CUSTOMER_PHONE (default: demo values)
--
-- Run it with `make demo`, or against your account:
--   CTC_BASE_URL=https://... CTC_APP_SECRET=... CTC_USER_DATA=... lua5.4 examples/quickstart.lua
local clicktocall = require "clicktocall"

local env = function(name, default) return os.getenv(name) or default end
local seat = env("CTC_SEAT", "PP7568032251")
local agent = env("CTC_AGENT_PHONE", "139 1833 7711")     -- rings first
local customer = env("CTC_CUSTOMER_PHONE", "0755-28000123") -- rings when the agent answers

-- Errors are values: stop the demo with the error's own sentence.
local function check(value, err, what)
  if value == nil then
    io.stderr:write(what, " failed: ", tostring(err), "\n")
    os.exit(1)
  end
  return value
end

local client = check(clicktocall.new {
  base_url = env("CTC_BASE_URL", "http://127.0.0.1:18080"),
  app_secret = env("CTC_APP_SECRET", "TEST"),
  user_data = env("CTC_USER_DATA", "4e2239c5-a6e6-4201-a072-8342e29c3ae3"),
}, nil, "clicktocall.new")

-- 1. The agent's phone must be bound to the seat before it can dial.
local bound, bind_err = client:bind_seat { seat = seat, phone = agent }
check(bound, bind_err, "bind_seat")
print(("bound seat      %s -> %s"):format(seat, clicktocall.normalize_phone(agent)))

-- 2. Dial: the platform rings the agent, then the customer. Keep the session id.
local before, balance_err = client:balance()
check(before, balance_err, "balance")
local session, err = client:dial { caller = agent, callee = customer, seat = seat }
if not session then
  -- err.sent tells whether the call may have been placed anyway: never retry blindly
  check(nil, err, "dial")
end
print(("dialled         session %s"):format(session))
local after = check(client:balance(), nil, "balance")
print(("balance         %d s before, %d s after"):format(before, after))

-- 3. Today's records (provider clock, UTC+8), page by page behind one iterator.
local now = os.time()
local today = clicktocall.format_time(now):sub(1, 10)
local ours, count = nil, 0
local ok, iter_err = pcall(function()
  for rec in client:records { start_time = today .. " 00:00:00", end_time = now + 86400 } do
    count = count + 1
    if rec.sessionId == session then ours = rec end
  end
end)
check(ok or nil, iter_err, "records")
print(("records         %d today; ours: id %s, %s -> %s, %s s, recorded %s"):format(count,
  ours and ours.id or "?", ours and ours.callerNum or "?", ours and ours.calleeNum or "?",
  ours and ours.duration or "?", ours and ours.recordFlag or "?"))

-- 4. Recordings are kept 7 days: archive them. The file appears whole or not at all.
if ours and ours.recordFlag == "1" then
  local path = (os.getenv("TMPDIR") or "/tmp") .. "/clicktocall-" .. ours.sessionId .. ".wav"
  local saved, info = client:download_recording(ours, path)
  check(saved, info, "download_recording")
  print(("recording       %s (%d bytes, sha256 %s...)"):format(path, info.bytes, info.sha256:sub(1, 16)))
end
client:close()
