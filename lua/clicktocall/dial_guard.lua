-- clicktocall.dial_guard: refuse the same caller/callee/seat dial within a window, across all nginx workers.
--
-- A second click on the same "call" button must not ring the agent twice. The guard claims a key in a
-- lua_shared_dict with dict:add(), which is atomic across workers: when two workers race, exactly one add
-- succeeds and the other sees "exists".
--
--   -- nginx.conf:  lua_shared_dict clicktocall_dials 1m;
--   local guard, err = require("clicktocall.dial_guard").new("clicktocall_dials", 10 [, { hold = 300 }])
--   local claim, err, kind = guard:check(caller, callee, seat, user_data) -- a claim, or nil + a sentence + a kind
--   guard:release(caller, callee, seat, user_data, claim)                -- forget the claim (the dial never left)
--   guard:settle(caller, callee, seat, user_data, claim)                 -- its outcome is known: keep `window`
--
-- Key: "ctc:dial:" .. #user_data .. ":" .. user_data .. "|" .. caller .. "|" .. callee .. "|" .. seat
-- (user_data "" when not given). Two customers of one deployment dialling the same pair on the same seat are
-- two dials, so user_data is part of the key; its length comes first because user_data may hold "|", while
-- caller and callee are normalized numbers ("+86...") that never do, and seat comes last. The value is the
-- time of the claim (ngx.now()), so a refusal can say how long ago the first dial was placed.
--
-- The hold: check() claims the key for `hold` seconds (opts.hold, default the window), the longest a dial is
-- kept guarded. A dial that may have rung although an error came back (a timeout after sending: its outcome
-- is unknown) keeps that claim: its call record appears only when the call ends, so nothing else can tell
-- that it was placed. A dial whose outcome is known (a session id, or a refusal by the provider) calls
-- settle(), which shortens the claim to `window` seconds from then; a dial that never left calls release().
-- A process that dies while its dial is in flight leaves the claim to the hold, too. A refusal while a claim
-- is held longer than a window says that the first dial's outcome is unknown and for how long repeats are
-- refused.
--
-- When the dict is full, dict:add() evicts the least recently used items (it reports "forcible"), which is
-- fine: old claims go first. If it cannot store the key even then ("no memory"), the guard lets the dial go
-- and logs nothing: refusing every dial because a dict is too small would stop all calls, whereas the guard
-- only protects against a double click. Size the dict generously (1m holds several thousand claims).
--
-- Several machines: new("redis[s]://[[user:]password@]host:port[/db]", window, { fail_open =, timeout =,
-- hold = }) keeps the same claims in Redis (see the section near the end); check() then returns the claim's
-- token, which release() and settle() take as their fifth argument so that they touch only that claim. It
-- works outside nginx too (LuaSocket; LuaSec for rediss://).
--
-- One machine without nginx (the command line, scripts): new("file:/a/directory", window, { hold = }) keeps
-- each claim in a small file of that directory, read and written under an flock, so every process of the
-- user on the machine sees the same claims (see the last section). It needs the C core.

local ngx = ngx
local type = type
local tostring = tostring
local tonumber = tonumber
local error = error
local setmetatable = setmetatable
local str_format = string.format
local math_floor = math.floor
local math_ceil = math.ceil
local sub = string.sub
local match = string.match
local os_time = os.time

local redis_mod = require "clicktocall.redis"

-- The shared-dict and Redis guards work without the C core (a bare nginx may use them alone); the file guard
-- needs it.
local has_core, core = pcall(require, "clicktocall.core")
local _M = { _VERSION = require "clicktocall.version" }

local mt = { __index = _M }

local KEY_PREFIX = "ctc:dial:"
local DAY = 86400

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

-- window: a positive number of seconds; opts.hold: nil (the window) or from the window to one day
-- -> hold | nil, sentence
local function hold_of(window, opts)
  if type(window) ~= "number" or window <= 0 or window ~= window or window == math.huge then
    return nil, "the dial guard window must be a positive number of seconds, not " .. tostring(window)
  end
  local hold = opts.hold
  if hold == nil then
    return window
  end
  if type(hold) ~= "number" or hold ~= hold or hold < window or hold > DAY then
    return nil, "the dial guard hold must be a number of seconds from the window (" .. tostring(window) ..
                ") to 86400, not " .. tostring(hold)
  end
  return hold
end

local redis_guard, file_guard -- below: the same guard with its claims in Redis, or in files

--- new(dict_name | "redis[s]://[[user:]password@]host:port[/db]" | "file:/dir", window_seconds [, opts])
--   -> guard | nil, err_string
-- opts: hold = window (seconds a claim lasts until its dial's outcome is known);
-- Redis only: fail_open = false (Redis unreachable: let the dial go), timeout = seconds per command (the client
-- passes its connect_timeout; without one, core.DEFAULTS.connect_timeout, so it is needed without the core).
function _M.new(dict_name, window, opts)
  opts = opts or {}
  if type(dict_name) == "string" and (sub(dict_name, 1, 8) == "redis://" or sub(dict_name, 1, 9) == "rediss://") then
    return redis_guard(dict_name, window, opts)
  end
  if type(dict_name) == "string" and sub(dict_name, 1, 5) == "file:" then
    return file_guard(sub(dict_name, 6), window, opts)
  end
  if type(ngx) ~= "table" or type(ngx.shared) ~= "table" then
    return nil, "the dial guard needs OpenResty/ngx_lua (there is no ngx.shared here), a redis:// address " ..
                "or a file:/directory"
  end
  if type(dict_name) ~= "string" or dict_name == "" then
    return nil, "the dial guard needs the name of a lua_shared_dict or a redis://host:port[/db] address"
  end
  local dict = ngx.shared[dict_name]
  if not dict then
    return nil, "there is no lua_shared_dict named " .. dict_name ..
                "; add \"lua_shared_dict " .. dict_name .. " 1m;\" to the http block of nginx.conf"
  end
  local hold, herr = hold_of(window, opts)
  if not hold then
    return nil, herr
  end
  return setmetatable({ dict = dict, dict_name = dict_name, window = window, hold = hold }, mt)
end

local function refusal(caller, callee, seat, ago)
  if ago < 0 then
    ago = 0
  end
  return str_format("a dial from %s to %s on seat %s was placed %.1f s ago; pass force = true to dial anyway",
                    caller, callee, seat, ago)
end

-- a claim still at its hold: the dial is in flight, or it ended with an error after sending
local function unknown(caller, callee, seat, ago, left)
  if ago < 0 then
    ago = 0
  end
  return str_format("a dial from %s to %s on seat %s was sent %.1f s ago and its outcome is unknown (it may " ..
                    "have rung; its call record appears only when the call ends): the same dial is refused " ..
                    "for another %d s; pass force = true to dial anyway", caller, callee, seat, ago,
                    math_ceil(left))
end
_M._refusal, _M._unknown = refusal, unknown -- for the command line's specs

local function tenths(x)
  return math_floor(x * 10 + 0.5) / 10
end

--- guard:check(caller, callee, seat [, user_data]) -> claim | nil, sentence, kind
-- Claims the key atomically for the hold; a claim already held refuses the dial (kind "duplicate").
-- The claim (the claim's time here, a token in Redis) goes back to release() or settle().
function _M.check(self, caller, callee, seat, user_data)
  local key = _key(caller, callee, seat, user_data)
  local now = _now()
  local ok, err = self.dict:add(key, now, self.hold)
  if ok then
    return now
  end
  if err ~= "exists" then
    -- "no memory" even after evicting: let the dial go (see the header).
    return true
  end
  local placed = self.dict:get(key)
  local ago = type(placed) == "number" and tenths(now - placed) or 0
  local left = self.dict.ttl and self.dict:ttl(key)
  if type(left) == "number" and left > self.window then
    return nil, unknown(caller, callee, seat, ago, left), "duplicate"
  end
  return nil, refusal(caller, callee, seat, ago), "duplicate"
end

--- guard:release(caller, callee, seat [, user_data [, claim]]) -> true
-- Forgets the claim, so that a retry click is not blocked by a dial that never left.
function _M.release(self, caller, callee, seat, user_data)
  self.dict:delete(_key(caller, callee, seat, user_data))
  return true
end

--- guard:settle(caller, callee, seat, user_data, claim) -> true
-- The dial's outcome is known: its claim lasts `window` seconds from now instead of the hold.
function _M.settle(self, caller, callee, seat, user_data, claim)
  local key = _key(caller, callee, seat, user_data)
  -- only our own claim (a claim that expired and was taken by a later click is that click's)
  if type(claim) == "number" and self.dict:get(key) == claim then
    self.dict:set(key, claim, self.window)
  end
  return true
end

--------------------------------------------------------------------------
-- the guard in Redis: several nginx machines (or plain Lua processes) share the claims
--------------------------------------------------------------------------
--
-- SET key token NX PX hold claims the key for exactly one of the racing hosts; Redis expires it. The
-- token is new for every claim (clicktocall.redis.token()), so release() deletes the key, and settle()
-- shortens it to the window, only while it holds OUR token (compare-and-delete, compare-and-expire): a slow
-- dial whose claim expired and was taken by a later click never touches that later claim. When Redis cannot
-- be asked, the dial is refused (kind "network", nothing sent): the guard exists to stop double calls, and a
-- silent pass would let them through on every host at once. fail_open lets it go instead, for those who
-- prefer a possible double call to a refused one.
--
-- A refusal reads the claim's time to live: longer than a window, the claim is still at its hold (outcome
-- unknown, held for hold - ago); otherwise it was settled (or made with no hold), window - left ago.

local RedisGuard = {} -- the guard's methods (redis.lua's connection is redis_mod)
local redis_mt = { __index = RedisGuard }

redis_guard = function(url, window, opts)
  local hold, herr = hold_of(window, opts)
  if not hold then
    return nil, herr
  end
  local r, err = redis_mod.new(url, opts.timeout or has_core and core.DEFAULTS.connect_timeout)
  if not r then
    return nil, err
  end
  return setmetatable({ redis = r, where = r.where, window = window, ms = math_floor(window * 1000 + 0.5),
                        hold = hold, hold_ms = math_floor(hold * 1000 + 0.5),
                        fail_open = opts.fail_open == true }, redis_mt)
end

function RedisGuard.check(self, caller, callee, seat, user_data)
  local key = _key(caller, callee, seat, user_data)
  local token = redis_mod.token()
  local ok, err = self.redis:set_nx(key, token, self.hold_ms)
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
  -- held: how long ago the claim was made, from what is left of it
  local left = self.redis:pttl(key)
  if type(left) == "number" and left > self.ms then
    return nil, unknown(caller, callee, seat, tenths((self.hold_ms - left) / 1000), left / 1000), "duplicate"
  end
  local ago = (type(left) == "number" and left >= 0) and math_floor((self.ms - left) / 100 + 0.5) / 10 or 0
  return nil, refusal(caller, callee, seat, ago), "duplicate"
end

function RedisGuard.release(self, caller, callee, seat, user_data, claim)
  local key = _key(caller, callee, seat, user_data)
  if type(claim) == "string" then
    -- a failure here leaves the claim to expire by itself at the end of the hold
    self.redis:delete_if(key, claim)
  end
  return true
end

function RedisGuard.settle(self, caller, callee, seat, user_data, claim)
  local key = _key(caller, callee, seat, user_data)
  if type(claim) == "string" and self.hold_ms ~= self.ms then
    -- a failure here leaves the claim to the hold: a longer guard, never a shorter one
    self.redis:pexpire_if(key, claim, self.ms)
  end
  return true
end

--------------------------------------------------------------------------
-- the guard in files: every process of the user on one machine (the command line)
--------------------------------------------------------------------------
--
-- A claim is the file <dir>/<sha-256 of the key, 32 hex digits> holding one line "<claimed at> <until>
-- <token>" (Unix seconds with milliseconds, and a token new to the claim). check, release and settle each
-- take an exclusive flock on that file (core.lock_file: the kernel drops it when the process dies), read
-- the line, write the new one and unlock, so two processes racing for one key are served one after the
-- other: the first claims, the second sees the claim. A line whose time has passed is no claim; the files
-- stay (removing a locked file would let a third process lock a new inode), one small file per distinct
-- dial, in a directory such as $XDG_RUNTIME_DIR/clicktocall (emptied at logout) or ~/.cache/clicktocall.
-- The lock is held for a read and a write, never across the dial; a process stopped while holding it
-- (Ctrl-Z at that instant) makes the others wait up to LOCK_WAIT seconds and then refuse (kind "busy").

local File = {}
local file_mt = { __index = File }

local LOCK_WAIT = 3

local function wall_now()
  if type(ngx) == "table" and ngx.now then
    return _now()
  end
  -- whole seconds: the claims of other processes are compared on the wall clock, and a second is fine
  -- against holds and windows of seconds to minutes
  return os_time()
end

local function mkdir_p(dir)
  local path = ""
  for part in dir:gmatch("[^/]+") do
    path = path .. "/" .. part
    if core.file_kind(path) ~= "directory" then
      -- private (0700): the file names are hashes of phone numbers, which others could guess by trying
      local ok, err = core.mkdir(path, 448)
      if not ok and core.file_kind(path) ~= "directory" then
        return nil, err
      end
    end
  end
  return true
end

file_guard = function(dir, window, opts)
  local hold, herr = hold_of(window, opts)
  if not hold then
    return nil, herr
  end
  if not has_core then
    return nil, "the file dial guard needs the C core (clicktocall.core): " .. tostring(core)
  end
  if sub(dir, 1, 1) ~= "/" or match(dir, "%z") then
    return nil, "the file dial guard needs an absolute directory, as \"file:/var/tmp/clicktocall-dials\""
  end
  local ok, err = mkdir_p(dir)
  if not ok then
    return nil, "the file dial guard could not make its directory: " .. tostring(err.message)
  end
  -- opts.now and opts.sleep: the clock and the wait, for specs
  return setmetatable({ dir = dir, window = window, hold = hold, sleep = opts.sleep or core.sleep,
                        now = opts.now or wall_now }, file_mt)
end

-- lock the key's file: lock, path | nil, sentence, kind
local function file_lock(self, key)
  local h = core.sha256()
  h:update(key)
  local path = self.dir .. "/" .. sub(h:hex(), 1, 32)
  local waited = 0
  while true do
    local lk, err = core.lock_file(path)
    if lk then
      return lk, path
    end
    if err.code ~= "busy" then
      return nil, "the dial guard could not use its file, so the dial was not sent: " .. tostring(err.message), "io"
    end
    if waited >= LOCK_WAIT then
      return nil, "the dial guard's file " .. path .. " stayed locked by another process for " .. LOCK_WAIT ..
                  " s, so the dial was not sent", "busy"
    end
    self.sleep(0.01)
    waited = waited + 0.01
  end
end

-- the claim in the file: claimed_at, until, line | nil
local function read_claim(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local line = f:read("*l")
  f:close()
  local at, till = match(line or "", "^(%d+%.?%d*) (%d+%.?%d*) [%x%-]+$")
  if not at then
    return nil
  end
  return tonumber(at), tonumber(till), line
end

local function write_line(path, line)
  local f, err = io.open(path, "wb")
  if not f then
    return nil, err
  end
  local ok, werr = f:write(line)
  local cok, cerr = f:close()
  if not ok or not cok then
    return nil, werr or cerr
  end
  return true
end

local function stamp(t)
  return str_format("%.3f", t)
end

function File.check(self, caller, callee, seat, user_data)
  local key = _key(caller, callee, seat, user_data)
  local lk, path, kind = file_lock(self, key)
  if not lk then
    return nil, path, kind
  end
  local now = self.now()
  local at, till = read_claim(path)
  if at and till > now then
    lk:unlock()
    local left = till - now
    if left > self.window then
      return nil, unknown(caller, callee, seat, tenths(now - at), left), "duplicate"
    end
    return nil, refusal(caller, callee, seat, tenths(now - at)), "duplicate"
  end
  local line = stamp(now) .. " " .. stamp(now + self.hold) .. " " .. redis_mod.token() .. "\n"
  local ok, err = write_line(path, line)
  lk:unlock()
  if not ok then
    return nil, "the dial guard could not write its file, so the dial was not sent: " .. tostring(err), "io"
  end
  return line
end

-- rewrite our claim's line (only while the file holds it) with a new end, or nothing
local function rewrite(self, caller, callee, seat, user_data, claim, till)
  if type(claim) ~= "string" then
    return true
  end
  local lk, path = file_lock(self, _key(caller, callee, seat, user_data))
  if not lk then
    return true -- the claim stays to its hold: a longer guard, never a shorter one
  end
  local at, _, line = read_claim(path)
  if line and line .. "\n" == claim then
    write_line(path, till and (stamp(at) .. " " .. stamp(till) .. " " .. match(line, "([%x%-]+)$") .. "\n") or "")
  end
  lk:unlock()
  return true
end

function File.release(self, caller, callee, seat, user_data, claim)
  return rewrite(self, caller, callee, seat, user_data, claim, nil)
end

function File.settle(self, caller, callee, seat, user_data, claim)
  return rewrite(self, caller, callee, seat, user_data, claim, self.now() + self.window)
end

return _M
