--- clicktocall.pager: the records of a window, page by page; the one place that moves the cursor (maxId).
--
--   local next_page, close = pager.new(st, fname, args [, opts])
--   next_page() -> recs (a page, maybe empty) | nil at the window's end | nil, err; nil once ended or failed
--   close()     drops a page asked for ahead (next_page calls it itself at the end or on a failure)
--
--   args: the checked fields of the window (start_time, end_time, user_data, max_id).
--   opts.io      the transport to send through (a scheduler's task transport: a slice pages inside a task)
--   opts.ahead   keep the next page in flight while the caller works on this one, where the client's
--                transport has a scheduler (libcurl's multi, ngx.thread): each page is asked for as soon as
--                the cursor of the one before is read
--   opts.limit   no page is asked for ahead once this many records were handed out
--   opts.on_page hook(recs) -> true | nil, err, before a page is handed out (a job's lease renewal)

local core = require "clicktocall.core"
local errors = require "clicktocall.errors"
local exchange = require "clicktocall.exchange"

local pcall = pcall
local error = error

local _M = { _VERSION = core._VERSION }

function _M.new(st, fname, args, opts)
  opts = opts or {}
  local page_args = { start_time = args.start_time, end_time = args.end_time, user_data = args.user_data,
                      max_id = args.max_id }
  local io, on_page, limit = opts.io or st.transport, opts.on_page, opts.limit
  local sched = opts.ahead and st.transport:scheduler(1) or nil
  local handed, ended, ahead = 0, false, nil

  local function close()
    ended, ahead = true, nil
    if sched then
      sched:close()
      sched = nil
    end
  end

  -- one page at the cursor as it is now -> recs, next cursor | nil, err
  local function fetch(through)
    local request, asked = core.request("records_page", st.cfg, page_args)
    if not request then
      local e = errors.call_argument(fname, asked.message, asked.field)
      e.message = exchange.redact(st, e.message)
      return nil, e
    end
    return exchange.api(st, "records_page", request, asked, through)
  end

  local function ask()
    local box = {}
    box.task = sched:spawn(function()
      box[1], box[2] = fetch(sched.io)
      box.done = true
    end)
    sched:kick() -- on the wire now
    return box
  end

  local function next_page()
    if ended then
      return nil
    end
    local recs, nxt
    if sched then
      local box = ahead or ask()
      ahead = nil
      local ok, e = pcall(sched.drive, sched, function() return box.done end)
      if not ok then
        close() -- Ctrl-C (or a bug): the transfer in flight goes before the error goes on, as it is
        error(e, 0)
      end
      recs, nxt = box[1], box[2]
      if not box.done then
        nxt = box.task.err or errors.new("protocol", "a records page was never read", { sent = true })
      end
    else
      recs, nxt = fetch(io)
    end
    if not recs then
      close()
      return nil, nxt
    end
    handed = handed + #recs
    if nxt == nil or #recs == 0 then
      close() -- the last page: handed out, and the next call ends
    else
      page_args.max_id = nxt
      if sched and not (limit and handed >= limit) then
        ahead = ask()
      end
    end
    if on_page then
      local ok, err = on_page(recs)
      if not ok then
        close()
        return nil, err
      end
    end
    return recs
  end

  return next_page, close
end

return _M
