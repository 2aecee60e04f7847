-- ctcsim_provider: the provider's four API calls. Each handler takes the raw request body
-- and returns the JSON response body (always HTTP 200: the provider reports errors in meta).
local util = require "ctcsim_util"
local store = require "ctcsim_store"

local ngx = ngx
local type, tostring = type, tostring

local M = {}

local err_body, ok_body, encode = util.err_body, util.ok_body, util.encode

-- Authorization: base64(app secret), no scheme prefix.
-- optional = true: a missing header is accepted (dial), a wrong one never is.
local function check_auth(optional)
  local v = ngx.var.http_authorization
  if v == nil or v == "" then
    if optional then return true end
    return nil, "Authorization 不能为空 (missing Authorization header)"
  end
  if v ~= util.config.auth then
    return nil, "Authorization 验证失败 (wrong Authorization)"
  end
  return true
end

-- parse the JSON object body; returns table or nil, message
local function parse(body)
  local v = util.decode(body)
  if type(v) ~= "table" then return nil, "请求参数格式错误，需为JSON对象 (request body must be a JSON object)" end
  if v[1] ~= nil then return nil, "请求参数格式错误，需为JSON对象 (request body must be a JSON object)" end
  return v
end

-- required non-empty string fields; returns nil, message on the first bad one
local function need_strings(req, names)
  for i = 1, #names do
    local name = names[i]
    local v = req[name]
    if v == nil or v == util.null or v == "" then
      return nil, name .. " 不能为空 (" .. name .. " is required)"
    end
    if type(v) ~= "string" then
      return nil, name .. " 必须为字符串 (" .. name .. " must be a string)"
    end
  end
  return true
end

local function valid_phone(s)
  return s:match("^%+%d%d%d%d%d%d%d+$") ~= nil and #s <= 20
end

local function known_customer(ud)
  if not store.is_known(ud) then return nil, "客户标识不存在 (unknown userData)" end
  return true
end

-- POST /management/add/setingphone {userData, setingNbr, userPhone}
function M.bind(body)
  local ok, msg = check_auth(false)
  if not ok then return err_body(msg) end
  local req; req, msg = parse(body)
  if not req then return err_body(msg) end
  ok, msg = need_strings(req, { "userData", "setingNbr", "userPhone" })
  if not ok then return err_body(msg) end
  ok, msg = known_customer(req.userData)
  if not ok then return err_body(msg) end
  if not valid_phone(req.userPhone) then
    return err_body("绑定号码格式错误，应为国家码+号码，如+8613500000002 (bad userPhone format)")
  end
  ok, msg = store.bind(req.userData, req.setingNbr, req.userPhone)
  if not ok then return err_body("系统繁忙 (simulator state full: " .. tostring(msg) .. ")") end
  return ok_body(encode("绑定成功"))
end

-- POST /rest/voiceCall/api {callerNbr, calleeNbr, userData, setingNbr}
function M.dial(body)
  local ok, msg = check_auth(true)
  if not ok then return err_body(msg) end
  local req; req, msg = parse(body)
  if not req then return err_body(msg) end
  ok, msg = need_strings(req, { "callerNbr", "calleeNbr", "userData", "setingNbr" })
  if not ok then return err_body(msg) end
  ok, msg = known_customer(req.userData)
  if not ok then return err_body(msg) end
  if not valid_phone(req.calleeNbr) then
    return err_body("被叫号码格式错误 (bad calleeNbr format)")
  end
  local bound = store.bound_phone(req.userData, req.setingNbr)
  if not bound then
    return err_body("座席未绑定主叫号码 (seat " .. req.setingNbr .. " is not bound)")
  end
  if bound ~= req.callerNbr then
    return err_body("主叫号码与座席绑定号码不一致 (callerNbr is not the seat's bound phone)")
  end
  local sid; sid, msg = store.dial(req.userData, req.setingNbr, req.callerNbr, req.calleeNbr)
  if not sid then return err_body(msg) end
  return ok_body(encode(sid))
end

-- POST /call/record/voice {maxId, starTime, endTime, userData}
-- opts.stuck: answer a full page whose ids do not advance past maxId
function M.records(body, opts)
  local ok, msg = check_auth(false)
  if not ok then return err_body(msg) end
  local req; req, msg = parse(body)
  if not req then return err_body(msg) end
  ok, msg = need_strings(req, { "starTime", "endTime", "userData" })
  if not ok then return err_body(msg) end
  local max_id = 0
  if req.maxId ~= nil and req.maxId ~= util.null then
    max_id = util.to_int(req.maxId)
    if not max_id then return err_body("maxId 必须为整数 (maxId must be an integer)") end
    if max_id < 0 then max_id = 0 end
  end
  local t0 = util.parse_time(req.starTime)
  if not t0 then return err_body("starTime 格式错误，应为 yyyy-MM-dd HH:mm:ss (bad starTime)") end
  local t1 = util.parse_time(req.endTime)
  if not t1 then return err_body("endTime 格式错误，应为 yyyy-MM-dd HH:mm:ss (bad endTime)") end
  ok, msg = known_customer(req.userData)
  if not ok then return err_body(msg) end
  local base = opts.base
  local recs
  if opts.stuck then
    recs = {}
    for i = 1, util.PAGE do
      local id = max_id >= util.PAGE and (max_id - util.PAGE + i) or max_id
      recs[i] = store.synthetic_record(id, req.userData, base)
    end
  elseif max_id >= 2 ^ 53 then
    recs = {}
  else
    recs = store.query(req.userData, max_id, t0, t1, util.PAGE, base)
  end
  return ok_body("[" .. table.concat(recs, ",") .. "]")
end

-- POST /management/customer/isallow {userData}
function M.balance(body)
  local ok, msg = check_auth(false)
  if not ok then return err_body(msg) end
  local req; req, msg = parse(body)
  if not req then return err_body(msg) end
  ok, msg = need_strings(req, { "userData" })
  if not ok then return err_body(msg) end
  ok, msg = known_customer(req.userData)
  if not ok then return err_body(msg) end
  return ok_body(encode(store.balance(req.userData)))
end

M.routes = {
  ["/management/add/setingphone"] = M.bind,
  ["/rest/voiceCall/api"] = M.dial,
  ["/call/record/voice"] = M.records,
  ["/management/customer/isallow"] = M.balance,
}

-- the "wrong_data" fault: meta.success true, data of the wrong type for that call
M.wrong_data = {
  ["/management/add/setingphone"] = ok_body("12345"),
  ["/rest/voiceCall/api"] = ok_body("324874486"),
  ["/call/record/voice"] = ok_body('"no records"'),
  ["/management/customer/isallow"] = ok_body('"6152"'),
}

return M
