--- Times on the command line: "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd", "now", or
-- an age before now ("7d", "24h", "30m", "90s", "2w"). Dates and times are read
-- on the provider's clock (UTC+8) whatever the machine's time zone, so a cron job
-- in UTC and an operator in Shanghai mean the same window.
local floor = math.floor
local tonumber = tonumber
local match = string.match
local format = string.format

local M = { _VERSION = require("clicktocall.core")._VERSION }

M.OFFSET = 8 * 3600 -- the provider's clock: UTC+8

local UNIT = { s = 1, m = 60, h = 3600, d = 86400, w = 7 * 86400 }

-- days since 1970-01-01 of a civil date (proleptic Gregorian)
local function days_from_civil(y, m, d)
  if m <= 2 then
    y = y - 1
  end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function days_in_month(y, m)
  if m == 2 then
    local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
    return leap and 29 or 28
  end
  return (m == 4 or m == 6 or m == 9 or m == 11) and 30 or 31
end

local function civil(y, mo, d, h, mi, s)
  y, mo, d, h, mi, s = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(s)
  if y < 1970 or mo < 1 or mo > 12 or d < 1 or d > days_in_month(y, mo) or h > 23 or mi > 59 or s > 59 then
    return nil
  end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - M.OFFSET
end

M.days_from_civil = days_from_civil

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

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
                 Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

--- http_date("Tue, 01 Dec 2026 11:46:03 GMT") -> Unix seconds | nil (RFC 9110 IMF-fixdate)
function M.http_date(s)
  local d, mon, y, h, mi, sec = match(s or "", "^%a+, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d or not MONTHS[mon] then
    return nil
  end
  return days_from_civil(tonumber(y), MONTHS[mon], tonumber(d)) * 86400 + tonumber(h) * 3600 +
         tonumber(mi) * 60 + tonumber(sec)
end

return M
