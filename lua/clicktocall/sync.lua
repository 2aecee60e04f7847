--- clicktocall.sync: client:sync{}, a database kept in step with the call records.
--
-- State version 2: a cursor in time, and the ids already delivered that the next run will see again.
--   {"version":2,"through":<Unix seconds>,"user_data":…,"ids":[id,…]}      (+ "from" before a first whole run)
-- `through`: every record whose callEndTime (provider clock, UTC+8) is before it was delivered. A run pages
-- the window [through - lookback, now] from maxId 0 to its end (`from` instead of through - lookback while a
-- state has it: the first run's `since`, or a version 1 file's start), hands on_record each record whose id
-- is not in `ids`, and counts the others as skipped. So the order of ids does not matter: a long call that
-- ends after shorter, later-numbered ones, or a record listed late, is still in the window.
--
-- Order, so that a crash loses nothing: after each page that delivered a record, the state (with that
-- page's ids added) replaces the file (temporary file, fsync, rename, fsync of the directory); a run cut
-- short (on_record failing, the provider failing, a crash) leaves `through` where it was, so the next run
-- re-reads the same window and delivers only what it has not recorded (at least once: a crash between a
-- page's on_record calls and its state write delivers that page again). A run that paged the window to its
-- end moves `through` to its `now` and keeps only the ids whose callEndTime is at or after the next window's
-- start: the file holds the records of about lookback seconds, never the history.
--
-- Corrupt, foreign (another user_data), unknown-version or ill-formed state files are "argument" errors
-- naming the file; a state file is never reset. A version 1 file ({"version":1,"max_id":…,"from":…}) is
-- converted: its `from` starts the first window, so a record may be delivered once more, none is lost.

local core = require "clicktocall.core"
local exchange = require "clicktocall.exchange"
local download = require "clicktocall.download"
local json = require "clicktocall.json"
local jobs = require "clicktocall.jobs"

local type = type
local select = select
local tostring = tostring
local io_open = io.open
local os_rename = os.rename
local os_remove = os.remove
local format = string.format
local match = string.match
local floor = math.floor
local pairs = pairs
local sort = table.sort

local _M = { _VERSION = core._VERSION }

local FNAME = "sync"
local KNOWN = { state = true, on_record = true, on_page = true, since = true, lookback = true, user_data = true,
                lock = true, dry_run = true }
local STATE_KEYS = { "version", "through", "from", "user_data", "ids" }
-- the state file: these keys in this order, ids past 2^53 written as the numbers they are
local STATE = { order = STATE_KEYS, only = true, ids = { ids = true } }
local DEFAULT_LOOKBACK = 3600
-- A record listed more than 30 days after its call ended is not one a lookback should wait for; a larger
-- window only makes every run read more.
local MAX_LOOKBACK = require("clicktocall.limits").lookback_max

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
  state = jobs.absolute(state) or state -- summary.state is absolute, as archive's entry.path
  local dir = jobs.parent(state)
  local ok, why = core.dir_writable(dir)
  if not ok then
    return jobs.argument(st, FNAME, "field 'state' must be in an existing, writable directory: " .. why.message)
  end
  if args.dry_run ~= nil and type(args.dry_run) ~= "boolean" then
    return jobs.argument(st, FNAME, "field 'dry_run' must be a boolean")
  end
  -- a dry run calls no hook: it may go without them
  if type(args.on_record) ~= "function" and not (args.dry_run and args.on_record == nil) then
    return jobs.argument(st, FNAME, "field 'on_record' must be a function")
  end
  if args.on_page ~= nil and type(args.on_page) ~= "function" then
    return jobs.argument(st, FNAME, "field 'on_page' must be a function")
  end
  local lookback = args.lookback
  if lookback == nil then
    lookback = DEFAULT_LOOKBACK
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
  return { state = state, dir = dir, on_record = args.on_record, on_page = args.on_page, dry_run = args.dry_run == true,
           lookback = floor(lookback), since = since,
           user_data = user_data, lock_url = args.lock, fname = FNAME }
end

local function corrupt(st, path, why)
  return select(2, jobs.argument(st, FNAME, format("the state file %s %s; it was left as it is (move it away "
                                                   .. "to start over)", path, why)))
end

local EXACT = require("clicktocall.limits").exact_double
local function is_time(v)
  return jobs.is_int(v, -EXACT, EXACT)
end

-- an id as the core gives one: a whole number >= 0, or (past 2^53 on 5.1/LuaJIT) a string of digits
local function is_id(v)
  if type(v) == "string" then
    return match(v, "^%d+$") ~= nil and #v <= 20
  end
  return type(v) == "number" and v == v and v >= 0 and floor(v) == v and v < 2 ^ 64
end

local V2 = "is not a clicktocall sync state (version 2 with through and ids)"

-- version 2 as read, or a version 1 state converted -> state | nil, err
local function checked_state(st, job, s)
  if s.version == 1 then
    if not is_time(s.from) or not is_id(s.max_id) then
      return nil, corrupt(st, job.state, "is not a clicktocall sync state (version 1 with max_id and from)")
    end
    -- version 1 delivered every record of [from, its last run] with an id up to max_id, but not those
    -- numbered below it that ended later: start the window at `from` again and deliver it whole
    return { version = 2, through = s.from, from = s.from, user_data = s.user_data, ids = {} }
  elseif type(s.version) ~= "number" then
    return nil, corrupt(st, job.state, V2)
  elseif s.version ~= 2 then
    return nil, corrupt(st, job.state, "has a version this module does not know ("
                                       .. tostring(s.version) .. "); it may be a newer clicktocall's")
  end
  if not is_time(s.through) or s.from ~= nil and not is_time(s.from) or type(s.ids) ~= "table" then
    return nil, corrupt(st, job.state, V2)
  end
  for i = 1, #s.ids do
    if not is_id(s.ids[i]) then
      return nil, corrupt(st, job.state, V2 .. ": ids[" .. i .. "] is not a record id")
    end
  end
  return s
end

-- -> state table | nil (no file yet) | false, err
local function read_state(st, job)
  local f = io_open(job.state, "rb")
  if not f then
    if core.file_kind(job.state) ~= "missing" then
      return false, corrupt(st, job.state, "cannot be read")
    end
    return nil
  end
  local data = f:read("*a")
  f:close()
  local s = json.decode(data or "")
  if not s then
    return false, corrupt(st, job.state, "is not a clicktocall sync state (not JSON)")
  end
  if s.user_data ~= nil and s.user_data ~= job.user_data then
    return false, corrupt(st, job.state, "belongs to another user_data")
  end
  local err
  s, err = checked_state(st, job, s)
  if not s then
    return false, err
  end
  return s
end

-- write, fsync, rename, fsync the directory
local function write_state(st, job, s)
  local text = json.encode(s, STATE) .. "\n"
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
  job.tmp = tmp -- removed by run() if a raise (Ctrl-C) comes before the rename
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
  job.tmp = nil
  if not rok then
    os_remove(tmp)
    return nil, jobs.io_error(st, "could not replace the state: " .. tostring(rerr))
  end
  core.fsync(job.dir)
  return true
end

-- a over b, ids compared as whole numbers whatever their Lua type
local function key_less(a, b)
  if #a ~= #b then
    return #a < #b
  end
  return a < b
end

local function sorted_ids(set)
  local keys = {}
  for k in pairs(set) do
    keys[#keys + 1] = k
  end
  sort(keys, key_less)
  local ids = {}
  for i = 1, #keys do
    ids[i] = set[keys[i]]
  end
  return ids
end

local function id_above(a, b)
  if b == nil then
    return true
  end
  return key_less(jobs.key(b), jobs.key(a))
end

-- a hook called protected -> true | nil, err (kind "callback"); Ctrl-C in it is passed on
local function hook(st, name, fn, arg)
  local hok, r1, r2 = jobs.errors.pcall(fn, arg)
  if not hok then
    return nil, jobs.callback_error(st, name, "raised an error", r1)
  elseif r1 == nil and r2 ~= nil then
    return nil, jobs.callback_error(st, name, "returned an error", r2)
  end
  return true
end

local function locked(st, job)
  if not job.dry_run then
    jobs.clean_stale(job.dir) -- a state write cut short by a crash
  end
  local s, err = read_state(st, job)
  if s == false then
    return nil, err
  end
  -- `now` is read once: the window ends there, and `through` moves to it after a whole run. No margin
  -- below now is needed for records still being written: one that reaches the provider after this run
  -- read past it ended at or after now - lookback (if it is within lookback at all), and the next window
  -- starts at now - lookback. The overlap is the margin, and lookback sets it.
  local now = os.time() -- looked up at each run, not cached: specs and the bench run sync on a simulated clock
  if not s then
    local from = job.since or now - 86400
    s = { version = 2, through = from, from = from, ids = {} }
  end
  s.user_data = job.user_data
  local start = s.from or s.through - job.lookback
  if not s.from and start > now - job.lookback then
    -- a clock set back since the last run (through is ahead of now): still read the last lookback seconds
    start = now - job.lookback
  end
  if start > now then
    start = now -- a `since` in the future
  end
  local done = {} -- key -> id: delivered by an earlier run or this one
  for i = 1, #s.ids do
    done[jobs.key(s.ids[i])] = s.ids[i]
  end
  local seen = {} -- key -> callEndTime (Unix seconds, or false when unreadable): every record of the window
  local summary = { delivered = 0, skipped = 0, pages = 0, through = s.through, max_id = nil, state = job.state }
  local unsaved = false -- records delivered since the state was last written
  local function save()
    unsaved = false
    if job.dry_run then
      return true
    end
    return write_state(st, job, s)
  end
  local next_page, close_pages = jobs.pages(st, job, FNAME, { start_time = start, end_time = now,
                                                               user_data = job.user_data, max_id = 0 })
  local function page(recs)
    for i = 1, #recs do
      local rec = recs[i]
      local key = jobs.key(rec.id)
      seen[key] = jobs.unix(rec.callEndTime) or false
      if done[key] then
        summary.skipped = summary.skipped + 1
      else
        if not job.dry_run then
          local ok, herr = hook(st, "on_record", job.on_record, rec)
          if not ok then
            return nil, herr
          end
        end
        done[key] = rec.id
        s.ids[#s.ids + 1] = rec.id -- in the order delivered until the run ends (sorting each page costs)
        unsaved = true
        summary.delivered = summary.delivered + 1
        if id_above(rec.id, summary.max_id) then
          summary.max_id = rec.id
        end
      end
    end
    summary.pages = summary.pages + 1
    if job.on_page and not job.dry_run then
      -- the page's on_record calls are done and its state is not written yet: a failure here leaves the
      -- state where it was (unsaved is dropped), so the whole page comes again
      local ok, herr = hook(st, "on_page", job.on_page, summary)
      if not ok then
        unsaved = false
        return nil, herr
      end
    end
    if unsaved then
      return save()
    end
    return true
  end
  local ok = true
  while ok do
    local recs
    recs, err = next_page()
    if not recs then
      ok = err == nil
      break
    end
    ok, err = page(recs)
  end
  close_pages()
  if not ok then
    -- cut short: keep what this run delivered (through stays), so the next run does not deliver it again;
    -- with on_page, a page counts only once its on_page said yes (its records may be in a transaction the
    -- failure rolled back)
    if unsaved and not job.on_page then
      save()
    end
    return nil, err
  end
  -- the whole window was paged: every record that ended before now is delivered (those listed after this
  -- run read past them are within lookback, in the next window)
  -- now, even when a clock set back makes it earlier than before: a cursor moved back only reads more
  s.through = now
  s.from = nil
  local next_start = s.through - job.lookback
  local keep = {}
  for key, t in pairs(seen) do
    -- an unreadable callEndTime: kept while the window lists the record
    if t == false or t >= next_start then
      keep[key] = done[key]
    end
  end
  s.ids = sorted_ids(keep)
  summary.through = s.through
  if job.dry_run then
    -- what a run would do: the records it would deliver, and the through it would move to
    summary.new, summary.delivered, summary.dry_run = summary.delivered, 0, true
    return summary
  end
  ok, err = save()
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
  job.cleanup = function()
    if job.tmp then
      os_remove(job.tmp) -- a state write cut short (Ctrl-C after its fsync): the whole temporary file goes
    end
  end
  return jobs.run_locked(st, job, "sync", job.state .. ".lock", locked)
end

return _M
