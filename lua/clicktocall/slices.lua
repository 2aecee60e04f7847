--- clicktocall.slices: records{ concurrency = N }, the window paged as N slices at once.
--
-- The window [t0, t1] (Unix seconds) is cut into N equal slices that touch at their edges
-- ([e0, e1], [e1, e2], ...: the provider's window is inclusive at both ends). Each slice pages by
-- maxId (clicktocall.pager) in its own task of the transport's scheduler, its pages queued (at most QUEUE of them:
-- a slice ahead of the consumer waits, so memory stays bounded); the records go to the caller slice
-- by slice, in time order, by id within a slice. A record on a shared edge comes in both slices: the
-- later copy is dropped (by id, among the earlier slice's records at its end edge).
-- A transport function (or Lua 5.1) has no concurrent backend: its slices are paged one after another.

local core = require "clicktocall.core"
local errors = require "clicktocall.errors"
local exchange = require "clicktocall.exchange"
local pager = require "clicktocall.pager"
local jobs = require "clicktocall.jobs"

local error = error
local pcall = pcall
local pairs = pairs
local setmetatable = setmetatable
local floor = math.floor
local remove = table.remove

local _M = { _VERSION = core._VERSION }

-- Pages a slice may hold ahead of the consumer. Enough that a fast consumer never waits on a slice's
-- network while an earlier slice is read (a slice of 10,000 records / 8 is 13 pages).
local QUEUE = 16

local function copy(t)
  local c = {}
  for k, v in pairs(t) do
    c[k] = v
  end
  return c
end

--- edges(t0, t1, n) -> { e0, ..., en } whole seconds, e0 = t0, en = t1 (n lowered when the window is short)
local function edges(t0, t1, n)
  local span = t1 - t0
  if span < n then
    n = span > 1 and span or 1
  end
  local e = {}
  for k = 0, n do
    e[k + 1] = t0 + floor(span * k / n)
  end
  e[n + 1] = t1
  return e
end
_M.edges = edges

-- One page of a slice into its queue; marks the slice done at its end or on a failure.
local function page_once(slice)
  local recs, err = slice.next_page()
  if recs and #recs > 0 then
    slice.queue[#slice.queue + 1] = recs
  elseif not recs then
    slice.err, slice.done = err, true
  end
end

-- A slice's task: page until the end, parking while its queue is full.
local function pager_task(sched, slice)
  while not slice.done do
    while #slice.queue >= QUEUE do
      sched:park(slice.task)
    end
    page_once(slice)
    sched:notify()
  end
end

--- iterate(st, page_args, n, limit) -> iterator, nil, nil, closer (as client:records)
-- page_args: the checked fields of records{} (start_time, end_time, max_id, user_data).
function _M.iterate(st, page_args, n, limit)
  local t0 = jobs.unix(page_args.start_time and core.format_time(page_args.start_time))
  local t1 = jobs.unix(page_args.end_time and core.format_time(page_args.end_time))
  local pending
  if not t0 or not t1 then
    -- the core says what is wrong with them, as for concurrency 1
    local _, asked = core.request("records_page", st.cfg, page_args)
    pending = errors.call_argument("records", exchange.redact(st, asked and asked.message), asked and asked.field)
  end
  local e = pending and { 0, 0 } or edges(t0, t1, n)
  local list = {}
  for k = 1, #e - 1 do
    local a = copy(page_args)
    a.start_time, a.end_time = e[k], e[k + 1]
    list[k] = { args = a, queue = {}, done = false, edge = e[k + 1] }
  end
  local sched = not pending and st.transport:scheduler(#list) or nil
  for k = 1, #list do
    local slice = list[k]
    slice.next_page = pager.new(st, "records", slice.args, { io = sched and sched.io })
    if sched then
      slice.task = sched:spawn(pager_task, sched, slice)
    end
  end

  local cur, page, i, count, done = 1, nil, 0, 0, false
  local seen_edge, next_edge = {}, {} -- ids at the previous slice's end edge; those of this one's

  local function stop()
    done, page, list = true, nil, {}
    if sched then
      sched:close()
      sched = nil
    end
  end

  local function fail(err)
    stop()
    error(err)
  end

  -- the next page of slice `cur`, or nil when it is finished
  local function take(slice)
    if #slice.queue == 0 and not slice.done then
      if sched then
        local ok, raised = pcall(sched.drive, sched, function()
          return #slice.queue > 0 or slice.done
        end)
        if not ok then
          stop() -- Ctrl-C (or a bug): the transfers in flight go before the error goes on, as it is
          error(raised, 0)
        end
      else
        repeat
          page_once(slice)
        until #slice.queue > 0 or slice.done
      end
    end
    for k = 1, #list do
      local sl = list[k]
      local serr = sl.err or (sl.task and sl.task.err)
      if serr then
        fail(serr)
      end
    end
    if #slice.queue == 0 and not slice.done then
      fail(errors.new("protocol", "a records slice stopped without finishing", { sent = true, retryable = false }))
    end
    local p = remove(slice.queue, 1)
    if p and sched and slice.task then
      sched:wake(slice.task)
    end
    return p
  end

  local function step()
    if st.closed and not done then
      pending = errors.argument("records: the iterator was used after client:close(); nothing was sent")
    end
    if pending then
      local err = pending
      pending = nil
      fail(err)
    end
    while not done do
      if limit and count >= limit then
        stop()
        return nil
      end
      if page and i < #page then
        i = i + 1
        local rec = page[i]
        page[i] = false
        local key = jobs.key(rec.id)
        local slice = list[cur]
        local t = jobs.unix(rec.callEndTime)
        if slice and (t == nil or t >= slice.edge) then
          next_edge[key] = true
        end
        if not seen_edge[key] then
          count = count + 1
          return rec
        end
      else
        local slice = list[cur]
        if not slice then
          stop()
          return nil
        end
        page, i = take(slice), 0
        if not page then
          cur = cur + 1
          seen_edge, next_edge = next_edge, {}
        end
      end
    end
    return nil
  end

  local closer = setmetatable({}, { __close = function()
    if not done then
      stop()
    end
  end })
  return step, nil, nil, closer
end

return _M
