-- clicktocall.dial_guard: refuse the same caller/callee/seat dial within a window, across all nginx workers.
--
-- A second click on the same "call" button must not ring the agent twice. The guard claims a key in a
-- lua_shared_dict with dict:add(), which is atomic across workers: when two workers race, exactly one add
-- succeeds and the other sees "exists".
--
--   -- nginx.conf:  lua_shared_dict clicktocall_dials 1m;
--   local guard, err = require("clicktocall.dial_guard").new("clicktocall_dials", 10)
--   local claim, err, kind = guard:check(caller, callee, seat, user_data) -- a claim, or nil + a sentence + a kind
--   guard:release(caller, callee, seat, user_data, claim)                -- forget the claim (the dial never left)
--
-- Key: "ctc:dial:" .. #user_data .. ":" .. user_data .. "|" .. caller .. "|" .. callee .. "|" .. seat
-- (user_data "" when not given). Two customers of one deployment dialling the same pair on the same seat are
-- two dials, so user_data is part of the key; its length comes first because user_data may hold "|", while
-- caller and callee are normalized numbers ("+86...") that never do, and seat comes last. The value is the
-- time of the claim (ngx.now()), so a refusal can say how long ago the first dial was placed; the key expires
-- after `window` seconds.
--
-- When the dict is full, dict:add() evicts the least recently used items (it reports "forcible"), which is
-- fine: old claims go first. If it cannot store the key even then ("no memory"), the guard lets the dial go
-- and logs nothing: refusing every dial because a dict is too small would stop all calls, whereas the guard
-- only protects against a double click. Size the dict generously (1m holds several thousand claims).
--
-- Several machines: new("redis://host:port[/db]", window, { fail_open =, timeout = }) keeps the same claims
-- in Redis (see the section near the end); check() then returns the claim's token, which release() takes as
-- its fifth argument so that it deletes only that claim. It works outside nginx too (LuaSocket).

local ngx = ngx
local type = type
local tostring = tostring
local error = error
local setmetatable = setmetatable
local str_format = string.format
local math_floor = math.floor
local sub = string.sub

local redis_mod = require "clicktocall.redis"

-- The guard works without the C core (a bare nginx may use it alone); with it, it carries the core's version.
local has_core, core = pcall(require, "clicktocall.core")
local _M = { _VERSION = has_core and core._VERSION or nil }

local mt = { __index = _M }

local KEY_PREFIX = "ctc:dial:"

local function _now()
  ngx.update_time()
  return ngx.now()
end

local function _key(caller, callee, seat, user_data)
  if type(caller) ~= "string" or type(callee) ~= "string" or type(seat) ~= "string" then
    error("bad argument to dial_guard (caller, callee and seat must be strings)", 3)
  end
  if user_data == nil then
    user_data = ""
  elseif type(user_data) ~= "string" then
    error("bad argument to dial_guard (user_data must be a string or nil)", 3)
  end
  return KEY_PREFIX .. #user_data .. ":" .. user_data .. "|" .. caller .. "|" .. callee .. "|" .. seat
end
_M._key = _key -- for specs outside nginx

local function check_window(window)
  if type(window) ~= "number" or window <= 0 or window ~= window or window == math.huge then
    return "the dial guard window must be a positive number of seconds, not " .. tostring(window)
  end
  return nil
end

local redis_guard -- below: the same guard with its claims in Redis

--- new(dict_name | "redis://host:port[/db]", window_seconds [, opts]) -> guard | nil, err_string
-- opts (Redis only): fail_open = false (Redis unreachable: let the dial go), timeout = 3 (seconds per command).
function _M.new(dict_name, window, opts)
  if type(dict_name) == "string" and sub(dict_name, 1, 8) == "redis://" then
    return redis_guard(dict_name, window, opts or {})
  end
  if type(ngx) ~= "table" or type(ngx.shared) ~= "table" then
    return nil, "the dial guard needs OpenResty/ngx_lua (there is no ngx.shared here), or a redis:// address"
  end
  if type(dict_name) ~= "string" or dict_name == "" then
    return nil, "the dial guard needs the name of a lua_shared_dict or a redis://host:port[/db] address"
  end
  local dict = ngx.shared[dict_name]
  if not dict then
    return nil, "there is no lua_shared_dict named " .. dict_name ..
                "; add \"lua_shared_dict " .. dict_name .. " 1m;\" to the http block of nginx.conf"
  end
  local werr = check_window(window)
  if werr then
    return nil, werr
  end
  return setmetatable({ dict = dict, dict_name = dict_name, window = window }, mt)
end

local function refusal(caller, callee, seat, ago)
  if ago < 0 then
    ago = 0
  end
  return str_format("a dial from %s to %s on seat %s was placed %.1f s ago; pass force = true to dial anyway",
                    caller, callee, seat, ago)
end

--- guard:check(caller, callee, seat [, user_data]) -> claim | nil, sentence, kind
-- Claims the key atomically; a claim already held within the window refuses the dial (kind "duplicate").
-- The claim (true here, a token in Redis) goes back to release().
function _M.check(self, caller, callee, seat, user_data)
  local key = _key(caller, callee, seat, user_data)
  local now = _now()
  local ok, err = self.dict:add(key, now, self.window)
  if ok then
    return true
  end
  if err ~= "exists" then
    -- "no memory" even after evicting: let the dial go (see the header).
    return true
  end
  local placed = self.dict:get(key)
  local ago = type(placed) == "number" and math_floor((now - placed) * 10 + 0.5) / 10 or 0
  return nil, refusal(caller, callee, seat, ago), "duplicate"
end

--- guard:release(caller, callee, seat [, user_data [, claim]]) -> true
-- Forgets the claim, so that a retry click is not blocked by a dial that never left.
function _M.release(self, caller, callee, seat, user_data)
  self.dict:delete(_key(caller, callee, seat, user_data))
  return true
end

--------------------------------------------------------------------------
-- the guard in Redis: several nginx machines (or plain Lua processes) share the claims
--------------------------------------------------------------------------
--
-- SET key token NX PX window claims the key for exactly one of the racing hosts; Redis expires it. The
-- token is new for every claim (clicktocall.redis.token()), so release() deletes the key only while it holds
-- OUR token (compare-and-delete): a slow dial whose claim expired and was taken by a later click never frees
-- that later claim. When Redis cannot be asked, the dial is refused (kind "network", nothing sent): the guard
-- exists to stop double calls, and a silent pass would let them through on every host at once. fail_open
-- lets it go instead, for those who prefer a possible double call to a refused one.

local Redis = {}
local redis_mt = { __index = Redis }

redis_guard = function(url, window, opts)
  local werr = check_window(window)
  if werr then
    return nil, werr
  end
  local timeout = opts.timeout or 3
  local r, err = redis_mod.new(url, timeout)
  if not r then
    return nil, err
  end
  return setmetatable({ redis = r, url = url, window = window, ms = math_floor(window * 1000 + 0.5),
                        fail_open = opts.fail_open == true }, redis_mt)
end

function Redis.check(self, caller, callee, seat, user_data)
  local key = _key(caller, callee, seat, user_data)
  local token = redis_mod.token()
  local ok, err = self.redis:set_nx(key, token, self.ms)
  if ok then
    return token
  end
  if ok == nil then
    if self.fail_open then
      return true -- nothing claimed, nothing to release
    end
    return nil, "the dial guard could not ask Redis, so the dial was not sent (dial_guard_fail_open = true " ..
                "would send it unguarded): " .. tostring(err), "network"
  end
  -- held: how long ago the claim was made, from what is left of its window
  local left = self.redis:pttl(key)
  local ago = (type(left) == "number" and left >= 0) and math_floor((self.ms - left) / 100 + 0.5) / 10 or 0
  return nil, refusal(caller, callee, seat, ago), "duplicate"
end

function Redis.release(self, caller, callee, seat, user_data, claim)
  local key = _key(caller, callee, seat, user_data)
  if type(claim) == "string" then
    -- a failure here leaves the claim to expire by itself at the end of the window
    self.redis:delete_if(key, claim)
  end
  return true
end

return _M
