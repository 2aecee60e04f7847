--- clicktocall.lease: a job's lock in Redis (archive_recordings, sync with lock = "redis://host:port[/db]"),
-- so that two hosts running the same job never overlap.
--
--   local lease, err = lease.acquire(st, url, "sync", user_data [, ms])  -- err.kind "busy" when held elsewhere
--   lease:renew()  -> true | nil, err   at each page or recording: renews once half the lease has passed
--   lease:unlock() -> true              deletes the key, only while it holds our token
--
-- The lease is SET key token NX PX ms with a token new to this run; it expires by itself when the host dies.
-- Plain Lua has no timers, so the job renews it at its own boundaries (each page, each recording) once half
-- of it has passed: the lease must outlast the longest step, hence its length (lease_ms). Renewal and
-- release are compare-and-set scripts (clicktocall.redis), so a run whose lease expired and was taken by
-- another host never extends or deletes the other's.
--
-- The key names the job and the customer, not a path: the two hosts have their own directories and state
-- files, and what must not overlap is the same job for the same account.

local core = require "clicktocall.core"
local exchange = require "clicktocall.exchange"
local redis = require "clicktocall.redis"

local setmetatable = setmetatable
local tostring = tostring
local format = string.format
local floor = math.floor
local max = math.max

local _M = { _VERSION = core._VERSION }

local Lease = {}
Lease.__index = Lease

--- key(what, user_data) -> the Redis key of a job's lease
function _M.key(what, user_data)
  user_data = user_data or ""
  return "ctc:job:" .. what .. ":" .. #user_data .. ":" .. user_data
end

--- lease_ms(st) -> the lease's length: twice the longest step a job takes between two renewals (a download
-- of up to download_timeout, or a page with its retries), plus a minute. With the defaults: 11 minutes, the
-- longest a dead host keeps the job from running elsewhere.
function _M.lease_ms(st)
  local page = (st.timeout or 10) * ((st.retries or 2) + 1) + (st.backoff_max or 5) * (st.retries or 2)
  return floor((2 * max(st.download_timeout or 300, page) + 60) * 1000)
end

--- check(url) -> nil | a sentence: what is wrong with a lock URL (for the jobs' argument checks)
function _M.check(url)
  local cfg, why = redis.parse_url(url)
  if not cfg then
    return why
  end
  return nil
end

--- acquire(st, url, what, user_data [, ms]) -> lease | nil, err (kind "busy", or "network" when Redis
-- cannot be asked; nothing was done either way)
function _M.acquire(st, url, what, user_data, ms)
  local r, rerr = redis.new(url, st.connect_timeout or 3)
  if not r then
    return nil, exchange.fail(st, "argument", "lock: " .. tostring(rerr),
                              { sent = false, retryable = false, field = "lock" })
  end
  ms = ms or _M.lease_ms(st)
  local key, token = _M.key(what, user_data), redis.token()
  local ok, err = r:set_nx(key, token, ms)
  if ok == nil then
    return nil, exchange.fail(st, "network", format("cannot take the %s lease in Redis at %s: %s; nothing was done",
                                                    what, r.where, tostring(err)), { sent = false, retryable = true })
  end
  if not ok then
    return nil, exchange.fail(st, "busy", format("another %s holds the lease %s in Redis at %s; nothing was done",
                                                 what, key, r.where), { sent = false, retryable = true })
  end
  return setmetatable({ st = st, r = r, key = key, token = token, ms = ms, what = what,
                        renewed_at = core.now() }, Lease)
end

--- lease:renew() -> true | nil, err (kind "busy": another host holds the job now; stop)
-- Asks Redis only once half the lease has passed since the last renewal. When Redis cannot be asked, the
-- job goes on (its lease still runs) and the next boundary tries again.
function Lease:renew()
  if self.lost then
    return nil, self.lost
  end
  local now = core.now()
  if (now - self.renewed_at) * 1000 < self.ms / 2 then
    return true
  end
  local ok = self.r:pexpire_if(self.key, self.token, self.ms)
  if ok == false then
    -- gone: it expired while a step ran longer than the lease; take it again unless another host did
    ok = self.r:set_nx(self.key, self.token, self.ms)
    if ok == false then
      self.lost = exchange.fail(self.st, "busy", format("the %s lease %s expired and another host took it; " ..
                                "this run stopped", self.what, self.key), { sent = true, retryable = true })
      return nil, self.lost
    end
  end
  if ok then
    self.renewed_at = now
  end
  return true
end

--- lease:unlock() -> true: the lease is deleted if it is still ours (else it expires by itself)
function Lease:unlock()
  if not self.released then
    self.released = true
    self.r:delete_if(self.key, self.token)
  end
  return true
end

return _M
