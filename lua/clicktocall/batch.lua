--- clicktocall.batch: many requests in flight at once, at most n at a time.
--
--   batch.run(st, n, items, fn) -> failures
--     runs fn(item, io) for every item, at most n at once, and returns when all are done.
--     `io` is a view of the client state st whose send/download/sleep let other items run while one
--     waits, so exchange.api(io, ...) and download.fetch(io, ...) run unchanged (retries, redirects).
--     `failures[i]` is the error value of an fn that raised (an fn never raises out of run).
--
--   batch.scheduler(st, n) -> sched   the same machinery, driven step by step (records{ concurrency }):
--     sched:spawn(fn, ...)            a task; it starts when fewer than n run
--     sched:drive(pred)               runs the tasks until pred() is true or none is left
--     sched:park(task)                (inside that task) waits until sched:wake(task) is called
--     sched:wake(task), sched:close() (drops what is left; a transfer in flight is abandoned)
--
--   batch.group(flush) -> group; batch.commit(io, group, value) -> true | nil, err   (group commit)
--     flush(values) -> errs does at once what each value would need alone (one fsync of a directory for
--     many renames into it, one write and one fsync for many manifest lines); errs[i] is values[i]'s
--     error, nil once it is committed. With "curl" the task parks, and the values its turn committed
--     are flushed together when the turn ends, before the scheduler waits for the network again: the
--     disk is waited for once per turn, not once per item. Elsewhere flush({ value }) runs at once.
--
-- Backends, chosen by batch.backend(st):
--   "sequential"  a transport function (it may yield for its own scheduler, so it is never run inside
--                 ours), or plain Lua 5.1 (no yield across pcall): one item after another, io = st.
--   "ngx"         OpenResty: n ngx.thread workers; cosockets yield by themselves, io = st.
--   "curl"        the built-in transport: each item in a coroutine; io.send, io.download and io.sleep
--                 yield { op = "send" | "download" | "sleep" } to the scheduler, which drives a
--                 core.curl_multi object (or, until the C side has one, a stand-in that performs each
--                 request in turn through st.handle: correct, not concurrent).

local core = require "clicktocall.core"
local errors = require "clicktocall.errors"
local exchange = require "clicktocall.exchange"

local type = type
local pairs = pairs
local pcall = pcall
local error = error
local rawget = rawget
local select = select
local setmetatable = setmetatable
local co_create = coroutine.create
local co_resume = coroutine.resume
local co_status = coroutine.status
local co_yield = coroutine.yield
local co_close = coroutine.close -- 5.4 only
local remove = table.remove
local unpack = table.unpack or unpack -- luacheck: ignore 143

local _M = { _VERSION = core._VERSION }

-- marks a yield of ours, so that a yield from anywhere else is never mistaken for a request
local TAG = {}

local function backend(st)
  if st.transport_kind == "ngx" and type(ngx) == "table" and ngx.thread then -- luacheck: ignore 113
    return "ngx"
  end
  -- plain Lua 5.1 cannot yield across pcall, which exchange.send needs
  local can_yield = _VERSION ~= "Lua 5.1" or type(jit) == "table" -- luacheck: ignore 113
  if st.transport_kind == "curl" and st.handle and can_yield then
    return "curl"
  end
  return "sequential"
end
_M.backend = backend

local function raised(v)
  if errors.is_error(v) then
    return v
  end
  return errors.new("protocol", "a batch task raised an error: " .. exchange.describe(v),
                    { sent = true, retryable = false })
end

--------------------------------------------------------------------------
-- the multi object: core.curl_multi when the C side has it, else a stand-in
--------------------------------------------------------------------------

-- Performs one request at a time through the client's easy handle, in the order added.
local function standin_multi(st)
  local queue = {}
  local m = {}
  function m.add(_, token, request, tmp)
    queue[#queue + 1] = { token, request, tmp }
    return true
  end
  function m.wait(_, max_seconds)
    local p = remove(queue, 1)
    if not p then
      if max_seconds and max_seconds > 0 then
        core.sleep(max_seconds)
      end
      return {}
    end
    local ok, res, err
    if p[3] then
      ok, res, err = pcall(st.handle.download, st.handle, p[2], p[3])
    else
      ok, res, err = pcall(st.handle.perform, st.handle, p[2])
    end
    if not ok then
      if errors.is_interrupt(res) then
        if p[3] then
          os.remove(p[3])
        end
        error(res, 0)
      end
      return { { p[1], nil, { kind = "protocol", message = exchange.describe(res), sent = true } } }
    end
    return { { p[1], res, err } }
  end
  function m.count()
    return #queue
  end
  function m.close()
    queue = {}
  end
  return m
end

local function new_multi(st)
  if core.curl_multi then
    local o = st.transport_options or {}
    local m, err = core.curl_multi { ca_file = o.ca_file, insecure = o.insecure, proxy = o.proxy }
    if m then
      return m
    end
    return nil, exchange.fail(st, err.kind, err.message, { sent = false, retryable = false })
  end
  return standin_multi(st)
end

--------------------------------------------------------------------------
-- the coroutine scheduler ("curl")
--------------------------------------------------------------------------

local sched_mt = {}
sched_mt.__index = sched_mt

local function make_io(st, sched)
  local user_sleep = st.sleep ~= core.sleep and st.sleep -- a caller's sleep (a test clock) is called as is
  return setmetatable({
    send = function(request)
      return co_yield(TAG, "send", request)
    end,
    download = function(request, tmp)
      return co_yield(TAG, "download", request, tmp)
    end,
    sleep = function(seconds)
      if user_sleep then
        return user_sleep(seconds)
      end
      return co_yield(TAG, "sleep", seconds)
    end,
    commit = function(group, value)
      return co_yield(TAG, "commit", group, value)
    end,
    batch = sched,
  }, { __index = st })
end

local function curl_scheduler(st, n)
  local m, err = new_multi(st)
  if not m then
    return nil, err
  end
  local sched = setmetatable({
    st = st, n = n, m = m,
    waiting = {},   -- tasks not started yet
    ready = {},     -- { task, values... } to resume
    by_token = {},  -- token -> task, a transfer in flight
    timers = {},    -- { at =, task = }
    parked = {},    -- task -> true
    files = {},     -- token -> the temporary file of its download, until its task is resumed with the result
    commits = {},   -- { group =, { task =, value = }... } per group committed to in this turn, in order
    commit_of = {}, -- group -> its entry in commits
    running = 0, token = 0, now = st.now or core.now,
  }, sched_mt)
  sched.io = make_io(st, sched)
  return sched
end

--- spawn(fn, ...) -> task; fn(...) runs in its own coroutine, io is sched.io
function sched_mt:spawn(fn, ...)
  local args, nargs = { ... }, select("#", ...)
  local task = { done = false }
  task.co = co_create(function()
    return fn(unpack(args, 1, nargs))
  end)
  self.waiting[#self.waiting + 1] = task
  return task
end

--- park(task): inside that task, wait until wake(task)
function sched_mt:park(task)
  if self.ngx then
    return self:ngx_park(task)
  end
  return co_yield(TAG, "park")
end

function sched_mt:wake(task)
  if self.ngx then
    return self:ngx_wake(task)
  end
  if self.parked[task] then
    self.parked[task] = nil
    self.ready[#self.ready + 1] = { task }
  end
end

local function finish(self, task, ok, v)
  task.done = true
  self.running = self.running - 1
  if not ok then
    task.err = raised(v)
  end
end

-- Resumes a task with values and files what it yields next.
local function resume(self, task, ...)
  self.running_task = task
  local ok, tag, op, a, b = co_resume(task.co, ...)
  self.running_task = nil
  if not ok then
    if errors.is_interrupt(tag) then
      -- Ctrl-C inside a task (LuaJIT's hook is global) stops the whole run, not just this item
      task.done = true
      self.running = self.running - 1
      error(tag, 0)
    end
    return finish(self, task, false, tag)
  end
  if co_status(task.co) == "dead" then
    return finish(self, task, true)
  end
  if tag ~= TAG then
    -- not ours (a hook's own yield): hand nothing back and go on
    self.ready[#self.ready + 1] = { task }
    return
  end
  if op == "send" or op == "download" then
    self.token = self.token + 1
    local token = self.token
    local added, aerr
    if op == "send" then
      added, aerr = self.m:add(token, a)
    else
      added, aerr = self.m:add(token, a, b)
    end
    if added == nil and aerr ~= nil then
      self.ready[#self.ready + 1] = { task, nil, aerr }
    else
      self.by_token[token] = task
      if op == "download" then
        self.files[token] = b
      end
    end
  elseif op == "sleep" then
    self.timers[#self.timers + 1] = { at = self.now() + (type(a) == "number" and a or 0), task = task }
  elseif op == "park" then
    self.parked[task] = true
  elseif op == "commit" then
    local pending = self.commit_of[a]
    if not pending then
      pending = { group = a }
      self.commit_of[a] = pending
      self.commits[#self.commits + 1] = pending
    end
    pending[#pending + 1] = { task = task, value = b }
  end
end

local function start_waiting(self)
  while self.running < self.n and #self.waiting > 0 do
    local task = remove(self.waiting, 1)
    self.running = self.running + 1
    resume(self, task)
  end
end

local function fire_timers(self)
  local now, soonest = self.now(), nil
  local i = 1
  while i <= #self.timers do
    local t = self.timers[i]
    if t.at <= now then
      remove(self.timers, i)
      self.ready[#self.ready + 1] = { t.task }
    else
      soonest = (soonest == nil or t.at < soonest) and t.at or soonest
      i = i + 1
    end
  end
  return soonest and soonest - now or nil
end

-- flush(values) -> errs, never raising: a flush that raises fails every value it was given
local function run_flush(group, values)
  local ok, errs = errors.pcall(group.flush, values)
  if ok then
    return errs or {}
  end
  local err = raised(errs)
  errs = {}
  for i = 1, #values do
    errs[i] = err
  end
  return errs
end

-- Flushes each group committed to in this turn, once, and readies its tasks with their results.
-- Returns whether there was anything to flush.
local function flush_commits(self)
  local list = self.commits
  if #list == 0 then
    return false
  end
  self.commits, self.commit_of = {}, {}
  for k = 1, #list do
    local pending, values = list[k], {}
    for i = 1, #pending do
      values[i] = pending[i].value
    end
    local errs = run_flush(pending.group, values)
    for i = 1, #pending do
      local err = errs[i]
      self.ready[#self.ready + 1] = { pending[i].task, err == nil or nil, err }
    end
  end
  return true
end

-- One step: start tasks, resume the ready ones, else wait for a transfer or a timer.
-- Returns false when nothing can move any more.
local function step(self)
  start_waiting(self)
  if #self.ready > 0 then
    local ready = self.ready
    self.ready = {}
    for i = 1, #ready do
      local r = ready[i]
      if r.token then
        self.files[r.token] = nil -- the task owns its file from here
      end
      resume(self, r[1], r[2], r[3])
    end
    return true
  end
  local delay = fire_timers(self)
  if #self.ready > 0 then
    return true
  end
  local in_flight = self.m:count() > 0
  if not in_flight then
    if delay == nil then
      return false -- every task left is parked (or none is left)
    end
    -- only timers: the multi is never asked to wait with nothing in it
    core.sleep(delay)
    return true
  end
  local done = self.m:wait(delay or 1)
  for i = 1, #done do
    local d = done[i]
    local task = self.by_token[d[1]]
    if task then
      self.by_token[d[1]] = nil
      self.ready[#self.ready + 1] = { task, d[2], d[3], token = d[1] }
    end
  end
  return true
end

-- One turn: a step, then the group commits of the tasks it resumed (so nothing committed ever waits
-- for the network). Returns false when nothing can move any more.
local function turn(self)
  local moved = step(self)
  return flush_commits(self) or moved
end

--- drive(pred): run until pred() is true or nothing can move
function sched_mt:drive(pred)
  if self.ngx then
    return self:ngx_drive(pred)
  end
  while not (pred and pred()) do
    if not turn(self) then
      return
    end
  end
end

function sched_mt:close()
  if self.closed then
    return
  end
  self.closed = true
  if self.ngx then
    return self:ngx_close()
  end
  -- tasks still suspended are dropped; on 5.4 their to-be-closed values run now
  local interrupt
  if co_close then
    for _, task in pairs(self.by_token) do
      local ok, e = pcall(co_close, task.co)
      if not ok and errors.is_interrupt(e) then
        interrupt = e -- raised once the transfers and their files are gone
      end
    end
  end
  self.by_token, self.ready, self.waiting, self.timers, self.parked = {}, {}, {}, {}, {}
  self.commits, self.commit_of = {}, {}
  if self.m.close then
    self.m:close()
  end
  -- a download the multi finished whose task never saw it (Ctrl-C between the two) is whole and nobody's
  for _, file in pairs(self.files) do
    os.remove(file)
  end
  self.files = {}
  errors.pass_interrupt(interrupt)
end

--------------------------------------------------------------------------
-- ngx.thread
--------------------------------------------------------------------------

local function ngx_scheduler(st, n)
  local ngx = ngx -- luacheck: ignore 113
  local sched = setmetatable({ st = st, n = n, ngx = ngx, io = st, threads = {}, waiting = {},
                               running = 0, by_thread = {} }, sched_mt)
  return sched
end

function sched_mt:ngx_start()
  local ngx = self.ngx
  while self.running < self.n and #self.waiting > 0 do
    local task = remove(self.waiting, 1)
    self.running = self.running + 1
    local co = self
    task.thread = ngx.thread.spawn(function()
      local ok, v = pcall(task.fn)
      task.done = true
      co.running = co.running - 1
      if not ok then
        task.err = raised(v)
      end
    end)
    self.by_thread[#self.by_thread + 1] = task
  end
end

-- In ngx a task is a plain function run by its thread; parking polls (a page is ~100 ms of network).
function sched_mt:ngx_park(task)
  task.parked = true
  while task.parked and not self.closed do
    self.ngx.sleep(0.001)
  end
end

function sched_mt.ngx_wake(_, task)
  task.parked = false
end

function sched_mt:ngx_drive(pred)
  while not (pred and pred()) do
    self:ngx_start()
    local alive = false
    for i = 1, #self.by_thread do
      if not self.by_thread[i].done then
        alive = true
        break
      end
    end
    if not alive and #self.waiting == 0 then
      return
    end
    self.ngx.sleep(0.001)
  end
end

function sched_mt:ngx_close()
  for i = 1, #self.by_thread do
    local t = self.by_thread[i]
    if not t.done and t.thread then
      pcall(self.ngx.thread.kill, t.thread)
    end
  end
end

--------------------------------------------------------------------------
-- the public entry points
--------------------------------------------------------------------------

--- group(flush) -> a group commit (see the file header)
function _M.group(flush)
  return { flush = flush }
end

--- commit(io, group, value) -> true | nil, err: value committed by group.flush, alone or with the turn's
function _M.commit(io, group, value)
  local commit = rawget(io, "commit") -- only the coroutine scheduler's io has one
  if commit then
    return commit(group, value)
  end
  local err = run_flush(group, { value })[1]
  if err ~= nil then
    return nil, err
  end
  return true
end

--- scheduler(st, n) -> sched | nil, err   (nil, "sequential" when the backend runs one at a time)
function _M.scheduler(st, n)
  local b = backend(st)
  if b == "curl" then
    return curl_scheduler(st, n)
  elseif b == "ngx" then
    local sched = ngx_scheduler(st, n)
    -- in ngx a task's body is kept as fn for its thread
    local spawn = function(self_, fn, ...)
      local args, nargs = { ... }, select("#", ...)
      local task = { done = false }
      task.fn = function() return fn(unpack(args, 1, nargs)) end
      self_.waiting[#self_.waiting + 1] = task
      return task
    end
    sched.spawn = spawn
    return sched
  end
  return nil, "sequential"
end

-- ngx: n light threads drain the items; the caller's thread waits on each (no polling).
local function run_ngx(st, n, items, fn, failures)
  local ngx = ngx -- luacheck: ignore 113
  local next_i = 0
  local function worker()
    while true do
      next_i = next_i + 1
      local i = next_i
      if i > #items then
        return
      end
      local ok, v = pcall(fn, items[i], st)
      if not ok then
        failures[i] = raised(v)
      end
    end
  end
  local threads = {}
  for _ = 1, (n < #items and n or #items) do
    local ok, t = pcall(ngx.thread.spawn, worker)
    if ok and t then
      threads[#threads + 1] = t
    else
      worker() -- no thread to be had: this share is done in the caller's thread
    end
  end
  for k = 1, #threads do
    ngx.thread.wait(threads[k])
  end
  return failures
end

--- run(st, n, items, fn) -> failures ({ [i] = err } for each fn that raised)
function _M.run(st, n, items, fn)
  local failures = {}
  if backend(st) == "ngx" then
    return run_ngx(st, n, items, fn, failures)
  end
  local sched = _M.scheduler(st, n)
  if not sched then
    for i = 1, #items do
      local ok, v = errors.pcall(fn, items[i], st)
      if not ok then
        failures[i] = raised(v)
      end
    end
    return failures
  end
  local tasks = {}
  for i = 1, #items do
    tasks[i] = sched:spawn(fn, items[i], sched.io)
  end
  local ok, e = pcall(sched.drive, sched, nil)
  sched:close() -- whatever happened: the transfers in flight are dropped and their unfinished files removed
  if not ok then
    error(e, 0) -- only an interrupt (Ctrl-C) or a bug of ours gets here
  end
  for i = 1, #tasks do
    if tasks[i].err then
      failures[i] = tasks[i].err
    elseif not tasks[i].done then
      failures[i] = errors.new("protocol", "a batch task never finished", { sent = true, retryable = false })
    end
  end
  return failures
end

return _M
