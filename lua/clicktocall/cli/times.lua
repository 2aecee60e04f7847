--- Times on the command line: "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd", "now", an
-- age before now ("7d", "24h", "30m", "90s", "2w"), ISO 8601 with a zone
-- ("2026-12-05T02:00:00Z", "...+08:00") or Unix seconds (all digits). Dates and
-- times without a zone are read on the provider's clock (UTC+8) whatever the
-- machine's time zone, so a cron job in UTC and an operator in Shanghai mean the
-- same window.
local tonumber = tonumber
local match = string.match
local format = string.format

local core = require "clicktocall.core"

local M = { _VERSION = require "clicktocall.version" }

-- seconds the provider's clock is ahead of UTC, as the core reads its times (UTC+8)
local OFFSET = -core.parse_time("1970-01-01 00:00:00")

local UNIT = { s = 1, m = 60, h = 3600, d = 86400, w = 7 * 86400 }

-- "yyyy-MM-dd HH:mm:ss" on the provider's clock -> Unix seconds; the core does
-- the calendar (leap years, days in a month) for the whole library
local function civil(y, mo, d, h, mi, s)
  return (core.parse_time(format("%s-%s-%s %02d:%02d:%02d", y, mo, d, tonumber(h), tonumber(mi), tonumber(s))))
end

local HELP = 'use "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd", "now", an age such as 7d, 24h, 30m, ' ..
  'ISO 8601 with a zone such as 2026-12-05T02:00:00Z, or Unix seconds'

-- Unix seconds before this (2000-01-01 UTC) are taken for a mistake: "7" is
-- far likelier a forgotten unit than 1970-01-01 00:00:07
M.UNIX_MIN = 946684800
M.UNIX_MAX = require("clicktocall.limits").time_max -- 9999-12-31 23:59:59 on the provider's clock

-- "Z", "+08:00", "+0800", "-05" -> seconds east of UTC | nil
local function zone_offset(z)
  if z == "Z" or z == "z" then
    return 0
  end
  local sign, hh, mm = match(z, "^([+-])(%d%d):?(%d?%d?)$")
  if not sign or (mm ~= "" and #mm ~= 2) then
    return nil
  end
  local h, m = tonumber(hh), tonumber(mm ~= "" and mm or "0")
  if h > 23 or m > 59 then
    return nil
  end
  return (sign == "-" and -1 or 1) * (h * 3600 + m * 60)
end

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
  if match(t, "^%d+$") then
    local v = tonumber(t)
    if v > M.UNIX_MAX then
      return nil, format("'%s' read as Unix seconds is past the year 9999", s)
    elseif v < M.UNIX_MIN then
      return nil, format("'%s' read as Unix seconds is before the year 2000; for an age add a unit (%sd, %sh, " ..
        "%sm)", s, t, t, t)
    end
    return v
  end
  local y, mo, d, h, mi, sec, frac, zone = match(t,
    "^(%d%d%d%d)%-(%d%d)%-(%d%d)[ Tt](%d%d):(%d%d):(%d%d)([.,]?%d*)%s*([Zz+-]?[%d:]*)$")
  -- a fraction is ".123", ignored: the provider counts whole seconds
  if y and frac ~= "" and not match(frac, "^[.,]%d+$") then
    y = nil
  end
  if y and zone ~= "" then
    local off = zone_offset(zone)
    local v = off and civil(y, mo, d, h, mi, sec)
    if v then
      return v + OFFSET - off
    end
    return nil, format("'%s' is not a real date and time with a zone (such as 2026-12-05T02:00:00Z or " ..
      "2026-12-05T10:00:00+08:00)", s)
  end
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
