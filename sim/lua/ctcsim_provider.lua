-- ctcsim_provider: the provider's four API calls, answered by clicktocall.provider_rules (the rules the mock
-- uses too) over the simulator's store. Each handler takes the raw request body and returns the JSON
-- response body (always HTTP 200: the provider reports errors in meta).
local util = require "ctcsim_util"
local store = require "ctcsim_store"

local ngx = ngx
local tostring, tonumber = tostring, tonumber
local rules = util.rules

local M = {}

local function bind(ud, seat, phone)
  local ok, err = store.bind(ud, seat, phone)
  if not ok then return nil, "系统繁忙 (simulator state full: " .. tostring(err) .. ")" end
  return true
end

-- the store of the rules (see clicktocall.provider_rules) for one request; base: where recordings live
local function store_for(base)
  return {
    known = store.is_known, bind = bind, bound_phone = store.bound_phone, balance = store.balance,
    dial = store.dial, now = util.now,
    page = function(ud, after, t0, t1, limit, now)
      -- ids count from 1 here: none is above a cursor past 2^53
      local n = rules.key_number(after)
      if not n then return {} end
      return store.query(ud, n, t0, t1, limit, base, now)
    end,
    stuck_record = function(key, ud, now)
      return store.synthetic_record(tonumber(key), ud, base, now)
    end,
  }
end

-- opts.base: where recordings live; opts.stuck: the stuck_ids fault
local function handler(op)
  return function(body, opts)
    return rules.answer(op, { authorization = ngx.var.http_authorization, auth = util.config.auth,
      body = util.decode(body), raw = body, null = util.null, stuck = opts.stuck }, store_for(opts.base))
  end
end

M.routes = {}
for path, op in pairs(rules.PATHS) do
  M.routes[path] = handler(op)
end

return M
