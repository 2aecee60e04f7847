--- clicktocall.batch: many requests in flight at once, at most n at a time: the two schedulers a transport
-- object hands out (t:scheduler(n)), and what runs on them.
--
--   batch.run(sched, t, items, fn) -> failures
--     runs fn(item, io) for every item, at most n at once (one after another through t when sched is nil),
--     and returns when all are done. `io` is the transport a task sends through (sched.io): its
--     send/download/sleep let other items run while one waits, so exchange.api(st, ..., io) and
--     download.fetch(st, ..., io) run unchanged (retries, redirects). `failures[i]` is the error value of
--     an fn that raised (an fn never raises out of run).
--
--   sched (batch.curl_scheduler(t, n), batch.ngx_scheduler(t, n)), driven step by step:
--     sched:spawn(fn, ...)            a task; it starts when fewer than n run
--     sched:kick()                    starts what may start and puts its requests on the wire, not waiting
--     sched:drive(pred)               runs the tasks until pred() is true or none can move
--     sched:park(task)                (inside that task) waits until sched:wake(task) is called
--     sched:notify()                  (inside a task) it made something drive's pred may be waiting for
--     sched:wake(task), sched:close() (drops what is left; a transfer in flight is abandoned)
--
--   batch.group(flush) -> group; batch.commit(io, group, value) -> true | nil, err   (group commit)
--     flush(values) -> errs does at once what each value would need alone (one fsync of a directory for
--     many renames into it, one write and one fsync for many manifest lines); errs[i] is values[i]'s
--     error, nil once it is committed. On the multi the task parks, and the values its turn committed
--     are flushed together when the turn ends, before the scheduler waits for the network again: the
--     disk is waited for once per turn, not once per item (sched.turns). Elsewhere flush({ value }) runs
--     at once.
--
-- The schedulers:
--   curl   each task in a coroutine; its io (a task transport) yields { op = "send" | "download" |
--          "upload" | "sleep" | "commit" } to the scheduler, which drives a core.curl_multi object.
--   ngx    each task in an ngx.thread; cosockets yield by themselves, so io is the ngx transport itself;
--          the driver and parked tasks wait on ngx.semaphore.

local core = require "clicktocall.core"
local errors = require "clicktocall.errors"
local exchange = require "clicktocall.exchange"

local type = type
local pairs = pairs
local pcall = pcall
local error = error
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

local function raised(v)
  if errors.is_error(v) then
    return v
  end
  return errors.new("protocol", "a batch task raised an error: " .. exchange.describe(v),
                    { sent = true, retryable = false })
end

-- A task's body with its arguments bound
local function bind(fn, ...)
  local args, nargs = { ... }, select("#", ...)
  return function()
    return fn(unpack(args, 1, nargs))
  end
end

--------------------------------------------------------------------------
-- the coroutine scheduler over a libcurl multi
--------------------------------------------------------------------------

-- The transport a task of the curl scheduler sends through: each capability yields to the scheduler.
local Task = { now = core.now }
Task.__index = Task

function Task.send(_, request)
  return co_yield(TAG, "send", request)
end

function Task.download(_, request, tmp)
  return co_yield(TAG, "download", request, tmp)
end

function Task.upload(_, request)
  return co_yield(TAG, "upload", request)
end

function Task:sleep(seconds)
  if self.user_sleep then
    return self.user_sleep(seconds) -- a caller's sleep (a test clock) is called as is
  end
  return co_yield(TAG, "sleep", seconds)
end

function Task.commit(_, group, value)
  return co_yield(TAG, "commit", group, value)
end

local sched_mt = {}
sched_mt.__index = sched_mt

--- curl_scheduler(t, n) -> sched | nil, err: a multi with t's TLS and proxy settings
function _M.curl_scheduler(t, n)
  local m, err = core.curl_multi(t.tls)
  if not m then
    return nil, err
  end
  return setmetatable({
    n = n, m = m, turns = true,
    io = setmetatable({ name = t.name, user_sleep = t.user_sleep }, Task),
    waiting = {},   -- tasks not started yet
    ready = {},     -- { task, values... } to resume
    by_token = {},  -- token -> task, a transfer in flight
    timers = {},    -- { at =, task = }
    parked = {},    -- task -> true
    files = {},     -- token -> the temporary file of its download, until its task is resumed with the result
    commits = {},   -- { group =, { task =, value = }... } per group committed to in this turn, in order
    commit_of = {}, -- group -> its entry in commits
    running = 0, token = 0,
  }, sched_mt)
end

--- spawn(fn, ...) -> task; fn(...) runs in its own coroutine, io is sched.io
function sched_mt:spawn(fn, ...)
  local task = { done = false, co = co_create(bind(fn, ...)) }
  self.waiting[#self.waiting + 1] = task
  return task
end

--- park(task): inside that task, wait until wake(task)
function sched_mt.park()
  return co_yield(TAG, "park")
end

function sched_mt:wake(task)
  if self.parked[task] then
    self.parked[task] = nil
    self.ready[#self.ready + 1] = { task }
  end
end

function sched_mt.notify()
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
  if op == "send" or op == "download" or op == "upload" then
    self.token = self.token + 1
    local token = self.token
    local added, aerr
    if op ~= "download" then -- an upload is told by its request.body_file
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
    self.timers[#self.timers + 1] = { at = core.now() + (type(a) == "number" and a or 0), task = task }
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
  local now, soonest = core.now(), nil
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

-- The transfers the multi finished: their tasks are ready with the results
local function absorb(self, done)
  for i = 1, #done do
    local d = done[i]
    local task = self.by_token[d[1]]
    if task then
      self.by_token[d[1]] = nil
      self.ready[#self.ready + 1] = { task, d[2], d[3], token = d[1] }
    end
  end
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
  absorb(self, self.m:wait(delay or 1))
  return true
end

--- kick(): starts the tasks that may start and puts their requests on the wire, without waiting
function sched_mt:kick()
  start_waiting(self)
  absorb(self, self.m:wait(0))
end

-- One turn: a step, then the group commits of the tasks it resumed (so nothing committed ever waits
-- for the network). Returns false when nothing can move any more.
local function turn(self)
  local moved = step(self)
  return flush_commits(self) or moved
end

--- drive(pred): run until pred() is true or nothing can move
function sched_mt:drive(pred)
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
  self.m:close()
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

local ngx_mt = {}
ngx_mt.__index = ngx_mt

local WAIT = 3600 -- seconds a semaphore wait lasts before it is simply waited on again

--- ngx_scheduler(t, n) -> sched: at most n ngx.threads, each task sending through t
function _M.ngx_scheduler(t, n)
  local semaphore = require "ngx.semaphore"
  return setmetatable({ n = n, io = t, waiting = {}, tasks = {}, running = 0, parked = 0,
                        new_sema = semaphore.new, sema = semaphore.new() }, ngx_mt)
end

-- Tasks start at once (a thread runs until its first cosocket wait: its request is on the wire).
function ngx_mt:spawn(fn, ...)
  local task = { done = false, fn = bind(fn, ...) }
  self.waiting[#self.waiting + 1] = task
  self:kick()
  return task
end

function ngx_mt:kick()
  while self.running < self.n and #self.waiting > 0 and not self.closed do
    local task = remove(self.waiting, 1)
    self.running = self.running + 1
    self.tasks[#self.tasks + 1] = task
    task.thread = ngx.thread.spawn(function() -- luacheck: ignore 113
      local ok, v = errors.pcall(task.fn)
      task.done = true
      self.running = self.running - 1
      if not ok then
        task.err = raised(v)
      end
      self.sema:post(1)
    end)
  end
end

function ngx_mt:park(task)
  task.parked = true
  task.sema = task.sema or self.new_sema()
  self.parked = self.parked + 1
  self.sema:post(1)
  while task.parked and not self.closed do
    task.sema:wait(WAIT)
  end
end

function ngx_mt:wake(task)
  if task.parked then
    task.parked = false
    self.parked = self.parked - 1
    task.sema:post(1)
  end
end

function ngx_mt:notify()
  self.sema:post(1)
end

-- Waits on the semaphore each task posts when it ends, parks or notifies: no polling.
function ngx_mt:drive(pred)
  while not (pred and pred()) do
    self:kick()
    if self.running == self.parked and #self.waiting == 0 then
      return -- every task left is parked (or none is left)
    end
    self.sema:wait(WAIT)
  end
end

function ngx_mt:close()
  if self.closed then
    return
  end
  self.closed = true
  for i = 1, #self.tasks do
    local task = self.tasks[i]
    if not task.done and task.thread then
      pcall(ngx.thread.kill, task.thread) -- luacheck: ignore 113
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
  if io.commit then -- only the curl scheduler's task transport has one
    return io:commit(group, value)
  end
  local err = run_flush(group, { value })[1]
  if err ~= nil then
    return nil, err
  end
  return true
end

--- run(sched, t, items, fn) -> failures ({ [i] = err } for each fn that raised)
function _M.run(sched, t, items, fn)
  local failures = {}
  if not sched then
    for i = 1, #items do
      local ok, v = errors.pcall(fn, items[i], t)
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
