-- ctcsim_util: shared helpers of the click-to-call provider simulator.
-- No state lives here: all mutable state is in the lua_shared_dict "ctcsim".
local cjson = require "cjson.safe"

local ngx = ngx
local type, tonumber, tostring, pcall, error = type, tonumber, tostring, pcall, error
local floor, huge = math.floor, math.huge
local concat = table.concat

local M = {}

M.dict = ngx.shared.ctcsim
M.CST = 8 * 3600                 -- the provider's clock is UTC+8
M.PAGE = 100                     -- records per page
M.RECORDING_TTL = 7 * 86400      -- recordings are kept 7 days after the call's end
M.JSON_CT = "application/json;charset=UTF-8"

cjson.encode_number_precision(14)
cjson.decode_max_depth(64)

-- JSON --------------------------------------------------------------------

-- cjson escapes "/" as "\/"; undo that so URLs read naturally ("\\\/" -> "\\/" stays correct).
function M.encode(v)
  local s, err = cjson.encode(v)
  if not s then return nil, err end
  return (s:gsub("\\/", "/"))
end

function M.decode(s)
  if type(s) ~= "string" or s == "" then return nil, "empty body" end
  local v, err = cjson.decode(s)
  if v == nil then return nil, err or "invalid JSON" end
  return v
end

M.null = cjson.null

-- encode a Lua array (sequence) of values as a JSON array, also when empty
function M.encode_array(list)
  local parts = {}
  for i = 1, #list do
    local s = M.encode(list[i])
    if not s then s = "null" end
    parts[i] = s
  end
  return "[" .. concat(parts, ",") .. "]"
end

-- the provider's envelope
function M.ok_body(data_json)
  return '{"meta":{"success":true,"message":"ok"},"data":' .. data_json .. '}'
end

function M.err_body(message)
  return '{"meta":{"success":false,"message":' .. M.encode(tostring(message)) .. '},"data":""}'
end

-- time ----------------------------------------------------------------------

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local MDAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

-- "yyyy-MM-dd HH:mm:ss" in UTC+8 -> Unix seconds, or nil
function M.parse_time(s)
  if type(s) ~= "string" then return nil end
  local Y, Mo, D, h, mi, se = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d) (%d%d):(%d%d):(%d%d)$")
  if not Y then return nil end
  Y, Mo, D, h, mi, se = tonumber(Y), tonumber(Mo), tonumber(D), tonumber(h), tonumber(mi), tonumber(se)
  if Y < 1900 or Mo < 1 or Mo > 12 or D < 1 or h > 23 or mi > 59 or se > 59 then return nil end
  local md = MDAYS[Mo]
  if Mo == 2 and ((Y % 4 == 0 and Y % 100 ~= 0) or Y % 400 == 0) then md = 29 end
  if D > md then return nil end
  return days_from_civil(Y, Mo, D) * 86400 + h * 3600 + mi * 60 + se - M.CST
end

-- accepts a provider time string or a number of Unix seconds
function M.to_epoch(v)
  if type(v) == "number" then
    if v ~= v or v == huge or v == -huge or v < -2208988800 or v > 253402300799 then return nil end
    return floor(v)
  end
  return M.parse_time(v)
end

-- Unix seconds -> "yyyy-MM-dd HH:mm:ss" in UTC+8 (pure arithmetic: JIT-friendly, unlike os.date)
local fmt = string.format
function M.fmt_time(t)
  t = floor(t) + M.CST
  local days = floor(t / 86400)
  local secs = t - days * 86400
  local z = days + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return fmt("%04d-%02d-%02d %02d:%02d:%02d", y, m, d, floor(secs / 3600), floor(secs % 3600 / 60), secs % 60)
end

-- the simulator's clock: real time + the offset set through /_sim/clock
function M.now()
  return ngx.now() + (M.dict:get("clock_offset") or 0)
end

-- config (read once from the environment at init; immutable afterwards) --------

local config = {}
M.config = config

function M.load_config()
  config.secret = os.getenv("CTC_SIM_SECRET") or "TEST"
  config.user_data = os.getenv("CTC_SIM_USER_DATA") or "4e2239c5-a6e6-4201-a072-8342e29c3ae3"
  config.balance = tonumber(os.getenv("CTC_SIM_BALANCE") or "") or 6152
  config.auth = ngx.encode_base64(config.secret)
end

-- cross-worker lock (shared dict "add" is atomic) -----------------------------

function M.with_lock(fn, ...)
  local dict = M.dict
  for _ = 1, 5000 do
    local ok = dict:add("__lock", true, 5)
    if ok then
      local pok, a, b = pcall(fn, ...)
      dict:delete("__lock")
      if not pok then error(a, 0) end
      return a, b
    end
    ngx.sleep(0.001)
  end
  error("simulator lock timeout", 0)
end

-- responses -----------------------------------------------------------------

function M.send(status, body, ctype, headers)
  ngx.status = status
  ngx.header["Content-Type"] = ctype or M.JSON_CT
  ngx.header["Content-Length"] = #body
  if headers then
    for k, v in pairs(headers) do ngx.header[k] = v end
  end
  ngx.print(body)
  return ngx.exit(ngx.OK)
end

function M.send_json(status, value)
  local body = M.encode(value) or '{"error":"encode failed"}'
  return M.send(status, body, M.JSON_CT)
end

-- the request body as a string (also when nginx buffered it to a temp file)
function M.read_body()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return data end
  local file = ngx.req.get_body_file()
  if not file then return "" end
  local fh = io.open(file, "rb")
  if not fh then return "" end
  data = fh:read("*a") or ""
  fh:close()
  return data
end

-- integers from JSON (numbers or numeric strings); nil when not an integer in range
function M.to_int(v, lo, hi)
  if type(v) == "string" then v = tonumber(v) end
  if type(v) ~= "number" or v ~= v or v == huge or v == -huge then return nil end
  v = floor(v)
  if (lo and v < lo) or (hi and v > hi) then return nil end
  return v
end

function M.base_url()
  local host = ngx.var.http_host
  if not host or host == "" or host:find("[%s/]") then
    host = ngx.var.server_addr .. ":" .. ngx.var.server_port
  end
  return (ngx.var.scheme or "http") .. "://" .. host
end

return M
