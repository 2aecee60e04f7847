--- clicktocall.jobs: the jobs' shared runner (`run_locked`: lock or lease, protected run, unlock) and what
-- archive and sync share: checks of their arguments, the provider's clock, record ids as keys, a window's pages.

local core = require "clicktocall.core"
local errors = require "clicktocall.errors"
local exchange = require "clicktocall.exchange"

local type = type
local pairs = pairs
local tostring = tostring
local tonumber = tonumber
local floor = math.floor
local format = string.format
local match = string.match
local gsub = string.gsub
local sub = string.sub
local math_type = math.type -- nil before 5.3

local _M = { _VERSION = core._VERSION }


--- argument(st, fname, what [, field]) -> nil, err: kind "argument", message "<fname>: <what>",
-- err.field = field ("dir", "start_time"). Without field, a what written "field 'x' ..." or
-- "unknown field 'x'" gives x (errors.call_argument), so older checks need not change.
function _M.argument(st, fname, what, field)
  local e = errors.call_argument(fname, what, field)
  e.message = exchange.redact(st, e.message)
  return nil, e
end

--- A local write that failed once the job was under way: never retried, the provider was reached.
function _M.io_error(st, message)
  return exchange.fail(st, "io", message, { sent = true, retryable = false })
end

--- hook ("on_file", "on_record") raised or returned nil, err: kind "callback", err.cause = what it gave
function _M.callback_error(st, hook, what, cause)
  local e = exchange.fail(st, "callback", hook .. " " .. what .. ": " .. exchange.describe(cause),
                          { sent = true, retryable = false })
  e.cause = cause
  return e
end

--- unknown(args, known) -> the first field not in known, or nil
function _M.unknown(args, known)
  for k in pairs(args) do
    if not known[k] then
      return tostring(k)
    end
  end
  return nil
end

function _M.is_int(v, min, max)
  return type(v) == "number" and v == v and floor(v) == v and v >= min and v <= max
end

--- parent(path) -> its directory
function _M.parent(path)
  local dir = match(path, "^(.*)/[^/]*$")
  if dir == nil then
    return "."
  end
  return dir == "" and "/" or dir
end

--- absolute(path) -> path made absolute against the working directory now | nil, why (no working directory)
-- An absolute path is kept as given. A relative one is prefixed with getcwd(), which has no symlink in it;
-- its own "..", symlinks and "." segments are kept (only a leading "./" goes): dropping "a/.." by text
-- would name another directory when a is a symlink, and resolving symlinks would hand out a path the
-- caller never named. Either way the result names the file the relative path named at the call's start.
function _M.absolute(path)
  if sub(path, 1, 1) == "/" then
    return path
  end
  local cwd, why = core.getcwd()
  if not cwd then
    return nil, why
  end
  while sub(path, 1, 2) == "./" do
    path = gsub(sub(path, 3), "^/+", "")
  end
  if path == "" or path == "." then
    return cwd
  end
  return (cwd == "/" and "" or cwd) .. "/" .. path
end

--- lock(st, path, what [, url, user_data]) -> lock | nil, err (kind "busy" when another run holds it)
-- With url ("redis://host:port[/db]", the jobs' `lock` field): a lease in Redis instead (clicktocall.lease).
function _M.lock(st, path, what, url, user_data)
  if url ~= nil then
    return require("clicktocall.lease").acquire(st, url, what, user_data)
  end
  local lk, why = core.lock_file(path)
  if lk then
    return lk
  end
  if why.code == "busy" then
    return nil, exchange.fail(st, "busy", format("another %s holds %s; nothing was done", what, path),
                              { sent = false, retryable = true })
  end
  return nil, exchange.fail(st, "io", why.message, { sent = false, retryable = false })
end

--- check_lock(st, fname, args) -> true | nil, err: args.lock is nil or a "redis://host:port[/db]" address
function _M.check_lock(st, fname, args)
  local why = args.lock ~= nil and require("clicktocall.lease").check(args.lock)
  if why then
    return _M.argument(st, fname, "lock: " .. why, "lock")
  end
  return true
end

--- clean_stale(dir): removes the temporary files of ours (download.temp_name's
-- .ctc-<pid hex>-<noise>-<seq>.part) whose process is gone: a crash or kill -9 left them.
function _M.clean_stale(dir)
  local names = core.list_dir(dir)
  if not names then
    return
  end
  for i = 1, #names do
    local pid = match(names[i], "^%.ctc%-(%x+)%-%x+%-%x+%.part$")
    if pid and not core.pid_alive(tonumber(pid, 16)) then
      os.remove(dir .. "/" .. names[i])
    end
  end
end

--- key(id) -> a string naming a record id whatever its Lua type (integer, float, string of digits)
function _M.key(id)
  if type(id) == "number" then
    if math_type and math_type(id) == "integer" then
      return format("%d", id)
    end
    return format("%.0f", id)
  end
  return tostring(id)
end

--- unix(provider_time) -> Unix seconds of a "yyyy-MM-dd HH:mm:ss" (UTC+8) | nil
function _M.unix(s)
  if type(s) == "number" then
    return s
  end
  if type(s) ~= "string" then
    return nil
  end
  -- the provider writes "yyyy-MM-dd HH:mm:ss"; a "T" between date and time, or anything after the
  -- seconds, is tolerated here so one odd record cannot stop a job
  local date, time = match(s, "^(%d%d%d%d%-%d%d%-%d%d)[ T](%d%d:%d%d:%d%d)")
  if not date then
    return nil
  end
  return (core.parse_time(date .. " " .. time))
end

--- pages(st, job, fname, args) -> next_page, close (clicktocall.pager): the window's records, the next page
-- in flight while one is worked on, the job's lease renewed before each page is handed out
function _M.pages(st, job, fname, args)
  local lease = job.lease
  return require("clicktocall.pager").new(st, fname, args, { ahead = true, on_page = lease and function()
    return lease:renew()
  end })
end

local NO_LOCK = { unlock = function() end }

--- run_locked(st, job, what, lock_path, body) -> body(st, job)'s results | nil, err
-- The jobs' run: the lock (or the Redis lease of job.lock_url; none for job.dry_run) taken, body run
-- protected, the lock let go whatever happened, job.cleanup() (temporary files) on a raise; Ctrl-C goes on
-- to the caller as it is, anything else raised becomes one error of kind "protocol" ("<job.fname> failed: ...").
function _M.run_locked(st, job, what, lock_path, body)
  local lock, err = NO_LOCK, nil
  if not job.dry_run then -- a dry run writes nothing, so it takes no lock: it works beside a real run
    lock, err = _M.lock(st, lock_path, what, job.lock_url, job.user_data)
  end
  if not lock then
    return nil, err
  end
  job.lease = job.lock_url and lock or nil
  local ok, summary, serr = pcall(body, st, job)
  lock:unlock()
  if not ok then
    if job.cleanup then
      job.cleanup()
    end
    errors.pass_interrupt(summary)
    return nil, exchange.fail(st, "protocol", job.fname .. " failed: " .. exchange.describe(summary),
                              { sent = true, retryable = false })
  end
  return summary, serr
end

--- check_window(st, fname, args) -> true | nil, err: start_time, end_time and user_data, as core.request
-- reads them (nothing is sent)
function _M.check_window(st, fname, args)
  local request, asked = core.request("records_page", st.cfg,
                                      { start_time = args.start_time, end_time = args.end_time,
                                        user_data = args.user_data })
  if not request then
    return _M.argument(st, fname, asked.message, asked.field)
  end
  return true
end

_M.errors = errors
return _M
