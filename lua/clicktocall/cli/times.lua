--- Times on the command line: "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd", "now", or
-- an age before now ("7d", "24h", "30m", "90s", "2w"). Dates and times are read
-- on the provider's clock (UTC+8) whatever the machine's time zone, so a cron job
-- in UTC and an operator in Shanghai mean the same window.
local tonumber = tonumber
local match = string.match
local format = string.format

local core = require "clicktocall.core"

local M = { _VERSION = core._VERSION }

M.OFFSET = 8 * 3600 -- the provider's clock: UTC+8

local UNIT = { s = 1, m = 60, h = 3600, d = 86400, w = 7 * 86400 }

-- "yyyy-MM-dd HH:mm:ss" on the provider's clock -> Unix seconds; the core does
-- the calendar (leap years, days in a month) for the whole library
local function civil(y, mo, d, h, mi, s)
  return (core.parse_time(format("%s-%s-%s %02d:%02d:%02d", y, mo, d, tonumber(h), tonumber(mi), tonumber(s))))
end

local HELP = 'use "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd", "now" or an age such as 7d, 24h, 30m'

--- parse(s, now [, end_of_day]) -> Unix seconds | nil, message
-- A bare date is the start of that day, or its last second when end_of_day is
-- true (so "--from 2026-11-30 --to 2026-11-30" is that whole day).
function M.parse(s, now, end_of_day)
  if type(s) ~= "string" then
    return nil, "a time is required (" .. HELP .. ")"
  end
  local t = match(s, "^%s*(.-)%s*$")
  if t == "now" then
    return now
  end
  local n, unit = match(t, "^(%d+)%s*([smhdw])$")
  if n then
    return now - tonumber(n) * UNIT[unit]
  end
  local y, mo, d, h, mi, sec = match(t, "^(%d%d%d%d)%-(%d%d)%-(%d%d)[ T](%d%d):(%d%d):(%d%d)$")
  if y then
    local v = civil(y, mo, d, h, mi, sec)
    if v then
      return v
    end
    return nil, format("'%s' is not a real date and time", s)
  end
  y, mo, d = match(t, "^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if y then
    local v = civil(y, mo, d, 0, 0, 0)
    if v then
      return end_of_day and v + 86399 or v
    end
    return nil, format("'%s' is not a real date", s)
  end
  return nil, format("'%s' is not a time I understand (%s)", s, HELP)
end

--- http_date("Tue, 01 Dec 2026 11:46:03 GMT") -> Unix seconds | nil (RFC 9110, all three forms)
function M.http_date(s)
  return core.http_date(s)
end

return M
