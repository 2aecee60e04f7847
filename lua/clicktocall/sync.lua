--- clicktocall.sync: client:sync{}, a database kept in step with the call records.
--
-- The state file holds the highest id delivered and the window's start:
--   {"version":1,"max_id":…,"from":<Unix seconds>,"user_data":…}
-- A run: check everything (nothing written on a bad argument), lock <state>.lock (flock: a second run
-- is "busy"), read the state (corrupt or another customer's: an "argument" error naming the file, never
-- reset), then page from max_id in the window [from, now], on_record for each record in id order, and
-- after each page handled whole replace the state (temporary file, fsync, rename, fsync of the
-- directory). `from` moves up to now - lookback only once the window was paged to its end: a run cut
-- short keeps its old start, so nothing between the two is skipped. Delivery is at least once.

local core = require "clicktocall.core"
local exchange = require "clicktocall.exchange"
local download = require "clicktocall.download"
local flatjson = require "clicktocall.flatjson"
local jobs = require "clicktocall.jobfiles"

local type = type
local select = select
local pcall = pcall
local tostring = tostring
local io_open = io.open
local os_time = os.time
local os_rename = os.rename
local os_remove = os.remove
local format = string.format
local match = string.match
local floor = math.floor

local _M = { _VERSION = core._VERSION }

local FNAME = "sync"
local KNOWN = { state = true, on_record = true, since = true, lookback = true, user_data = true, lock = true }
local STATE_KEYS = { "version", "max_id", "from", "user_data" }
local MAX_LOOKBACK = 30 * 86400 -- the provider keeps records much longer, but a larger window is a mistake

local function check(st, args)
  if type(args) ~= "table" then
    return jobs.argument(st, FNAME, "table expected, got " .. type(args))
  end
  local bad = jobs.unknown(args, KNOWN)
  if bad then
    return jobs.argument(st, FNAME, "unknown field '" .. bad .. "'")
  end
  local state = args.state
  if type(state) ~= "string" or state == "" or match(state, "/$") then
    return jobs.argument(st, FNAME, "field 'state' must be a file path")
  end
  if core.file_kind(state) == "directory" then
    return jobs.argument(st, FNAME, "field 'state': " .. state .. " is a directory")
  end
  local dir = jobs.parent(state)
  local ok, why = core.dir_writable(dir)
  if not ok then
    return jobs.argument(st, FNAME, "field 'state' must be in an existing, writable directory: " .. why.message)
  end
  if type(args.on_record) ~= "function" then
    return jobs.argument(st, FNAME, "field 'on_record' must be a function")
  end
  local lookback = args.lookback
  if lookback == nil then
    lookback = 86400
  elseif not (type(lookback) == "number" and lookback >= 0 and lookback <= MAX_LOOKBACK) then
    return jobs.argument(st, FNAME, "field 'lookback' must be a number of seconds from 0 to " .. MAX_LOOKBACK)
  end
  local since = args.since
  if since ~= nil then
    local s, swhy = core.format_time(since)
    if not s then
      return jobs.argument(st, FNAME, "field 'since' " .. swhy.message)
    end
    since = jobs.unix(s)
  end
  local user_data = args.user_data or st.cfg.user_data
  ok, why = jobs.check_window(st, FNAME, { start_time = 0, end_time = 0, user_data = args.user_data })
  if not ok then
    return nil, why
  end
  ok, why = jobs.check_lock(st, FNAME, args)
  if not ok then
    return nil, why
  end
  return { state = state, dir = dir, on_record = args.on_record, lookback = floor(lookback), since = since,
           user_data = user_data, lock_url = args.lock }
end

local function corrupt(st, path, why)
  return jobs.argument(st, FNAME, format("the state file %s %s; it was left as it is (move it away to "
                                         .. "start over)", path, why))
end

-- -> state table | nil (no file yet) | false, err
local function read_state(st, job)
  local f = io_open(job.state, "rb")
  if not f then
    if core.file_kind(job.state) ~= "missing" then
      return false, select(2, corrupt(st, job.state, "cannot be read"))
    end
    return nil
  end
  local data = f:read("*a")
  f:close()
  local s = flatjson.decode(data or "")
  if not s then
    return false, select(2, corrupt(st, job.state, "is not a clicktocall sync state (not JSON)"))
  end
  if s.version ~= 1 or type(s.from) ~= "number" or s.from ~= floor(s.from)
    or not (type(s.max_id) == "number" and s.max_id >= 0
            or type(s.max_id) == "string" and match(s.max_id, "^%d+$")) then
    return false, select(2, corrupt(st, job.state, "is not a clicktocall sync state (version 1 with max_id "
                                                   .. "and from)"))
  end
  if s.user_data ~= nil and s.user_data ~= job.user_data then
    return false, select(2, corrupt(st, job.state, "belongs to another user_data"))
  end
  return s
end

-- write, fsync, rename, fsync the directory
local function write_state(st, job, s)
  local text = flatjson.encode(STATE_KEYS, s) .. "\n"
  local sink, tmp, why
  for _ = 1, 8 do
    tmp = download.temp_name(job.dir)
    sink, why = core.file_sink(tmp)
    if sink then
      break
    end
  end
  if not sink then
    return nil, exchange.fail(st, "io", why.message, { sent = false, retryable = false })
  end
  local ok, werr = sink:write(text)
  local bytes
  if ok then
    bytes, werr = sink:finish()
  end
  if not ok or not bytes then
    sink:abort()
    return nil, jobs.io_error(st, "could not write the state: " .. werr.message)
  end
  local rok, rerr = os_rename(tmp, job.state)
  if not rok then
    os_remove(tmp)
    return nil, jobs.io_error(st, "could not replace the state: " .. tostring(rerr))
  end
  core.fsync(job.dir)
  return true
end


local function locked(st, job)
  jobs.clean_stale(job.dir) -- a state write cut short by a crash
  local s, err = read_state(st, job)
  if s == false then
    return nil, err
  end
  local now = os_time()
  if not s then
    s = { version = 1, max_id = 0, from = job.since or now - 86400, user_data = job.user_data }
  end
  s.user_data = job.user_data
  local from = s.from < now and s.from or now
  local summary = { delivered = 0, pages = 0, max_id = s.max_id, state = job.state }
  local ok
  ok, err = jobs.page_all(st, FNAME, { start_time = from, end_time = now, user_data = job.user_data,
                                       max_id = s.max_id }, function(recs)
    if job.lease then
      local lok, lerr = job.lease:renew()
      if not lok then
        return nil, lerr
      end
    end
    for i = 1, #recs do
      local hok, r1, r2 = pcall(job.on_record, recs[i])
      if not hok then
        return nil, jobs.callback_error(st, "on_record", "raised an error", r1)
      elseif r1 == nil and r2 ~= nil then
        return nil, jobs.callback_error(st, "on_record", "returned an error", r2)
      end
      summary.delivered = summary.delivered + 1
    end
    summary.pages = summary.pages + 1
    if #recs > 0 then
      s.max_id = recs[#recs].id
      summary.max_id = s.max_id
      return write_state(st, job, s)
    end
    return true
  end)
  if not ok then
    return nil, err
  end
  -- the whole window was paged: its start may move up, lookback behind now
  local start = now - job.lookback
  if start > s.from then
    s.from = start
  end
  ok, err = write_state(st, job, s)
  if not ok then
    return nil, err
  end
  return summary
end

--- run(st, args) -> summary | nil, err
function _M.run(st, args)
  local job, err = check(st, args)
  if not job then
    return nil, err
  end
  local lock
  lock, err = jobs.lock(st, job.state .. ".lock", "sync", job.lock_url, job.user_data)
  if not lock then
    return nil, err
  end
  job.lease = job.lock_url and lock or nil
  local ok, summary, serr = pcall(locked, st, job)
  lock:unlock()
  if not ok then
    return nil, exchange.fail(st, "protocol", "sync failed: " .. exchange.describe(summary),
                              { sent = true, retryable = false })
  end
  return summary, serr
end

return _M
