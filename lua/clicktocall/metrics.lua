--- clicktocall.metrics: Prometheus metrics of a client's calls and jobs, inside nginx and out.
--
--   local metrics = require "clicktocall.metrics"
--   local m = assert(metrics.new { dict = "ctc_metrics" })  -- OpenResty: a lua_shared_dict, all workers add up
--   local m = assert(metrics.new {})                         -- plain Lua: a table in this process
--   local client = m:instrument(clicktocall.new { ..., on_event = m.on_event })
--
-- Options of new{}: dict (the name of a lua_shared_dict; nil: a table), buckets (the latency histograms'
-- upper bounds in seconds, ascending), on_event (the caller's own hook, called after the metrics' with
-- the same event), now (function() -> Unix seconds, for the timestamps; default ngx.time or os.time).
--
-- Two sources, so that nothing is counted twice:
--   m.on_event          every HTTP request the library sends (event type "response") and every retry:
--                       clicktocall_requests_total, _request_duration_seconds, _retries_total; each request
--                       the rate_limit refused or made wait: clicktocall_rate_limited_total, _rate_limit_waits_total
--   m:instrument(c)     every call made through the returned client, with what events do not carry: the
--                       outcome of the call as a whole (its err.kind), its time with the retries, dials the
--                       guard refused (nothing is sent, so no event), the balance read, the jobs' summaries.
--                       Without it, the caller reports these with m:call, m:dial_refused, m:balance, m:job.
-- m:render() is the text exposition format (version 0.0.4) for a `location = /metrics`;
-- m:write_textfile(path) writes it atomically for node_exporter's textfile collector.
--
-- Inside nginx each count is one ngx.shared.DICT:incr(key, n, 0): atomic across workers, so a scrape
-- handled by any worker sees every worker's counts. A histogram stores one count per bucket (one incr an
-- observation) and the exposition sums them, so _count always equals the +Inf bucket.

local type = type
local pairs = pairs
local ipairs = ipairs
local select = select
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local rawset = rawset
local floor = math.floor
local huge = math.huge
local EXACT = require("clicktocall.limits").exact_double -- 2^53
local format = string.format
local gsub = string.gsub
local match = string.match
local concat = table.concat
local sort = table.sort
local unpack = table.unpack or unpack -- luacheck: ignore 143
local os_time = os.time
local os_rename = os.rename
local os_remove = os.remove

local errors = require "clicktocall.errors"
local core_ok, core = pcall(require, "clicktocall.core")
if not core_ok then
  core = {}
end

local _M = { _VERSION = require "clicktocall.version" }

local mt = {}
mt.__index = mt

--- Upper bounds of the latency histograms, in seconds: an API call takes tens of milliseconds to seconds,
-- a download up to download_timeout (300 s by default).
_M.BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300 }

-- The metric families, in the exposition's order: name, type, help.
local FAMILIES = {
  { "clicktocall_requests_total", "counter",
    "HTTP requests sent to the provider, by call (op) and outcome (ok, or the error's kind)." },
  { "clicktocall_request_duration_seconds", "histogram", "Time of each HTTP request to the provider, by call." },
  { "clicktocall_retries_total", "counter",
    "Requests tried again after a transient failure, by call and the failure's kind." },
  { "clicktocall_calls_total", "counter",
    "Calls made through the client, by call (op) and outcome (ok, or the error's kind)." },
  { "clicktocall_call_duration_seconds", "histogram",
    "Time of each call as its caller saw it, retries and their waits included, by call." },
  { "clicktocall_dials_refused_total", "counter",
    "Dials the dial guard refused because the same dial was just placed; nothing was sent." },
  { "clicktocall_rate_limited_total", "counter",
    "Requests the client's rate_limit refused, by call (op); nothing was sent (a job's pages and downloads too)." },
  { "clicktocall_rate_limit_waits_total", "counter",
    "Times a request waited for its turn under the client's rate_limit (its wait option), by call (op)." },
  { "clicktocall_balance_seconds", "gauge",
    "Talk time left at the last balance read, as the provider gives it (taken as seconds: docs/PROVIDER.md)." },
  { "clicktocall_balance_read_timestamp_seconds", "gauge", "When the balance was last read (Unix time)." },
  { "clicktocall_job_runs_total", "counter",
    "Runs of the jobs (archive, sync), by job and outcome (ok, or the error's kind)." },
  { "clicktocall_job_duration_seconds", "histogram", "Time of each run of a job, by job." },
  { "clicktocall_job_last_success_timestamp_seconds", "gauge", "When the job last ran to its end (Unix time)." },
  { "clicktocall_archive_recordings_total", "counter",
    "Recordings the archive handled, by result (downloaded, uploaded, skipped, no_recording, failed)." },
  { "clicktocall_archive_failures_total", "counter",
    "Recordings that failed in the archive, by stage (download; upload: whole locally, not in the store)." },
  { "clicktocall_archive_bytes_total", "counter", "Bytes of recordings the archive downloaded." },
  { "clicktocall_archive_failed_recordings", "gauge", "Recordings that failed in the archive's last run." },
  { "clicktocall_archive_expiring_recordings", "gauge",
    "Recordings that failed in the archive's last run and expire within 24 hours: run it again before." },
  { "clicktocall_sync_records_total", "counter",
    "Records the sync handled, by result (delivered, skipped: delivered before)." },
  { "clicktocall_sync_through_timestamp_seconds", "gauge",
    "The sync's cursor: every record that ended before it has been delivered (Unix time)." },
  { "clicktocall_sync_lag_seconds", "gauge",
    "How far the sync's cursor was behind the clock when its last run ended." },
}
local FAMILY = {}
for i, f in ipairs(FAMILIES) do
  FAMILY[f[1]] = { index = i, type = f[2], help = f[3] }
end

local KNOWN = { dict = true, buckets = true, on_event = true, now = true }

--------------------------------------------------------------------------
-- the text format
--------------------------------------------------------------------------

--- A label value as the text format wants it: backslash, double quote and line feed escaped.
local function escape(v)
  return (gsub(tostring(v), '[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end
_M.escape = escape

--- labels{ "name", value, ... } -> 'name="value",...' (in the order given)
local function labels(...)
  local n = select("#", ...)
  local out = {}
  for i = 1, n, 2 do
    out[#out + 1] = select(i, ...) .. '="' .. escape(select(i + 1, ...)) .. '"'
  end
  return concat(out, ",")
end

-- A sample's value: whole numbers without a fraction, others with 17 significant digits (exact).
local function number(v)
  if v ~= v then
    return "NaN"
  elseif v == huge then
    return "+Inf"
  elseif v == -huge then
    return "-Inf"
  elseif floor(v) == v and v > -EXACT and v < EXACT then
    return format("%d", v)
  end
  local s = format("%.15g", v)
  if tonumber(s) ~= v then
    s = format("%.17g", v)
  end
  return s
end

--------------------------------------------------------------------------
-- stores: a shared dict or a table, both { incr, set, each }
--------------------------------------------------------------------------

local function table_store()
  local t = {}
  return {
    incr = function(key, n)
      t[key] = (t[key] or 0) + n
    end,
    set = function(key, v)
      t[key] = v
    end,
    each = function()
      local out = {}
      for k, v in pairs(t) do
        out[#out + 1] = { k, v }
      end
      return out
    end,
  }
end

local function dict_store(dict, name)
  local ngx = ngx -- luacheck: ignore 113
  local warned = false
  local function failed(what, key, err)
    -- a full dict must not fail the call it observes: say so once a worker, in nginx's error log
    if not warned then
      warned = true
      ngx.log(ngx.WARN, "clicktocall.metrics: could not ", what, " ", key, " in lua_shared_dict ", name, ": ",
              tostring(err), " (make the dict larger)")
    end
  end
  return {
    incr = function(key, n)
      local ok, err = dict:incr(key, n, 0)
      if not ok then
        failed("count", key, err)
      end
    end,
    set = function(key, v)
      local ok, err = dict:set(key, v)
      if not ok then
        failed("set", key, err)
      end
    end,
    each = function()
      local out = {}
      for _, k in ipairs(dict:get_keys(0)) do
        if match(k, "^clicktocall_") then
          local v = dict:get(k)
          if type(v) == "number" then
            out[#out + 1] = { k, v }
          end
        end
      end
      return out
    end,
  }
end

--------------------------------------------------------------------------
-- new
--------------------------------------------------------------------------

local function argument(message, field)
  return nil, errors.new("argument", "clicktocall.metrics.new: " .. message, { field = field })
end

local function check_buckets(b)
  if type(b) ~= "table" or #b == 0 then
    return "buckets must be a non-empty list of numbers in ascending order"
  end
  local prev = -huge
  for i = 1, #b do
    local v = b[i]
    if type(v) ~= "number" or v ~= v or v <= prev or v == huge then
      return "buckets must be a non-empty list of finite numbers in ascending order"
    end
    prev = v
  end
  return nil
end

--- new{ dict =, buckets =, on_event =, now = } -> metrics | nil, err (kind "argument")
function _M.new(opts)
  if opts == nil then
    opts = {}
  end
  if type(opts) ~= "table" then
    return argument("options must be a table, got " .. type(opts))
  end
  for k in pairs(opts) do
    if not KNOWN[k] then
      return argument("unknown option '" .. tostring(k) .. "'", tostring(k))
    end
  end
  local store
  if opts.dict ~= nil then
    if type(opts.dict) ~= "string" or opts.dict == "" then
      return argument("dict must be the name of a lua_shared_dict", "dict")
    end
    local shared = type(ngx) == "table" and ngx.shared -- luacheck: ignore 113
    if not shared then
      return argument("dict needs OpenResty (ngx.shared); outside nginx leave it out to count in a table", "dict")
    end
    local dict = shared[opts.dict]
    if not dict then
      return argument("there is no lua_shared_dict " .. opts.dict .. " (declare it in nginx.conf's http block)",
                      "dict")
    end
    store = dict_store(dict, opts.dict)
  else
    store = table_store()
  end
  local buckets = opts.buckets or _M.BUCKETS
  local why = check_buckets(buckets)
  if why then
    return argument(why, "buckets")
  end
  if opts.on_event ~= nil and type(opts.on_event) ~= "function" then
    return argument("on_event must be a function", "on_event")
  end
  if opts.now ~= nil and type(opts.now) ~= "function" then
    return argument("now must be a function", "now")
  end
  local now = opts.now or (type(ngx) == "table" and ngx.time) or os_time -- luacheck: ignore 113
  local clock = core.now
  if not clock and type(ngx) == "table" then -- luacheck: ignore 113
    clock = function() ngx.update_time() return ngx.now() end -- luacheck: ignore 113
  end
  local self = setmetatable({ store = store, buckets = { unpack(buckets) }, now = now, clock = clock or os_time },
                            mt)
  local user = opts.on_event
  self.on_event = function(event)
    self:event(event)
    if user then
      user(event)
    end
  end
  return self
end

--------------------------------------------------------------------------
-- counting
--------------------------------------------------------------------------

-- A histogram observation: one count in the first bucket that holds v (le >= v), or none (+Inf only),
-- the series' count under le="+Inf" holding every observation, and the sum.
function mt:observe(name, lab, v)
  if type(v) ~= "number" or v ~= v then
    return
  end
  local b = self.buckets
  local le = "+Inf"
  for i = 1, #b do
    if v <= b[i] then
      le = number(b[i])
      break
    end
  end
  local sep = lab ~= "" and "," or ""
  self.store.incr(name .. "_bucket{" .. lab .. sep .. 'le="' .. le .. '"}', 1)
  self.store.incr(name .. "_sum{" .. lab .. "}", v)
end

local function series(name, lab)
  return lab ~= "" and (name .. "{" .. lab .. "}") or name
end

--- The outcome an event or an error stands for: "ok", or the error's kind.
local function outcome_of_error(e)
  if e == nil then
    return "ok"
  end
  if type(e) == "table" then
    return type(e.kind) == "string" and e.kind or "error"
  end
  -- an event's error is tostring(err): "[kind] message" or "[kind][CURLE_X] message (n)"
  return match(tostring(e), "^%[([%w_]+)%]") or "error"
end
_M.outcome = outcome_of_error

--- m:event(event): what m.on_event does with one event.
function mt:event(e)
  if type(e) ~= "table" then
    return
  end
  local op = e.op ~= nil and tostring(e.op) or "unknown"
  if e.type == "response" then
    local outcome = type(e.kind) == "string" and e.kind or outcome_of_error(e.error)
    self.store.incr(series("clicktocall_requests_total", labels("op", op, "outcome", outcome)), 1)
    self:observe("clicktocall_request_duration_seconds", labels("op", op), e.elapsed)
  elseif e.type == "retry" then
    local reason = type(e.kind) == "string" and e.kind or outcome_of_error(e.error)
    self.store.incr(series("clicktocall_retries_total", labels("op", op, "reason", reason)), 1)
  elseif e.type == "rate_limited" then
    self.store.incr(series("clicktocall_rate_limited_total", labels("op", op)), 1)
  elseif e.type == "rate_wait" then
    self.store.incr(series("clicktocall_rate_limit_waits_total", labels("op", op)), 1)
  end
end

--- m:call(op, err_or_nil [, seconds]): one call's outcome; a dial the guard refused (kind "duplicate")
-- counts in clicktocall_dials_refused_total too.
function mt:call(op, err, seconds)
  op = tostring(op)
  local outcome = outcome_of_error(err)
  self.store.incr(series("clicktocall_calls_total", labels("op", op, "outcome", outcome)), 1)
  if seconds ~= nil then
    self:observe("clicktocall_call_duration_seconds", labels("op", op), seconds)
  end
  if outcome == "duplicate" then
    self:dial_refused()
  end
end

--- m:dial_refused(): a dial the dial guard refused (for callers that do not report the call with m:call).
function mt:dial_refused()
  self.store.incr("clicktocall_dials_refused_total", 1)
end

--- m:balance(value): the talk time read, in seconds.
function mt:balance(value)
  value = tonumber(value)
  if value then
    self.store.set("clicktocall_balance_seconds", value)
    self.store.set("clicktocall_balance_read_timestamp_seconds", self.now())
  end
end

local function count(v)
  if type(v) == "table" then
    return #v
  end
  return tonumber(v) or 0
end

--- m:job(name, summary [, err [, seconds]]): a job's run ("archive" or "sync"; another name counts its
-- runs only). summary is what the job returned, nil when it failed with err. A dry run's plan counts
-- nothing: it did none of the work the metrics describe.
function mt:job(name, summary, err, seconds)
  if type(summary) == "table" and summary.dry_run then
    return
  end
  name = tostring(name)
  local store = self.store
  local jl = labels("job", name)
  local outcome = type(summary) == "table" and "ok" or outcome_of_error(err or "[error]")
  store.incr(series("clicktocall_job_runs_total", labels("job", name, "outcome", outcome)), 1)
  if seconds ~= nil then
    self:observe("clicktocall_job_duration_seconds", jl, seconds)
  end
  if outcome ~= "ok" then
    return
  end
  local now = self.now()
  store.set(series("clicktocall_job_last_success_timestamp_seconds", jl), now)
  if name == "archive" then
    for _, result in ipairs { "downloaded", "uploaded", "skipped", "no_recording", "failed" } do
      if result ~= "uploaded" or summary.uploaded ~= nil then -- uploaded: only when the run uploads
        store.incr(series("clicktocall_archive_recordings_total", labels("result", result)), count(summary[result]))
      end
    end
    -- failed by stage (the summary's failed[i].stage): a failed upload left the recording whole locally
    local stages = { download = 0 }
    if summary.uploaded ~= nil then
      stages.upload = 0
    end
    for _, f in ipairs(type(summary.failed) == "table" and summary.failed or {}) do
      local stage = type(f) == "table" and f.stage == "upload" and "upload" or "download"
      stages[stage] = (stages[stage] or 0) + 1
    end
    for _, stage in ipairs { "download", "upload" } do
      if stages[stage] then
        store.incr(series("clicktocall_archive_failures_total", labels("stage", stage)), stages[stage])
      end
    end
    store.incr("clicktocall_archive_bytes_total", count(summary.bytes))
    store.set("clicktocall_archive_failed_recordings", count(summary.failed))
    store.set("clicktocall_archive_expiring_recordings", count(summary.expiring))
  elseif name == "sync" then
    store.incr(series("clicktocall_sync_records_total", labels("result", "delivered")), count(summary.delivered))
    store.incr(series("clicktocall_sync_records_total", labels("result", "skipped")), count(summary.skipped))
    local through = tonumber(summary.through)
    if through then
      store.set("clicktocall_sync_through_timestamp_seconds", through)
      local lag = now - through
      store.set("clicktocall_sync_lag_seconds", lag > 0 and lag or 0)
    end
  end
end

--------------------------------------------------------------------------
-- a client that reports its calls
--------------------------------------------------------------------------

-- method -> op (the name events use)
local CALLS = { bind_seat = "bind_seat", dial = "dial", balance = "balance", records_page = "records_page",
                download_recording = "download" }
local JOBS = { archive_recordings = "archive", sync = "sync" }

local function pack(...)
  return { n = select("#", ...), ... }
end

--- m:instrument(client) -> a client that reports every call to m (the same methods, the same results)
function mt:instrument(client)
  local m = self
  local proxy = {}
  return setmetatable(proxy, {
    __index = function(_, k)
      local v = client[k]
      if type(v) ~= "function" then
        return v
      end
      local f
      if CALLS[k] then
        local op = CALLS[k]
        f = function(me, ...)
          local t0 = m.clock()
          local r = pack(v(me == proxy and client or me, ...))
          local e = r[1] == nil and r[2] or nil
          m:call(op, e, m.clock() - t0)
          if op == "balance" and r[1] ~= nil then
            m:balance(r[1])
          end
          return unpack(r, 1, r.n)
        end
      elseif JOBS[k] then
        local job = JOBS[k]
        f = function(me, ...)
          local t0 = m.clock()
          local r = pack(v(me == proxy and client or me, ...))
          m:job(job, r[1], r[2], m.clock() - t0)
          return unpack(r, 1, r.n)
        end
      else
        f = function(me, ...)
          return v(me == proxy and client or me, ...)
        end
      end
      rawset(proxy, k, f)
      return f
    end,
    __tostring = function() return tostring(client) end,
  })
end

--------------------------------------------------------------------------
-- the exposition
--------------------------------------------------------------------------

local function family_of(key)
  local name = match(key, "^[%w_:]+")
  if FAMILY[name] then
    return name
  end
  local base = match(name, "^(.-)_bucket$") or match(name, "^(.-)_sum$")
  if base and FAMILY[base] and FAMILY[base].type == "histogram" then
    return base
  end
  return nil
end

-- A histogram family's lines: per series (its labels without le), every bucket cumulated, _sum and _count.
local function histogram_lines(name, samples, out)
  local by = {}
  local order = {}
  local function entry_of(lab)
    if not by[lab] then
      by[lab] = { counts = {}, sum = 0 }
      order[#order + 1] = lab
    end
    return by[lab]
  end
  for _, s in ipairs(samples) do
    local key, v = s[1], s[2]
    local lab, le = match(key, "^" .. name .. "_bucket{(.-),?le=\"([^\"]*)\"}$")
    if lab then
      local entry = entry_of(lab)
      entry.counts[le] = (entry.counts[le] or 0) + v
    else
      lab = match(key, "^" .. name .. "_sum{(.*)}$")
      if lab then
        entry_of(lab).sum = v
      end
    end
  end
  sort(order)
  return function(buckets)
    for _, lab in ipairs(order) do
      local entry = by[lab]
      local sep = lab ~= "" and "," or ""
      local total = 0
      for i = 1, #buckets do
        local le = number(buckets[i])
        total = total + (entry.counts[le] or 0)
        out[#out + 1] = format('%s_bucket{%s%sle="%s"} %s', name, lab, sep, le, number(total))
      end
      total = total + (entry.counts["+Inf"] or 0)
      -- a count in a bucket this process does not know (buckets changed while the dict lived) is kept in +Inf
      for le, n in pairs(entry.counts) do
        local known = le == "+Inf"
        for i = 1, #buckets do
          known = known or number(buckets[i]) == le
        end
        if not known then
          total = total + n
        end
      end
      out[#out + 1] = format('%s_bucket{%s%sle="+Inf"} %s', name, lab, sep, number(total))
      out[#out + 1] = format("%s_sum%s %s", name, lab ~= "" and ("{" .. lab .. "}") or "", number(entry.sum))
      out[#out + 1] = format("%s_count%s %s", name, lab ~= "" and ("{" .. lab .. "}") or "", number(total))
    end
  end
end

-- counters without labels are shown at 0 before their first count, so that rate() and alerts see them
local ALWAYS = { clicktocall_dials_refused_total = true }

--- m:render() -> the text exposition format (Content-Type: text/plain; version=0.0.4)
function mt:render()
  local grouped = {}
  for _, s in ipairs(self.store.each()) do
    local fam = family_of(s[1])
    if fam then
      local g = grouped[fam]
      if not g then
        g = {}
        grouped[fam] = g
      end
      g[#g + 1] = s
    end
  end
  local out = {}
  for _, f in ipairs(FAMILIES) do
    local name, kind, help = f[1], f[2], f[3]
    out[#out + 1] = "# HELP " .. name .. " " .. help
    out[#out + 1] = "# TYPE " .. name .. " " .. kind
    local samples = grouped[name] or {}
    if kind == "histogram" then
      histogram_lines(name, samples, out)(self.buckets)
    else
      sort(samples, function(a, b) return a[1] < b[1] end)
      if #samples == 0 and ALWAYS[name] then
        out[#out + 1] = name .. " 0"
      end
      for _, s in ipairs(samples) do
        out[#out + 1] = s[1] .. " " .. number(s[2])
      end
    end
  end
  out[#out + 1] = ""
  return concat(out, "\n")
end

--- m:write_textfile(path) -> true | nil, err (kind "io")
-- For node_exporter's textfile collector: the text goes to a temporary file in path's directory (a name
-- the collector ignores: it reads only *.prom), is made durable, then renamed over path, so a scrape
-- never reads half a file.
function mt:write_textfile(path)
  if type(path) ~= "string" or path == "" then
    return nil, errors.new("argument", "write_textfile: path must be a file name", { field = "path" })
  end
  local dir, base = match(path, "^(.*)/([^/]*)$")
  if not dir then
    dir, base = ".", path
  elseif dir == "" then
    dir = "/"
  end
  if base == "" then
    return nil, errors.new("argument", "write_textfile: " .. path .. " names a directory, not a file",
                           { field = "path" })
  end
  local text = self:render()
  local function fail(message)
    return nil, errors.new("io", "could not write the metrics to " .. path .. ": " ..
                           (type(message) == "table" and tostring(message.message) or tostring(message)),
                           { sent = false, retryable = false })
  end
  local tmp, ok, why
  for _ = 1, 8 do
    tmp = format("%s/.%s.tmp-%06d", dir, base, math.random(0, 999999))
    if core.file_sink then
      -- exclusive create, then fsync and close in finish (removed on failure)
      local sink, serr = core.file_sink(tmp)
      if sink then
        ok, why = sink:write(text)
        if ok then
          ok, why = sink:finish()
        end
        if not ok then
          sink:abort()
          return fail(why)
        end
        break
      end
      why = serr
      tmp = nil
    else
      local f, ferr = io.open(tmp, "wb")
      if f then
        ok, why = f:write(text)
        local cok, cerr = f:close()
        if not ok or not cok then
          os_remove(tmp)
          return fail(why or cerr)
        end
        break
      end
      why, tmp = ferr, nil
    end
  end
  if not tmp then
    return fail(why)
  end
  local rok, rerr = os_rename(tmp, path)
  if not rok then
    os_remove(tmp)
    return fail(rerr)
  end
  if core.fsync then
    core.fsync(dir) -- the rename itself survives a crash
  end
  return true
end

return _M
