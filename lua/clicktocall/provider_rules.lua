--- clicktocall.provider_rules: the provider's rules, written once for clicktocall.mock and the simulator (sim/).
--
-- Pure Lua (5.1-5.4, LuaJIT; no C core, no lua-cjson: JSON text by clicktocall.json), so that it also runs
-- inside nginx. The callers
-- keep their own storage and transport; this module holds what the provider decides:
--   the request checks (Authorization, a JSON object, required strings, phones, a known customer) and their
--   bilingual messages, in the provider's order; the answer envelope; the paging rule (100 a page, ids above
--   maxId compared exactly as digit strings, so a cursor past 2^53 pages on as the provider's 64-bit ids do);
--   the stuck_ids fault; the recording's lifetime (7 days after callEndTime, then 410); the calendar (UTC+8);
--   the fields a record derives from its number; the shared fault vocabulary and the bodies of those faults.
--
--   rules.answer(op, call, store) -> the JSON body of a provider call (HTTP 200: errors are in meta)
--     op     "bind_seat" | "dial" | "balance" | "records_page"
--     call   { authorization = header value or nil, auth = the expected value or nil (not checked),
--              body = the decoded body or nil, raw = the raw body, null = the decoder's null, stuck = bool }
--     store  known(ud) -> bool; bind(ud, seat, phone) -> true | nil, err; bound_phone(ud, seat);
--            balance(ud) -> n; dial(ud, seat, caller, callee) -> sessionId | nil, message (the store checks
--            rules.refuse_dial(balance) and charges rules.charge(balance, duration) atomically);
--            page(ud, after_key, t0, t1, limit, now) -> { record JSON text, ... }: the records of ud whose
--              id is above after_key, callEndTime in [t0, t1] and listed(t_end, delay, now), ascending by id;
--            stuck_record(key, ud, now) -> the JSON text of a made-up record with that id;
--            now() -> the provider's clock, Unix seconds

local type = type
local tonumber = tonumber
local tostring = tostring
local floor = math.floor
local ceil = math.ceil
local huge = math.huge
local math_type = math.type -- nil before 5.3
local format = string.format
local match = string.match
local sub = string.sub
local rep = string.rep
local char = string.char
local byte = string.byte
local concat = table.concat
local ipairs = ipairs

local json = require "clicktocall.json"

local LIMITS = require "clicktocall.limits"

local M = { _VERSION = require "clicktocall.version" }

M.PAGE = LIMITS.page_size         -- records per page
M.CST = 8 * 3600                  -- the provider's clock is UTC+8
M.RECORDING_TTL = LIMITS.recording_ttl -- a recording is kept 7 days after the call ended
M.SESSION_BASE = 300000000        -- a sessionId ends in SESSION_BASE + the record's number
M.PENDING_BASE = 900000000        -- ... or, for a record still waiting for its id (ids = "at_hangup"), this + n
M.JSON_CT = "application/json;charset=UTF-8"
M.HTML_CT = "text/html;charset=UTF-8"

-- the wire paths and the op each one serves
M.PATHS = {
  ["/management/add/setingphone"] = "bind_seat",
  ["/rest/voiceCall/api"] = "dial",
  ["/management/customer/isallow"] = "balance",
  ["/call/record/voice"] = "records_page",
}

-- each call's required string fields, in the order the provider checks them
M.FIELDS = {
  bind_seat = { "userData", "setingNbr", "userPhone" },
  dial = { "callerNbr", "calleeNbr", "userData", "setingNbr" },
  balance = { "userData" },
  records_page = { "starTime", "endTime", "userData" },
}

-- the provider's fixed messages
local MSG = {
  missing_auth = "Authorization 不能为空 (missing Authorization header)",
  wrong_auth = "Authorization 验证失败 (wrong Authorization)",
  not_object = "请求参数格式错误，需为JSON对象 (request body must be a JSON object)",
  unknown_customer = "客户标识不存在 (unknown userData)",
  bad_user_phone = "绑定号码格式错误，应为国家码+号码，如+8613500000002 (bad userPhone format)",
  bad_callee = "被叫号码格式错误 (bad calleeNbr format)",
  wrong_caller = "主叫号码与座席绑定号码不一致 (callerNbr is not the seat's bound phone)",
  no_balance = "余额不足，无法呼叫 (balance used up)",
  bad_max_id = "maxId 必须为整数 (maxId must be an integer)",
  bad_star = "starTime 格式错误，应为 yyyy-MM-dd HH:mm:ss (bad starTime)",
  bad_end = "endTime 格式错误，应为 yyyy-MM-dd HH:mm:ss (bad endTime)",
  bound = "绑定成功",
  expired = "录音文件已过期 (the recording expired 7 days after the call)",
  busy = "系统繁忙，请稍后再试",
}
M.MSG = MSG

function M.msg_required(name)
  return name .. " 不能为空 (" .. name .. " is required)"
end

function M.msg_not_string(name)
  return name .. " 必须为字符串 (" .. name .. " must be a string)"
end

function M.msg_unbound(seat)
  return "座席未绑定主叫号码 (seat " .. seat .. " is not bound)"
end

--------------------------------------------------------------------------
-- JSON text (the provider's: "/" unescaped)
--------------------------------------------------------------------------

local json_string = json.encode
M.json_string = json_string

function M.ok_body(data_json)
  return '{"meta":{"success":true,"message":"ok"},"data":' .. data_json .. "}"
end

function M.err_body(message)
  return '{"meta":{"success":false,"message":' .. json_string(tostring(message)) .. '},"data":""}'
end

--------------------------------------------------------------------------
-- the calendar: "yyyy-MM-dd HH:mm:ss" in UTC+8 (arithmetic only: os.date depends on the machine's zone)
--------------------------------------------------------------------------

local function days_from_civil(y, m, d)
  if m <= 2 then
    y = y - 1
  end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local doy = floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy - 719468
end

local MDAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

--- rules.parse_time(s) -> Unix seconds, or nil (years 1900..9999)
function M.parse_time(s)
  if type(s) ~= "string" then
    return nil
  end
  local y, mo, d, hh, mi, ss = match(s, "^(%d%d%d%d)%-(%d%d)%-(%d%d) (%d%d):(%d%d):(%d%d)$")
  if not y then
    return nil
  end
  y, mo, d, hh, mi, ss = tonumber(y), tonumber(mo), tonumber(d), tonumber(hh), tonumber(mi), tonumber(ss)
  if y < 1900 or mo < 1 or mo > 12 or d < 1 or hh > 23 or mi > 59 or ss > 59 then
    return nil
  end
  local md = MDAYS[mo]
  if mo == 2 and ((y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0) then
    md = 29
  end
  if d > md then
    return nil
  end
  return days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - M.CST
end

--- rules.format_time(unix) -> "yyyy-MM-dd HH:mm:ss" in UTC+8
function M.format_time(t)
  t = floor(t) + M.CST
  local days = floor(t / 86400)
  local secs = t - days * 86400
  local z = days + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return format("%04d-%02d-%02d %02d:%02d:%02d", y, m, d, floor(secs / 3600), floor(secs % 3600 / 60), secs % 60)
end

--- rules.to_epoch(v) -> Unix seconds from a provider time or a number of seconds (1900..9999), or nil
function M.to_epoch(v)
  if type(v) == "number" then
    if v ~= v or v < -2208988800 or v > 253402300799 then
      return nil
    end
    return floor(v)
  end
  return M.parse_time(v)
end

--------------------------------------------------------------------------
-- ids: strings of digits, compared exactly (an id past 2^53 stays exact on every Lua)
--------------------------------------------------------------------------

--- rules.id_key(v) -> the id as a digit string without leading zeros (from a number or digits), or nil
function M.id_key(v)
  if type(v) == "string" then
    return (match(v, "^0*(%d+)$"))
  end
  if type(v) ~= "number" or v ~= v or v < 0 or v >= huge then
    return nil
  end
  if math_type and math_type(v) == "integer" then
    return tostring(v)
  end
  return format("%.0f", floor(v))
end

function M.key_less(a, b)
  if #a ~= #b then
    return #a < #b
  end
  return a < b
end

--- rules.key_incr(k) -> the next id's key
function M.key_incr(k)
  local i = #k
  while i > 0 and sub(k, i, i) == "9" do
    i = i - 1
  end
  if i == 0 then
    return "1" .. rep("0", #k)
  end
  return sub(k, 1, i - 1) .. char(byte(k, i) + 1) .. rep("0", #k - i)
end

--- rules.key_number(k) -> the key as a Lua number when that is exact (a double up to 2^53), else nil
function M.key_number(k)
  local n = tonumber(k)
  if n and (#k < 16 or M.id_key(n) == k) then
    return n
  end
  return nil
end

--- rules.max_id_key(req, raw, null) -> the maxId cursor as a key ("0" when absent or negative), or nil,
-- message. The digits are read from the raw text, so a cursor past 2^53 stays exact.
function M.max_id_key(req, raw, null)
  local v = req.maxId
  if v == nil or v == null then
    return "0"
  end
  local digits = type(raw) == "string" and match(raw, '"maxId"%s*:%s*(%-?%d+)%s*[,}]')
  if digits then
    return sub(digits, 1, 1) == "-" and "0" or M.id_key(digits)
  end
  if type(v) == "string" then
    local key = M.id_key(v) -- digits in a string: exact too
    if key then
      return key
    end
    v = tonumber(v)
  end
  if type(v) ~= "number" or v ~= v or v == huge or v == -huge then
    return nil, MSG.bad_max_id
  end
  return v < 0 and "0" or M.id_key(v)
end

--- rules.stuck_keys(after_key) -> the ids of the stuck_ids fault's page: a full page whose ids never pass
-- maxId (the 100 ids up to it, or maxId 100 times when it is below 100), so a client that trusts it loops
function M.stuck_keys(after_key)
  local m = tonumber(after_key)
  local out = {}
  for i = 1, M.PAGE do
    out[i] = M.id_key(m >= M.PAGE and m - M.PAGE + i or m)
  end
  return out
end

--- rules.listed(t_end, delay, now) -> whether a record is listed yet (a delay of 0 lists it whatever the clock)
function M.listed(t_end, delay, now)
  return delay == nil or delay == 0 or now >= t_end + delay
end

--- rules.expired(t_end, now) -> whether a recording is gone (410)
function M.expired(t_end, now)
  return now > t_end + M.RECORDING_TTL
end

--------------------------------------------------------------------------
-- records: the fields derived from a record's number
--------------------------------------------------------------------------

--- a dialled call's talk time, from its number
function M.dial_duration(n)
  return 10 + (n * 7) % 50
end

--- a seeded record's talk time, from its number
function M.seed_duration(n)
  return 10 + (n * 7919) % 290
end

--- the balance after a call of `dur` seconds
function M.charge(balance, dur)
  local b = balance - dur
  return b < 0 and 0 or b
end

--- nil, or the refusal of a dial at this balance
function M.refuse_dial(balance)
  if balance <= 0 then
    return MSG.no_balance
  end
  return nil
end

--- rules.session_number(n, waiting) -> the number a sessionId ends in
function M.session_number(n, waiting)
  return (waiting and M.PENDING_BASE or M.SESSION_BASE) + n
end

--- rules.record_fields(n, t_end, dur) -> a record's fields derived from its number n (< 2^53), its end time
-- and talk time: the seat and phones, the three times, duration and callmin
function M.record_fields(n, t_end, dur)
  return {
    setingNbr = format("PP%010d", 7568000000 + n % 1000),
    direction = "0",
    callerNum = format("+86138%08d", n % 100000000),
    calleeNum = format("+86139%08d", (n * 7) % 100000000),
    callOutAnswerTime = M.format_time(t_end - dur - 8),
    fwdAnswerTime = M.format_time(t_end - dur),
    callEndTime = M.format_time(t_end),
    duration = tostring(dur),
    callmin = ceil(dur / 60),
  }
end

--- a dialled call's times: the agent answers after 3 s, the customer after 8 s, then they talk for dur
function M.dial_times(now, dur)
  return now + 3, now + 8, now + 8 + dur
end

--- the record fields in the order the provider writes them
M.RECORD_FIELDS = {
  "id", "sessionId", "userData", "setingNbr", "direction", "callerNum", "calleeNum", "callEndTime",
  "callOutAnswerTime", "fwdAnswerTime", "recordFlag", "recordFileDownloadUrl", "duration", "callmin",
}

--------------------------------------------------------------------------
-- the checks and the four calls
--------------------------------------------------------------------------

local function valid_phone(s)
  return type(s) == "string" and match(s, "^%+%d%d%d%d%d%d%d+$") ~= nil and #s <= 20
end
M.valid_phone = valid_phone

--- rules.check_auth(value, want, optional) -> true | nil, message (Authorization is base64(secret), no scheme;
-- optional: the dial may omit it, but a wrong one is refused everywhere)
function M.check_auth(value, want, optional)
  if not want then
    return true
  end
  if value == nil or value == "" then
    if optional then
      return true
    end
    return nil, MSG.missing_auth
  end
  if value ~= want then
    return nil, MSG.wrong_auth
  end
  return true
end

--- rules.need_strings(req, names, null) -> true | nil, message about the first missing or non-string one
function M.need_strings(req, names, null)
  for i = 1, #names do
    local name = names[i]
    local v = req[name]
    if v == nil or v == null or v == "" then
      return nil, M.msg_required(name)
    end
    if type(v) ~= "string" then
      return nil, M.msg_not_string(name)
    end
  end
  return true
end

-- the checks every call makes first: -> the request table, or nil, message
local function checked(op, call, store)
  local ok, msg = M.check_auth(call.authorization, call.auth, op == "dial")
  if not ok then
    return nil, msg
  end
  local req = call.body
  if type(req) ~= "table" or req[1] ~= nil then
    return nil, MSG.not_object
  end
  ok, msg = M.need_strings(req, M.FIELDS[op], call.null)
  if not ok then
    return nil, msg
  end
  -- records_page checks its cursor and times before the customer
  if op ~= "records_page" and not store.known(req.userData) then
    return nil, MSG.unknown_customer
  end
  return req
end

local calls = {}

function calls.bind_seat(req, _, store)
  if not valid_phone(req.userPhone) then
    return M.err_body(MSG.bad_user_phone)
  end
  local ok, err = store.bind(req.userData, req.setingNbr, req.userPhone)
  if not ok then
    return M.err_body(err)
  end
  return M.ok_body(json_string(MSG.bound))
end

function calls.dial(req, _, store)
  if not valid_phone(req.calleeNbr) then
    return M.err_body(MSG.bad_callee)
  end
  local bound = store.bound_phone(req.userData, req.setingNbr)
  if not bound then
    return M.err_body(M.msg_unbound(req.setingNbr))
  end
  if bound ~= req.callerNbr then
    return M.err_body(MSG.wrong_caller)
  end
  local sid, msg = store.dial(req.userData, req.setingNbr, req.callerNbr, req.calleeNbr)
  if not sid then
    return M.err_body(msg)
  end
  return M.ok_body(json_string(sid))
end

function calls.balance(req, _, store)
  return M.ok_body(json.encode(store.balance(req.userData)))
end

function calls.records_page(req, call, store)
  local after, msg = M.max_id_key(req, call.raw, call.null)
  if not after then
    return M.err_body(msg)
  end
  local t0 = M.parse_time(req.starTime)
  if not t0 then
    return M.err_body(MSG.bad_star)
  end
  local t1 = M.parse_time(req.endTime)
  if not t1 then
    return M.err_body(MSG.bad_end)
  end
  if not store.known(req.userData) then
    return M.err_body(MSG.unknown_customer)
  end
  local now = floor(store.now())
  local out
  if call.stuck then
    out = {}
    for i, key in ipairs(M.stuck_keys(after)) do
      out[i] = store.stuck_record(key, req.userData, now)
    end
  elseif t0 > t1 then
    out = {}
  else
    out = store.page(req.userData, after, t0, t1, M.PAGE, now)
  end
  return M.ok_body("[" .. concat(out, ",") .. "]")
end

--- rules.answer(op, call, store) -> the body of the provider's answer to a POST of that op (see the top)
function M.answer(op, call, store)
  local req, msg = checked(op, call, store)
  if not req then
    return M.err_body(msg)
  end
  return calls[op](req, call, store)
end

--------------------------------------------------------------------------
-- answers outside the envelope, and the faults both backends share
--------------------------------------------------------------------------

M.STATUS_TEXT = {
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [429] = "Too Many Requests", [500] = "Internal Server Error", [502] = "Bad Gateway",
  [503] = "Service Temporarily Unavailable", [504] = "Gateway Time-out",
}

--- the HTML page of an error status (as nginx in front of the provider writes it)
function M.status_page(status)
  local text = M.STATUS_TEXT[status] or "Error"
  return "<html><head><title>" .. status .. " " .. text .. "</title></head><body><center><h1>" .. status .. " "
    .. text .. "</h1></center><hr><center>nginx</center></body></html>\n"
end

local function error_page(now, status, err, path, message)
  return '{"timestamp":' .. json_string(M.format_time(now)) .. ',"status":' .. status .. ',"error":'
    .. json_string(err) .. (message and ',"message":' .. json_string(message) or "") .. ',"path":'
    .. json_string(path) .. "}"
end

--- 404: an unknown path, or a recording that is not there
function M.not_found_body(path, now)
  return error_page(now, 404, "Not Found", path)
end

--- 410: a recording past its 7 days
function M.gone_body(path, now)
  return error_page(now, 410, "Gone", path, MSG.expired)
end

M.METHOD_NOT_ALLOWED = '{"status":405,"error":"Method Not Allowed"}'

--- the provider's answer to a call with another method than POST
function M.wrong_method_body(method)
  return M.err_body("Request method '" .. method .. "' not supported")
end

-- Faults that both the mock and the simulator inject, by the same names (the mock: provider:fail(op, name);
-- the simulator: POST /_sim/fault {kind = name}). Each is the set of ops it applies to (true: every op).
M.FAULTS = {
  bad_json = "api",          -- 200 with an HTML page instead of JSON
  truncated = true,          -- the answer cut to half, Content-Length saying so
  no_meta = "api",           -- 200 with a JSON object without the envelope
  wrong_data = "api",        -- meta.success true, data of the wrong type for that call
  api_error = "api",         -- meta.success false with a message (default rules.MSG.busy)
  stuck_ids = "records_page",
  cut = "download",          -- Content-Length of the whole recording, half of it sent
  reset_after_send = true,   -- served (a dial is placed), then the connection closed without an answer
}

M.BAD_JSON_BODY = "<html><head><title>Welcome</title></head><body><h1>It works!</h1>"
  .. "<p>This is not JSON.</p></body></html>\n"
M.NO_META_BODY = '{"success":true,"data":"ok","timestamp":1700000000000}'

local WRONG_DATA = {
  bind_seat = M.ok_body("12345"),
  dial = M.ok_body("324874486"),
  records_page = M.ok_body('"no records"'),
  balance = M.ok_body('"6152"'),
}

--- the wrong_data fault's answer to an op
function M.wrong_data_body(op)
  return WRONG_DATA[op]
end

--- the truncated fault: the first half of the answer
function M.truncate(body)
  return sub(body, 1, floor(#body / 2))
end

return M
