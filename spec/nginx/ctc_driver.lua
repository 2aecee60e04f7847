-- Driver for spec/ngx_transport_spec.lua: runs clicktocall.transport.ngx inside nginx and answers JSON.
local cjson = require "cjson.safe"
local ngx_transport = require "clicktocall.transport.ngx"
local dial_guard = require "clicktocall.dial_guard"
local errors = require "clicktocall.errors"

local _M = {}

local function vm_hwm_kb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)"))
end

local function summarize(res, err)
  if not res then
    return { ok = false, err = { kind = err.kind, message = err.message, sent = err.sent,
                                 retryable = err.retryable, is_error = errors.is_error(err),
                                 text = tostring(err) } }
  end
  local out = { ok = true, status = res.status, headers = res.headers, body_len = #res.body }
  if #res.body <= 65536 then
    out.body = res.body
  end
  return out
end

-- One call of the transport as described by a decoded JSON spec:
-- { req = {...}, opts = {...}, sink_file = path|nil, sink_fail_after = n|nil }
local function run(spec)
  local transport, terr = ngx_transport.new(spec.opts or {})
  if not transport then
    return { ok = false, new_err = terr }
  end
  local req = spec.req or {}
  local f
  if spec.sink_file then
    f = assert(io.open(spec.sink_file, "wb"))
    local calls = 0
    req.sink = function(chunk)
      calls = calls + 1
      if spec.sink_fail_after and calls > spec.sink_fail_after then
        return nil, "disk full (simulated)"
      end
      return f:write(chunk)
    end
  end
  local hwm0 = vm_hwm_kb()
  local t0 = transport:now()
  local res, err = transport:send(req)
  local out = summarize(res, err)
  out.elapsed = transport:now() - t0
  out.hwm_before_kb, out.hwm_after_kb = hwm0, vm_hwm_kb()
  out.lua_kb = collectgarbage("count")
  out.pid = ngx.worker.pid()
  if f then f:close() end
  return out
end

-- Wait until the shared-dict key is set and was already set at the previous poll, so that at least one
-- whole event-loop turn (one epoll_wait) ran after whoever set it: bytes sent before the key was set have
-- been seen by every event handler by then. Deadline: 10 s.
local function await_key(key)
  local dict = ngx.shared.ctc_results
  local seen = false
  local deadline = ngx.now() + 10
  while ngx.now() < deadline do
    if dict:get(key) then
      if seen then
        return true
      end
      seen = true
    end
    ngx.sleep(0.005)
    ngx.update_time()
  end
  return false
end

-- { seq = { { req = {...}|nil, await = key|nil }, ... }, opts = {...} }: the requests one after another in this
-- handler (nothing else runs in the worker between them unless a step awaits a key; a step without a
-- request only waits).
local function run_seq(spec)
  local out = {}
  for i, step in ipairs(spec.seq) do
    if step.await and not await_key(step.await) then
      out[i] = { ok = false, await_timeout = step.await }
      break
    end
    if step.req then
      out[i] = run({ req = step.req, opts = spec.opts })
    end
  end
  return out
end

function _M.drive()
  ngx.req.read_body()
  local spec = cjson.decode(ngx.req.get_body_data() or "{}") or {}
  if spec.seq then
    ngx.say(cjson.encode(run_seq(spec)))
    return
  end
  local results = {}
  for i = 1, spec.n or 1 do
    results[i] = run(spec)
  end
  ngx.say(cjson.encode(spec.n and results or results[1]))
end

function _M.drive_in_timer()
  local semaphore = require "ngx.semaphore"
  ngx.req.read_body()
  local spec = cjson.decode(ngx.req.get_body_data() or "{}") or {}
  local sema = semaphore.new()
  local out
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then return end
    out = run(spec)
    out.phase = ngx.get_phase()
    sema:post(1)
  end)
  if not ok then
    ngx.say(cjson.encode({ ok = false, timer_err = err }))
    return
  end
  sema:wait(30)
  ngx.say(cjson.encode(out))
end

local function store(name, value)
  ngx.shared.ctc_results:set(name, cjson.encode(value))
end

function _M.in_phase(name, port)
  local transport = assert(ngx_transport.new())
  -- a generous bound: the timer runs while the worker starts, on a machine that may be loaded
  local res, err = transport:send{ method = "GET", url = "http://127.0.0.1:" .. port .. "/json", timeout = 15 }
  local out = summarize(res, err)
  out.phase = ngx.get_phase()
  store(name, out)
end

function _M.init_worker(port)
  -- in init_worker itself: must fail with the phase named, never raise
  local ok, e = pcall(_M.in_phase, "init_worker", port)
  if not ok then store("init_worker", { raised = tostring(e) }) end
  -- from a timer started there: must work
  ngx.timer.at(0, function(premature)
    if premature then return end
    local t = assert(ngx_transport.new())
    local t0 = t:now()
    t:sleep(0.01)
    local slept = t:now() - t0
    local tok, te = pcall(_M.in_phase, "timer", port)
    if not tok then store("timer", { raised = tostring(te) }) return end
    local v = cjson.decode(ngx.shared.ctc_results:get("timer"))
    v.slept = slept
    store("timer", v)
  end)
end

function _M.results()
  local dict = ngx.shared.ctc_results
  local out = {}
  for _, k in ipairs(dict:get_keys(0)) do
    out[k] = cjson.decode(dict:get(k))
  end
  ngx.say(cjson.encode(out))
end

function _M.click()
  local a = ngx.req.get_uri_args()
  local guard, err = dial_guard.new(a.dict or "clicktocall_dials", tonumber(a.window) or 10)
  if not guard then
    ngx.say(cjson.encode({ new_err = err }))
    return
  end
  if a.delay then ngx.sleep(tonumber(a.delay)) end
  local ok, cerr = guard:check(a.caller, a.callee, a.seat)
  -- the claim is opaque (the time of the claim here): report whether there is one
  ngx.say(cjson.encode({ ok = ok ~= nil, err = cerr, pid = ngx.worker.pid() }))
end

function _M.release()
  local a = ngx.req.get_uri_args()
  local guard = assert(dial_guard.new("clicktocall_dials", 10))
  ngx.say(cjson.encode({ ok = guard:release(a.caller, a.callee, a.seat) }))
end

return _M
