-- ctcsim_util: shared helpers of the click-to-call provider simulator.
-- No state lives here: all mutable state is in the lua_shared_dict "ctcsim". The provider's rules (envelope,
-- calendar, constants) are the library's clicktocall.provider_rules, shared with clicktocall.mock.
local cjson = require "cjson.safe"
local rules = require "clicktocall.provider_rules"

local ngx = ngx
local type, tonumber, pcall, error = type, tonumber, pcall, error
local floor, huge = math.floor, math.huge
local concat = table.concat

local M = {}

M.dict = ngx.shared.ctcsim
M.rules = rules
M.PAGE = rules.PAGE
M.RECORDING_TTL = rules.RECORDING_TTL
M.JSON_CT = rules.JSON_CT

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

M.ok_body, M.err_body = rules.ok_body, rules.err_body
M.parse_time, M.fmt_time, M.to_epoch = rules.parse_time, rules.format_time, rules.to_epoch

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
