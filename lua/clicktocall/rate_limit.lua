--- clicktocall.rate_limit: clicktocall.new{ rate_limit = ... }, at most `rate` requests of a call in any window
-- of `per` seconds, counted in this process, in a lua_shared_dict (every nginx worker) or in Redis (every
-- machine).
--
--   rate_limit = {
--     dial = { rate = 5 },                             -- at most 5 dials in any 1 s
--     records_page = { rate = 20, per = 60, wait = 120 }, -- the jobs' pages wait their turn (up to 2 min)
--     store = nil | "a lua_shared_dict's name" | "redis[s]://[[user:]password@]host:port[/db]",
--     wait = 0, fail_open = false, name = nil, now = nil,
--   }
--
-- The calls are the library's ops: dial, bind_seat, balance, records_page (every page of records, archive,
-- sync, records{ concurrency }) and download (each recording fetched). Every HTTP request of that op goes
-- through the limit once, retries included: exchange.with_retries asks limiter:acquire before each attempt.
--
-- Why a sliding window and not a token bucket, GCRA or a fixed window: the provider (and a regulator) count
-- requests in a second. A fixed window (INCR + PEXPIRE) lets 2 x rate through across a window's edge; a token
-- bucket or GCRA with a burst lets burst + rate through in one second. Here each admitted request holds one of
-- `rate` places for exactly `per` seconds, so the requests admitted in any window [a, a + per) all hold a
-- place at the instant a + per - 0 and are at most `rate`: the bound holds in every window, not only on
-- average. The burst is the same number: `rate` may go at once, then each waits for the oldest to age out.
-- The three stores keep that invariant in one atomic step each:
--   local   a table of `rate` expiry times per call (this process, every client with the same name).
--   dict    `rate` keys per call, each taken with dict:safe_add(key, true, per): atomic across the workers,
--           it succeeds only on a key that is absent or expired (and never evicts one to make room), so at
--           most `rate` are alive.
--   redis   one EVAL of a script (Redis runs it atomically) on a sorted set of admission times: drop those
--           older than `per`, count, add when fewer than `rate`. The time is Redis' own (TIME inside the
--           script), so machines whose clocks differ share one clock.
-- A refused request learns when the oldest place frees: err.retry_after. Nothing is sent.
--
-- When the store cannot be asked (Redis down or slow: each ask has the client's connect_timeout as its
-- deadline; a dict that has no memory), fail_open = false refuses (kind "network", nothing sent), as the
-- dial guard does: a limit that silently lets everything through on every host at once is no limit.
-- fail_open = true sends the request unlimited.

local core = require "clicktocall.core"
local errors = require "clicktocall.errors"
local exchange = require "clicktocall.exchange"

local type = type
local pairs = pairs
local tostring = tostring
local setmetatable = setmetatable
local floor = math.floor
local ceil = math.ceil
local huge = math.huge
local format = string.format
local sub = string.sub
local pcall = errors.pcall

local ngx = rawget(_G, "ngx") -- nil outside nginx

local _M = { _VERSION = core._VERSION }

--- The calls a limit may name: the library's ops (docs/API.md, Events).
local OPS = { dial = true, bind_seat = true, balance = true, records_page = true, download = true }
_M.OPS = OPS

local MAX_RATE = 1000 -- places per call: each refusal in a dict looks at all of them
local MAX_PER = 86400
local MAX_WAIT = 3600
_M.MAX_RATE, _M.MAX_PER, _M.MAX_WAIT = MAX_RATE, MAX_PER, MAX_WAIT -- the CLI checks its flags with them

local TOP = { store = true, wait = true, fail_open = true, name = true, now = true }
local PER_OP = { rate = true, per = true, wait = true }

local function is_number(v)
  return type(v) == "number" and v == v and v > -huge and v < huge
end

--------------------------------------------------------------------------
-- the stores: take(key, rate, per) -> true | false, retry_after_seconds | nil, sentence
--------------------------------------------------------------------------

-- This process: key -> array of the times its places free (the clock's seconds).
local PLACES = {}

local function local_store(clock)
  return {
    where = "this process",
    take = function(key, rate, per)
      local places = PLACES[key]
      if not places then
        places = {}
        PLACES[key] = places
      end
      local now = clock()
      local soonest = huge
      for i = 1, rate do
        local free_at = places[i]
        if not free_at or free_at <= now then
          places[i] = now + per
          return true
        end
        if free_at < soonest then
          soonest = free_at
        end
      end
      return false, soonest - now
    end,
  }
end

local function dict_store(dict, name)
  return {
    where = "lua_shared_dict " .. name,
    take = function(key, rate, per)
      -- the add's expiry is counted from the worker's cached time: bring it up to now first, so a place
      -- is never held for less than `per` from the moment its request leaves
      ngx.update_time()
      local soonest = huge
      for i = 1, rate do
        local k = key .. ":" .. i
        -- safe_add: a full dict must not make room by evicting a live place (that would admit one more)
        local ok, err = dict:safe_add(k, true, per)
        if ok then
          return true
        end
        if err ~= "exists" then
          return nil, "the lua_shared_dict " .. name .. " could not hold the limit (" .. tostring(err) ..
                      "); make it larger"
        end
        local left = dict.ttl and dict:ttl(k)
        if type(left) == "number" and left < soonest then
          soonest = left
        end
      end
      if soonest == huge then
        soonest = per -- no ttl() (an ngx_lua without lua-resty-core): the longest it may be
      end
      return false, soonest
    end,
  }
end

-- KEYS[1] the call's sorted set; ARGV: rate, per in microseconds, a member new to this request.
-- -> { 1, 0 } admitted | { 0, microseconds until the oldest place frees }
local SCRIPT = [[
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate, per = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - per)
if redis.call('ZCARD', KEYS[1]) < rate then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(per / 1000))
  return { 1, 0 }
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return { 0, tonumber(oldest[2]) + per - now }
]]
_M.SCRIPT = SCRIPT

local function redis_store(r)
  local redis_mod = require "clicktocall.redis"
  return {
    where = "Redis at " .. r.where,
    take = function(key, rate, per)
      local v, err = r:command("EVAL", SCRIPT, 1, key, rate, floor(per * 1000000 + 0.5), redis_mod.token())
      if type(v) == "table" and type(v[1]) == "number" and type(v[2]) == "number" then
        if v[1] == 1 then
          return true
        end
        return false, v[2] / 1000000
      end
      if v == nil then
        return nil, tostring(err)
      end
      return nil, "Redis answered the rate limit's script with an unexpected " .. type(v)
    end,
  }
end

--------------------------------------------------------------------------
-- the option
--------------------------------------------------------------------------

local function where(op, k)
  return "rate_limit." .. (op and (op .. ".") or "") .. k
end

local function check_wait(v, op)
  if v ~= nil and not (is_number(v) and v >= 0 and v <= MAX_WAIT) then
    return where(op, "wait") .. " must be a number of seconds from 0 (refuse at once) to " .. MAX_WAIT
  end
end

-- one call's limit -> { rate, per, wait } | nil, sentence
local function check_op(op, l, wait)
  if type(l) ~= "table" then
    return nil, "rate_limit." .. op .. " must be a table such as { rate = 5 } (at most 5 in any second)"
  end
  for k in pairs(l) do
    if not PER_OP[k] then
      if k == "burst" then
        return nil, "rate_limit." .. op .. " takes no burst: rate requests may go at once in any window of " ..
                    "per seconds, so a burst of 10 at 5 a second is { rate = 10, per = 2 }"
      end
      return nil, "rate_limit." .. op .. ": unknown field '" .. tostring(k) .. "' (rate, per, wait)"
    end
  end
  local rate, per = l.rate, l.per == nil and 1 or l.per
  if not (is_number(rate) and rate >= 1 and rate <= MAX_RATE and floor(rate) == rate) then
    return nil, where(op, "rate") .. " must be a whole number of requests from 1 to " .. MAX_RATE
  end
  if not (is_number(per) and per >= 0.001 and per <= MAX_PER) then
    return nil, where(op, "per") .. " must be a number of seconds from 0.001 to " .. MAX_PER .. " (default 1)"
  end
  local why = check_wait(l.wait, op)
  if why then
    return nil, why
  end
  return { rate = rate, per = per, wait = l.wait == nil and wait or l.wait }
end

-- the store -> store | nil, sentence
local function open_store(o, timeout, clock)
  local s = o.store
  if s == nil then
    return local_store(clock)
  end
  if type(s) ~= "string" or s == "" then
    return nil, "rate_limit.store must be nil (this process), the name of a lua_shared_dict or a " ..
                "\"redis://host:port[/db]\" address"
  end
  if sub(s, 1, 8) == "redis://" or sub(s, 1, 9) == "rediss://" then
    local r, err = require("clicktocall.redis").new(s, timeout)
    if not r then
      return nil, "rate_limit.store: " .. tostring(err)
    end
    return redis_store(r)
  end
  if type(ngx) ~= "table" or type(ngx.shared) ~= "table" then
    return nil, "rate_limit.store " .. s .. " names a lua_shared_dict, and there is none outside nginx; " ..
                "give a redis:// address, or no store (this process)"
  end
  local dict = ngx.shared[s]
  if not dict then
    return nil, "there is no lua_shared_dict named " .. s .. " for rate_limit.store; add \"lua_shared_dict " ..
                s .. " 1m;\" to the http block of nginx.conf"
  end
  return dict_store(dict, s)
end

local limiter_mt = {}
limiter_mt.__index = limiter_mt

--- new(o, secret, timeout) -> limiter | nil, sentence
-- o: the rate_limit option; secret: the client's app_secret (its hash names the limit, so that every client
-- of one account shares it and clients of two accounts do not); timeout: the longest one ask of the store.
function _M.new(o, secret, timeout)
  if type(o) ~= "table" then
    return nil, "rate_limit must be a table such as { dial = { rate = 5 } }"
  end
  for k in pairs(o) do
    if not TOP[k] and not OPS[k] then
      return nil, "rate_limit: unknown field '" .. tostring(k) .. "' (the calls dial, bind_seat, balance, " ..
                  "records_page, download; store, wait, fail_open, name)"
    end
  end
  local why = check_wait(o.wait)
  if why then
    return nil, why
  end
  if o.fail_open ~= nil and type(o.fail_open) ~= "boolean" then
    return nil, "rate_limit.fail_open must be a boolean"
  end
  if o.now ~= nil and type(o.now) ~= "function" then
    return nil, "rate_limit.now must be a function"
  end
  local name = o.name
  if name == nil then
    local h = core.sha256()
    h:update("clicktocall rate limit\n" .. secret)
    name = sub(h:hex(), 1, 16)
  elseif type(name) ~= "string" or not name:match("^[%w_.:-]+$") or #name > 64 then
    return nil, "rate_limit.name must be 1 to 64 letters, digits or _ . : -"
  end
  local limits = {}
  for op in pairs(OPS) do
    if o[op] ~= nil then
      local l, lwhy = check_op(op, o[op], o.wait or 0)
      if not l then
        return nil, lwhy
      end
      l.key = "ctc:rate:" .. name .. ":" .. op
      l.text = format("%d in any %.14g s", l.rate, l.per)
      limits[op] = l
    end
  end
  local clock = o.now or core.now
  local store, serr = open_store(o, timeout, clock)
  if not store then
    return nil, serr
  end
  return setmetatable({ limits = limits, store = store, fail_open = o.fail_open == true, clock = clock },
                      limiter_mt)
end

-- seconds, rounded up to the millisecond (a wait cut short would be refused again)
local function ms_up(s)
  return ceil(s * 1000 - 1e-6) / 1000
end

--- limiter:acquire(st, t, op) -> nil (go) | err (nothing was sent)
-- Takes a place for one request of op; waits for one (t:sleep) up to the limit's wait.
function limiter_mt:acquire(st, t, op)
  local l = self.limits[op]
  if not l then
    return nil
  end
  local waited, deadline = 0, nil
  while true do
    local ok, after = self.store.take(l.key, l.rate, l.per)
    if ok then
      return nil
    end
    if ok == nil then
      if self.fail_open then
        exchange.emit(st, { type = "rate_limit_unavailable", op = op, error = after })
        return nil
      end
      return exchange.fail(st, "network", format("%s: the rate limit could not be asked (%s), so nothing was " ..
        "sent (rate_limit.fail_open = true would send it unlimited): %s", op, self.store.where, after),
        { sent = false, retryable = true })
    end
    after = ms_up(after > 0.001 and after or 0.001)
    local now = self.clock()
    deadline = deadline or now + l.wait
    if now + after > deadline then
      exchange.emit(st, { type = "rate_limited", op = op, retry_after = after, waited = waited })
      return exchange.fail(st, "rate_limited", format("%s: the rate limit (%s) is reached, so nothing was sent; " ..
        "the next may go in %.3f s%s", op, l.text, after,
        waited > 0 and format(" (waited %.3f s of rate_limit wait %.14g s)", waited, l.wait) or ""),
        { sent = false, retryable = true, retry_after = after })
    end
    exchange.emit(st, { type = "rate_wait", op = op, delay = after })
    local sok, serr = pcall(t.sleep, t, after)
    if not sok then
      return exchange.fail(st, "rate_limited", format("%s: the rate limit (%s) is reached and the sleep " ..
        "function raised while waiting: %s; nothing was sent", op, l.text, exchange.describe(serr)),
        { sent = false, retryable = true, retry_after = after })
    end
    waited = waited + after
  end
end

return _M
