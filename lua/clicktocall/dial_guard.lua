-- clicktocall.dial_guard: refuse the same caller/callee/seat dial within a window, across all nginx workers.
--
-- A second click on the same "call" button must not ring the agent twice. The guard claims a key in a
-- lua_shared_dict with dict:add(), which is atomic across workers: when two workers race, exactly one add
-- succeeds and the other sees "exists".
--
--   -- nginx.conf:  lua_shared_dict clicktocall_dials 1m;
--   local guard, err = require("clicktocall.dial_guard").new("clicktocall_dials", 10)
--   local ok, err = guard:check(caller, callee, seat, user_data) -- true, or nil + a sentence (kind "duplicate")
--   guard:release(caller, callee, seat, user_data)             -- forget the claim (the dial never left)
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

local ngx = ngx
local type = type
local tostring = tostring
local error = error
local setmetatable = setmetatable
local str_format = string.format
local math_floor = math.floor

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

--- new(dict_name, window_seconds) -> guard | nil, err_string
function _M.new(dict_name, window)
  if type(ngx) ~= "table" or type(ngx.shared) ~= "table" then
    return nil, "the dial guard needs OpenResty/ngx_lua (there is no ngx.shared here)"
  end
  if type(dict_name) ~= "string" or dict_name == "" then
    return nil, "the dial guard needs the name of a lua_shared_dict"
  end
  local dict = ngx.shared[dict_name]
  if not dict then
    return nil, "there is no lua_shared_dict named " .. dict_name ..
                "; add \"lua_shared_dict " .. dict_name .. " 1m;\" to the http block of nginx.conf"
  end
  if type(window) ~= "number" or window <= 0 or window ~= window or window == math.huge then
    return nil, "the dial guard window must be a positive number of seconds, not " .. tostring(window)
  end
  return setmetatable({ dict = dict, dict_name = dict_name, window = window }, mt)
end

--- guard:check(caller, callee, seat [, user_data]) -> true | nil, sentence
-- Claims the key atomically; a claim already held within the window refuses the dial.
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
  if ago < 0 then
    ago = 0
  end
  return nil, str_format("a dial from %s to %s on seat %s was placed %.1f s ago; pass force = true to dial anyway",
                         caller, callee, seat, ago)
end

--- guard:release(caller, callee, seat [, user_data]) -> true
-- Forgets the claim, so that a retry click is not blocked by a dial that never left.
function _M.release(self, caller, callee, seat, user_data)
  self.dict:delete(_key(caller, callee, seat, user_data))
  return true
end

return _M
