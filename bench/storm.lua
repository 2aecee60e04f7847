--- bench/storm.lua: a fault storm. Drives every call and job of the library against the simulator from several
-- worker processes at once, with random injected faults, then checks what must hold whatever happens.
--
--   lua5.4 bench/storm.lua [--calls 1000] [--workers 4] [--seed N] [--upload 0]
--
-- Run from the repository root after `make`. The seed is printed first: the same seed replays the same
-- choices (the timing of several processes against one simulator is not replayable, the choices are).
-- Prints one summary block; exits 1 when a check fails. Internally it runs itself as `--worker I ...`.
-- Half the archives also upload to the signature-checking S3 endpoint (spec/helpers/s3.lua) whose secret key
-- is the same canary, with the store's own faults injected (--upload 0: no store).
local ROOT = os.getenv("CTC_STORM_ROOT") or "."
package.path = ROOT .. "/lua/?.lua;" .. ROOT .. "/?.lua;" .. package.path
-- the core built for this interpreter, unless a cpath names a build already (a spec requiring this file)
if not package.cpath:find("/build/", 1, true) then
  package.cpath = ROOT .. "/build/" .. (rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")) .. "/?.so;"
    .. package.cpath
end

local clicktocall = require "clicktocall"
local core = require "clicktocall.core"
local cjson = require("cjson").new()

local KINDS = { argument = true, network = true, timeout = true, http = true, api = true, protocol = true,
                duplicate = true, io = true, busy = true, callback = true }
local MIB = 1024 * 1024

local function parse_args(argv)
  local o = {}
  local i = 1
  while argv[i] do
    local k = argv[i]:match("^%-%-(.+)$")
    assert(k, "unexpected argument " .. argv[i])
    o[k] = argv[i + 1]
    i = i + 2
  end
  return o
end

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local d = f:read("*a")
  f:close()
  return d
end

local function write_all(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- the secret as it could leak: raw, base64 padded and unpadded, URL-safe both ways
local function canary_forms(secret)
  local b64 = core.base64(secret)
  local unpadded = b64:gsub("=+$", "")
  local url = b64:gsub("%+", "-"):gsub("/", "_")
  local url_unpadded = url:gsub("=+$", "")
  local forms, seen = {}, {}
  for _, f in ipairs { secret, b64, unpadded, url, url_unpadded } do
    if not seen[f] then seen[f] = true; forms[#forms + 1] = f end
  end
  return forms
end

local function leaks(forms, s)
  for _, f in ipairs(forms) do
    if s:find(f, 1, true) then return true end
  end
  return false
end

-- every field of a value, nested tables too, as one string (for the canary search)
local function serialize(v, depth, seen)
  depth, seen = depth or 0, seen or {}
  if type(v) ~= "table" then return tostring(v) end
  if seen[v] or depth > 6 then return "<cycle>" end
  seen[v] = true
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for _, ks in ipairs(keys) do
    local val = v[ks]
    if val == nil then val = v[tonumber(ks)] end
    parts[#parts + 1] = ks .. "=" .. serialize(val, depth + 1, seen)
  end
  local mt = getmetatable(v)
  local ts = (type(mt) == "table" and mt.__tostring) and ("|" .. tostring(v)) or ""
  return "{" .. table.concat(parts, ",") .. "}" .. ts
end

local function rss_bytes()
  local s = read_all("/proc/self/statm") or "0 0"
  return tonumber(s:match("^%d+%s+(%d+)")) * 4096
end

------------------------------------------------------------------------------------------------------------
-- worker
------------------------------------------------------------------------------------------------------------

local API = {
  bind_seat = "/management/add/setingphone", dial = "/rest/voiceCall/api",
  balance = "/management/customer/isallow", records = "/call/record/voice",
}

-- faults for the provider's four paths: { weight, name, fault table (path filled in) or "refused" }
local API_FAULTS = {
  { 4, "status429", { kind = "status", status = 429, retry_after = 1 } },
  { 3, "status503", { kind = "status", status = 503, retry_after = 2 } },
  { 2, "status500", { kind = "status", status = 500 } },
  { 3, "reset_after_send", { kind = "reset_after_send" } },               -- reset after the request was sent
  { 3, "refused", "refused" },                    -- reset before anything was sent
  { 1, "stall", { kind = "latency", ms = 1300 } },   -- longer than the client's timeout
  { 2, "latency", { kind = "latency", ms = 50 } },
  { 3, "bad_json", { kind = "bad_json" } },
  { 2, "truncated", { kind = "truncated" } },
  { 1, "huge", { kind = "huge", bytes = 2 * MIB } },  -- above max_body
  { 2, "no_meta", { kind = "no_meta" } },
  { 2, "wrong_data", { kind = "wrong_data" } },
  { 2, "api_error", { kind = "api_error", message = "系统繁忙 (busy)" } },
  { 2, "close_after", { kind = "close_after" } },
  { 1, "redirect", { kind = "redirect", status = 302 } },
}
local RECORDS_FAULTS = { { 4, "stuck_ids", { kind = "stuck_ids" } } }
local RECORDING_FAULTS = {
  { 3, "cut", { kind = "cut" } },   -- cut recording, Content-Length whole
  { 2, "truncated_recording", { kind = "truncated" } },
  { 1, "slow_recording", { kind = "slow_recording", rate = 4000 } },  -- 2 s for 8 KB: past download_timeout
  { 2, "status503", { kind = "status", status = 503, retry_after = 1 } },
  { 1, "status404", { kind = "status", status = 404 } },
  { 2, "reset_after_send", { kind = "reset_after_send" } },
  { 1, "stall", { kind = "latency", ms = 1300 } },
  { 1, "close_after", { kind = "close_after" } },
}

-- the object store's faults (spec/helpers/s3_endpoint.py), for archives that upload
local STORE_FAULTS = {
  { 2, "store_forbidden", { name = "forbidden" } },
  { 2, "store_error500", { name = "error500" } },
  { 2, "store_retry_after", { name = "retry_after", seconds = 1 } },
  { 3, "store_cut", { name = "cut", after = 1000 } },
  { 2, "store_accept_short", { name = "accept_short" } },
  { 1, "store_slow", { name = "slow", ms = 2000 } },   -- past download_timeout
  { 1, "store_no_bucket", { name = "no_bucket" } },
}

local function pick(list)
  local total = 0
  for _, e in ipairs(list) do total = total + e[1] end
  local r = math.random() * total
  for _, e in ipairs(list) do
    r = r - e[1]
    if r <= 0 then return e end
  end
  return list[#list]
end

local function concat_lists(a, b)
  local out = {}
  for _, e in ipairs(a) do out[#out + 1] = e end
  for _, e in ipairs(b) do out[#out + 1] = e end
  return out
end

local function worker(o)
  local id = tonumber(o.worker)
  local seed = tonumber(o.seed) + id * 7919
  math.randomseed(seed)
  local secret = assert(os.getenv("CTC_STORM_SECRET"), "CTC_STORM_SECRET unset")
  local forms = canary_forms(secret)
  local calls = tonumber(o.calls)
  local dir = o.dir
  local urls = {}
  for line in io.lines(o.urls) do urls[#urls + 1] = line end
  local from, to = tonumber(o.from), tonumber(o.to)

  local R = {
    worker = id, seed = seed, calls = 0, results = {}, faults = {}, problems = {}, canary_hits = 0,
    events = 0, dial_ok = 0, dial_err_sent = 0, dial_err_unsent = 0, dial_dup_sessions = 0,
    archive_failed_files = 0, downloaded = 0, synced = 0, uploaded = 0,
  }
  local function problem(msg)
    if #R.problems < 50 then R.problems[#R.problems + 1] = msg end
  end
  local function count(t, k) t[k] = (t[k] or 0) + 1 end

  local function on_event(ev)
    R.events = R.events + 1
    if leaks(forms, serialize(ev)) then
      R.canary_hits = R.canary_hits + 1
      problem("canary in an on_event event")
    end
  end

  local function opts(base)
    return {
      base_url = base, app_secret = secret, user_data = o.user_data, timeout = 1, connect_timeout = 1,
      retries = 2, max_body = MIB, backoff_base = 0.01, backoff_max = 0.05, retry_after_max = 1,
      download_timeout = 1.5, on_event = on_event,
      -- backoff and Retry-After are honoured, but slept briefly: a storm, not a wait
      sleep = function(s) core.sleep(math.min(s, 0.02)) end,
    }
  end
  local good = assert(clicktocall.new(opts(o.base)))
  local dead = assert(clicktocall.new(opts("http://127.0.0.1:" .. o.refused)))

  local http = core.curl_transport()
  local function control(path, body)
    local res, err = http:perform { method = "POST", url = o.base .. path,
      headers = { ["Content-Type"] = "application/json" }, body = cjson.encode(body) }
    assert(res and res.status == 200, path .. ": " .. tostring(res and res.body or (err and err.message)))
    return cjson.decode(res.body)
  end

  -- an error as API.md promises it, with no canary anywhere in it
  local function check_err(op, err)
    if not clicktocall.is_error(err) then
      problem(op .. ": not an error object: " .. tostring(err))
      return "bad"
    end
    if not KINDS[err.kind] then problem(op .. ": undocumented kind " .. tostring(err.kind)) end
    if type(err.retryable) ~= "boolean" then problem(op .. ": retryable not a boolean (" .. err.kind .. ")") end
    if type(err.sent) ~= "boolean" then problem(op .. ": sent not a boolean (" .. err.kind .. ")") end
    if type(err.message) ~= "string" or err.message == "" then problem(op .. ": no message") end
    if err.kind == "http" and type(err.status) ~= "number" then problem(op .. ": an http error without status") end
    if (err.kind == "argument" or err.kind == "duplicate" or err.kind == "busy") and err.sent ~= false then
      problem(op .. ": kind " .. err.kind .. " with sent ~= false")
    end
    if err.kind == "argument" and err.retryable ~= false then problem(op .. ": an argument error retryable") end
    if leaks(forms, tostring(err)) or leaks(forms, tostring(err.message)) or leaks(forms, serialize(err)) then
      R.canary_hits = R.canary_hits + 1
      problem(op .. ": canary in an error")
    end
    return tostring(err.kind)
  end

  -- setup, before any fault of ours: a bound seat for the dials (other workers' faults may hit; try again)
  local seat, phone = ("W%d"):format(id), ("+86135%08d"):format(id * 1000 + 1)
  for _ = 1, 50 do
    if good:bind_seat { seat = seat, phone = phone } then break end
  end

  local sessions = {}
  local dl_dir, arch_dir, state = dir .. "/dl", dir .. "/archive", dir .. "/sync-state.json"
  os.execute("mkdir -p " .. sh(dl_dir) .. " " .. sh(arch_dir))

  local ops = {
    { 10, "bind_seat" }, { 14, "dial" }, { 12, "balance" }, { 12, "records_page" }, { 8, "records" },
    { 10, "download_recording" }, { 3, "archive_recordings" }, { 3, "sync" }, { 4, "records_concurrency" },
  }
  local fault_p = tonumber(o.fault_p or 0.5)
  -- RSS after the first thousand calls (the first fifth of a short run) and at the end
  local rss_first, rss_mark = nil, calls >= 2000 and 1000 or math.max(1, math.floor(calls / 5))
  local t0 = core.now()

  local function inject(list, path, name_prefix)
    local e = pick(list)
    if e[3] == "refused" then
      count(R.faults, "refused")
      return true
    end
    local f = {}
    for k, v in pairs(e[3]) do f[k] = v end
    f.path, f.count = path, 1
    control("/_sim/fault", f)
    count(R.faults, (name_prefix or "") .. e[2])
    return false
  end

  -- the store: the same canary as its secret key (from the environment, as the provider's)
  local upload = o.s3 and { url = "s3://storm/w" .. id .. "/", endpoint = o.s3, region = "us-east-1",
                            access_key = o.s3_key, secret_key = secret, path_style = true }
  local function store_fault()
    local e = pick(STORE_FAULTS)
    local f = { method = "PUT", times = math.random(1, 3) }
    for k, v in pairs(e[3]) do f[k] = v end
    local res, err = http:perform { method = "POST", url = o.s3 .. "/_s3/fault",
      headers = { ["Content-Type"] = "application/json" }, body = cjson.encode(f) }
    assert(res and res.status == 200, "/_s3/fault: " .. tostring(res and res.body or (err and err.message)))
    count(R.faults, e[2])
  end

  for k = 1, calls do
    local op = pick(ops)[2]
    local use_dead = false
    if math.random() < fault_p then
      if op == "download_recording" then
        inject(RECORDING_FAULTS, "/recordings/*", "rec_")
      elseif op == "archive_recordings" then
        for _ = 1, math.random(1, 3) do inject(RECORDING_FAULTS, "/recordings/*", "rec_") end
        if math.random() < 0.3 then inject(concat_lists(API_FAULTS, RECORDS_FAULTS), API.records) end
      elseif op == "records_page" or op == "records" or op == "records_concurrency" or op == "sync" then
        local path = API.records
        -- a refused connection needs the dead client, which a job run on the good client cannot use
        local list = concat_lists(API_FAULTS, RECORDS_FAULTS)
        local refused = inject(list, path)
        use_dead = refused and op ~= "sync"
        if refused and op == "sync" then R.faults.refused = R.faults.refused - 1 end
      else
        use_dead = inject(API_FAULTS, API[op])
      end
    end
    local c = use_dead and dead or good
    local ok, res, err
    if op == "bind_seat" then
      res, err = c:bind_seat { seat = ("B%d-%d"):format(id, k % 10), phone = ("+86136%08d"):format(k) }
    elseif op == "dial" then
      res, err = c:dial { caller = phone, callee = ("+86139%08d"):format(id * 100000 + k), seat = seat }
      if res then
        R.dial_ok = R.dial_ok + 1
        if sessions[res] then R.dial_dup_sessions = R.dial_dup_sessions + 1 end
        sessions[res] = true
      elseif err and err.sent == true then
        R.dial_err_sent = R.dial_err_sent + 1
      else
        R.dial_err_unsent = R.dial_err_unsent + 1
      end
    elseif op == "balance" then
      res, err = c:balance()
    elseif op == "records_page" then
      res, err = c:records_page { start_time = from, end_time = to, max_id = math.random(0, 1) == 0 and 0 or 5 }
    elseif op == "records" or op == "records_concurrency" then
      local n = 0
      local args = { start_time = from, end_time = to, limit = math.random(1, 150) }
      if op == "records_concurrency" then args.concurrency = math.random(2, 4) end
      ok, err = pcall(function()
        for _ in c:records(args) do n = n + 1 end
      end)
      res = ok and n or nil
      if not ok and not clicktocall.is_error(err) then problem(op .. " raised a non-error: " .. tostring(err)) end
    elseif op == "download_recording" then
      local path = ("%s/dl-%d.wav"):format(dl_dir, k % 8)
      local info
      res, info = c:download_recording(urls[math.random(#urls)], path)
      if res then
        R.downloaded = R.downloaded + 1
        local data = read_all(path)
        if not data or #data ~= info.bytes then problem("download: file size differs from the result") end
      else
        err = info
      end
    elseif op == "archive_recordings" then
      local a = math.random(from, to)
      local b = math.random(a, to)
      local up = upload and math.random() < 0.5 and upload or nil
      if up and math.random() < fault_p then store_fault() end
      res, err = c:archive_recordings { start_time = a, end_time = b, dir = arch_dir,
                                         concurrency = math.random(1, 4), upload = up }
      if res and up then R.uploaded = R.uploaded + (res.uploaded or 0) end
      if res then
        for _, f in ipairs(res.failed) do
          R.archive_failed_files = R.archive_failed_files + 1
          count(R.results, "archive_file_err:" .. check_err("archive file", f.err))
        end
      end
    elseif op == "sync" then
      local stop_at = math.random() < 0.1 and math.random(1, 50) or nil
      local seen = 0
      res, err = c:sync { state = state, since = from, on_record = function()
        seen = seen + 1
        if stop_at and seen == stop_at then return nil, "storm: the database refused" end
        R.synced = R.synced + 1
        return true
      end }
    end
    -- nothing listens there: a connection that never opened is "network", nothing sent, worth retrying
    if use_dead and err and (err.kind ~= "network" or err.sent ~= false) then
      problem(("%s to a refused port: kind %s, sent %s"):format(op, tostring(err.kind), tostring(err.sent)))
    end
    if use_dead and not err then problem(op .. " to a refused port succeeded") end
    R.calls = R.calls + 1
    if res ~= nil and res ~= false then
      count(R.results, "ok")
    else
      count(R.results, check_err(op, err))
    end
    -- the fault may not have been taken (another worker's call, or the op failed first): drop leftovers now
    -- and then so that faults do not pile up across the run
    if k % 50 == 0 then control("/_sim/fault/clear", {}) end
    if k == rss_mark then rss_first = rss_bytes() end
    if k % 250 == 0 then
      print(("worker %d: %d/%d calls, %.1f s"):format(id, k, calls, core.now() - t0))
      io.stdout:flush()
    end
  end
  -- --plant_leak 1: print the secret's URL-safe base64, so the run must fail (the spec's control)
  if o.plant_leak then print("worker: " .. forms[#forms]) end
  -- every session id a dial returned is a call the simulator placed (a recorded one: its recording exists)
  R.dial_unknown_sessions = 0
  for sid in pairs(sessions) do
    local res = http:perform { method = "GET", url = o.base .. "/_sim/recording_info?session_id=" .. sid }
    if not res or res.status ~= 200 then R.dial_unknown_sessions = R.dial_unknown_sessions + 1 end
  end
  R.rss_first, R.rss_last = rss_first or rss_bytes(), rss_bytes()
  R.rss_mark = rss_mark
  R.seconds = core.now() - t0
  good:close()
  dead:close()
  http:close()
  write_all(o.out, cjson.encode(R))
  print(("worker %d: done, %d calls in %.1f s"):format(id, R.calls, R.seconds))
end

------------------------------------------------------------------------------------------------------------
-- the storm: start the simulator, run the workers, check
------------------------------------------------------------------------------------------------------------

local function find_files(dir)
  local out = {}
  local p = io.popen("find " .. sh(dir) .. " -type f 2>/dev/null")
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

local function sha256_files(paths)
  local out = {}
  for i = 1, #paths, 200 do
    local chunk = {}
    for j = i, math.min(i + 199, #paths) do chunk[#chunk + 1] = sh(paths[j]) end
    local p = io.popen("sha256sum " .. table.concat(chunk, " ") .. " 2>/dev/null")
    for l in p:lines() do
      local h, f = l:match("^(%x+)%s+%*?(.+)$")
      if h then out[f] = h end
    end
    p:close()
  end
  return out
end

-- every manifest entry's file whole; nothing in the directory that the manifest does not name
local function check_archive(dir, report)
  local files = find_files(dir)
  local listed = {}
  local manifest = read_all(dir .. "/manifest.jsonl") or ""
  local entries = {}
  for line in manifest:gmatch("[^\n]+") do
    local ok, e = pcall(cjson.decode, line)
    if not ok or type(e) ~= "table" then
      report.bad[#report.bad + 1] = dir .. ": a manifest line that is not JSON"
    else
      entries[#entries + 1] = e
      listed[dir .. "/" .. tostring(e.file)] = true
    end
  end
  local paths = {}
  for _, e in ipairs(entries) do paths[#paths + 1] = dir .. "/" .. tostring(e.file) end
  local sums = sha256_files(paths)
  for _, e in ipairs(entries) do
    local p = dir .. "/" .. tostring(e.file)
    local data = read_all(p)
    if not data then
      report.bad[#report.bad + 1] = p .. ": in the manifest, missing"
    elseif #data ~= e.bytes then
      report.bad[#report.bad + 1] = p .. (": %d bytes, the manifest says %s"):format(#data, tostring(e.bytes))
    elseif sums[p] ~= e.sha256 then
      report.bad[#report.bad + 1] = p .. ": sha256 differs from the manifest"
    end
    report.manifest_entries = report.manifest_entries + 1
  end
  for _, f in ipairs(files) do
    local name = f:match("[^/]+$")
    if name:match("%.part$") or name:match("^%.ctc") or name:match("%.tmp$") or name:match("~$") then
      report.temp[#report.temp + 1] = f
    elseif not listed[f] and name ~= "manifest.jsonl" and name ~= ".clicktocall.lock" then
      report.bad[#report.bad + 1] = f .. ": not in the manifest"
    end
  end
end

local function storm(o)
  local calls = tonumber(o.calls or 1000)
  local nworkers = tonumber(o.workers or 4)
  local seed = tonumber(o.seed) or (os.time() * 1000 + core.getpid() % 1000)
  print(("storm: seed %d, %d calls, %d workers (replay: lua5.4 bench/storm.lua --calls %d --workers %d --seed %d)")
    :format(seed, calls, nworkers, calls, nworkers, seed))
  io.stdout:flush()
  math.randomseed(seed)
  local secret = ("CANARY-%08x%08x"):format(math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  local forms = canary_forms(secret)

  local sim = require "spec.helpers.sim"
  local nginx = require "spec.helpers.nginx"
  local s = assert(sim.start { secret = secret, balance = 1000000000, dict_size = "128m" })
  -- the object store, its secret key the same canary
  local store = o.upload ~= "0" and assert(require("spec.helpers.s3").start { buckets = { "storm" },
    access_key = "AKIDSTORM", secret_key = secret })
  local refused_port, holder = nginx.refused_port()
  local work = os.tmpname()
  os.remove(work)
  assert(os.execute("mkdir -p " .. sh(work)))
  local ok_all = true
  local checks = {}
  local function check(name, ok, detail)
    checks[#checks + 1] = ("  %-44s %s%s"):format(name, ok and "ok" or "FAIL",
                                                detail and ("  (" .. detail .. ")") or "")
    if not ok then ok_all = false end
  end

  local run_ok, run_err = pcall(function()
    -- recent records (recordings are kept 7 days): a window an hour in the past, 60 recordings
    local now = os.time()
    local from, to = now - 7200, now - 3600
    s:seed { count = 60, start_time = from, end_time = to, recorded = true }
    local clean = assert(clicktocall.new { base_url = s.base_url, app_secret = secret, user_data = s.user_data })
    local urls = {}
    for rec in clean:records { start_time = from, end_time = to } do urls[#urls + 1] = rec.recordFileDownloadUrl end
    clean:close()
    write_all(work .. "/urls.txt", table.concat(urls, "\n") .. "\n")
    local before = s:get("/_sim/state").record_count
    s:post("/_sim/requests/clear")

    -- the workers: the secret through the environment only, never in a file or an argument
    local per = math.ceil(calls / nworkers)
    local cmd = { "export CTC_STORM_SECRET=" .. sh(secret) .. ";" }
    for i = 1, nworkers do
      local wdir = ("%s/w%d"):format(work, i)
      os.execute("mkdir -p " .. sh(wdir))
      cmd[#cmd + 1] = ("lua5.4 %s/bench/storm.lua --worker %d --seed %d --calls %d --base %s --refused %d "
        .. "--dir %s --urls %s --from %d --to %d --user_data %s --out %s%s >%s 2>%s &")
        :format(ROOT, i, seed, per, sh(s.base_url), refused_port, sh(wdir), sh(work .. "/urls.txt"), from, to,
                sh(s.user_data), sh(wdir .. "/result.json"),
                store and (" --s3 %s --s3_key %s"):format(sh(store.endpoint), sh(store.access_key)) or "",
                sh(wdir .. "/stdout.txt"), sh(wdir .. "/stderr.txt"))
      if o.plant_leak and i == 1 then cmd[#cmd] = cmd[#cmd]:gsub(" >", " --plant_leak 1 >", 1) end
    end
    local done = work .. "/workers-done"
    cmd[#cmd + 1] = "wait; touch " .. sh(done)
    local t0 = core.now()
    os.execute("( " .. table.concat(cmd, " ") .. " ) &")

    -- meanwhile, read the request log as it grows (it keeps only the last 10,000 entries): every dial request
    -- the simulator received, and those it processed (no fault, or a fault that answers after processing).
    -- An entry is written as its request starts; reading again from 200 entries back (deduplicated by seq)
    -- covers an entry whose seq was taken but not yet written at the last read.
    local PROCESSED = { latency = true, reset_after_send = true, truncated = true, close_after = true }
    local seen, last_seq, logged, logged_processed, log_lost, first_seq = {}, 0, 0, 0, false, nil
    local function read_log()
      local res = s.http:perform { method = "GET", max_body = 256 * MIB,
        url = ("%s/_sim/requests?since=%d"):format(s.base_url, math.max(0, last_seq - 200)) }
      if not (res and res.status == 200) then return end
      local entries = cjson.decode(res.body)
      entries = entries.requests or entries
      -- the log starts at the first entry after the clear: a later first entry means entries rolled off unread
      if #entries > 0 then
        first_seq = first_seq or entries[1].seq
        if entries[1].seq > math.max(first_seq, last_seq - 199) then log_lost = true end
      end
      for _, r in ipairs(entries) do
        if not seen[r.seq] then
          seen[r.seq] = true
          if r.uri == API.dial then
            logged = logged + 1
            if r.fault == nil or r.fault == cjson.null or PROCESSED[r.fault] then
              logged_processed = logged_processed + 1
            end
          end
        end
        if r.seq > last_seq then last_seq = r.seq end
      end
    end
    repeat
      read_log()
      core.sleep(0.3)
    until read_all(done)
    -- a worker gone past a stalled dial (its client timed out) leaves the simulator still processing it: wait
    -- until nothing is in flight, so that every dial the simulator will place is counted
    local settle = core.now() + 15
    while s:stats().in_flight > 0 and core.now() < settle do core.sleep(0.05) end
    read_log()
    local seconds = core.now() - t0
    s:post("/_sim/fault/clear", {})
    local state = s:get("/_sim/state")
    local placed = state.record_count - before
    if log_lost or (state.request_log_dropped or 0) > 0 then logged = nil end

    -- the CLI under faults, with the canary as its secret
    local cli_env = ("env HOME=%s CLICKTOCALL_APP_SECRET=%s CLICKTOCALL_BASE_URL=%s CLICKTOCALL_USER_DATA=%s ")
      :format(sh(work), sh(secret), sh(s.base_url), sh(s.user_data))
    local fmt = function(t) return sh(os.date("!%Y-%m-%d %H:%M:%S", t + 8 * 3600)) end
    local cli_runs = {
      { "balance", { path = API.balance, kind = "status", status = 503, retry_after = 1 } },
      { "balance", { path = API.balance, kind = "bad_json", count = 3 } },
      { "records --format jsonl --from " .. fmt(from) .. " --to " .. fmt(to),
        { path = API.records, kind = "reset_after_send" } },
      { "records --format jsonl --from " .. fmt(from) .. " --to " .. fmt(to),
        { path = API.records, kind = "stuck_ids" } },
      { "archive --from " .. fmt(from) .. " --to " .. fmt(to) .. " --dir " .. sh(work .. "/cli-archive"),
        { path = "/recordings/*", kind = "cut", count = 5 } },
    }
    if store then
      -- archive --upload: the store's key in the environment (the canary), the store cutting bodies
      cli_runs[#cli_runs + 1] = {
        "archive --from " .. fmt(from) .. " --to " .. fmt(to) .. " --dir " .. sh(work .. "/cli-archive") ..
          " --upload s3://storm/cli/ --endpoint " .. sh(store.endpoint) .. " --path-style",
        { path = "/recordings/*", kind = "cut", count = 2 }, { name = "cut", after = 1000, times = 3 },
        ("AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_REGION=us-east-1 "):format(sh(store.access_key),
          sh(secret)) }
    end
    os.execute("mkdir -p " .. sh(work .. "/cli-archive"))
    local cli_codes = {}
    for i, r in ipairs(cli_runs) do
      s:fault(r[2])
      if r[3] then store:fault(r[3].name, r[3]) end
      local rc = select(3, os.execute(cli_env .. (r[4] or "") .. ROOT .. "/bin/clicktocall " .. r[1] ..
        (" >%s 2>%s"):format(sh(("%s/cli-%d.out"):format(work, i)), sh(("%s/cli-%d.err"):format(work, i)))))
      cli_codes[#cli_codes + 1] = tostring(rc)
      s:post("/_sim/fault/clear", {})
      if r[3] then store:fault(nil) end
    end
    -- the store's side: PUTs it received, and the objects it kept, each one a recording whole as some manifest
    -- has it (a cut or shortened body never stored)
    local store_puts, store_objects, store_bad = 0, 0, {}
    if store then
      for _, q in ipairs(store:requests()) do
        if q.method == "PUT" then store_puts = store_puts + 1 end
      end
      local whole = {}
      for i = 0, nworkers do
        local m = read_all(i == 0 and (work .. "/cli-archive/manifest.jsonl")
                           or ("%s/w%d/archive/manifest.jsonl"):format(work, i)) or ""
        for line in m:gmatch("[^\n]+") do
          local ok, e = pcall(cjson.decode, line)
          if ok and type(e) == "table" and e.sha256 then whole[e.sha256] = true end
        end
      end
      local objects = find_files(store.dir .. "/storm")
      store_objects = #objects
      for f, h in pairs(sha256_files(objects)) do
        if not whole[h] then store_bad[#store_bad + 1] = f end
      end
    end

    -- gather the workers' figures
    local T = { calls = 0, results = {}, faults = {}, problems = {}, canary_hits = 0, events = 0, dial_ok = 0,
                dial_err_sent = 0, dial_err_unsent = 0, dial_dup_sessions = 0, dial_unknown_sessions = 0,
                archive_failed_files = 0, downloaded = 0, synced = 0, uploaded = 0 }
    local rss = {}
    for i = 1, nworkers do
      local wdir = ("%s/w%d"):format(work, i)
      local raw = read_all(wdir .. "/result.json")
      if not raw then
        T.problems[#T.problems + 1] = ("worker %d wrote no result; its stderr: %s"):format(i,
          (read_all(wdir .. "/stderr.txt") or ""):sub(1, 2000))
      else
        local R = cjson.decode(raw)
        for _, k in ipairs { "calls", "canary_hits", "events", "dial_ok", "dial_err_sent", "dial_err_unsent",
                             "dial_dup_sessions", "dial_unknown_sessions", "archive_failed_files", "downloaded",
                             "synced", "uploaded" } do
          T[k] = T[k] + (R[k] or 0)
        end
        for _, t in ipairs { "results", "faults" } do
          for k, v in pairs(R[t]) do T[t][k] = (T[t][k] or 0) + v end
        end
        for _, p in ipairs(R.problems) do T.problems[#T.problems + 1] = ("worker %d: %s"):format(i, p) end
        rss[#rss + 1] = { first = R.rss_first, last = R.rss_last, mark = R.rss_mark }
      end
    end

    -- archive and download dirs: whole files only, no temporary files
    local arch = { bad = {}, temp = {}, manifest_entries = 0 }
    for i = 1, nworkers do
      check_archive(("%s/w%d/archive"):format(work, i), arch)
      for _, f in ipairs(find_files(("%s/w%d/dl"):format(work, i))) do
        if not f:match("/dl%-%d+%.wav$") then arch.temp[#arch.temp + 1] = f end
      end
    end
    check_archive(work .. "/cli-archive", arch)

    -- the canary: every file the storm made (outputs, results, manifests, states, recordings, CLI output)
    local canary_files = {}
    local all = find_files(work)
    for _, f in ipairs(all) do
      local d = read_all(f)
      if d and leaks(forms, d) then canary_files[#canary_files + 1] = f end
    end
    local hits = T.canary_hits + #canary_files
    -- the detector itself: the simulator saw the secret's base64 in Authorization, so the search finds it there
    local detector = leaks(forms, cjson.encode(s:get("/_sim/requests")))

    -- the summary
    local function kv(t)
      local keys = {}
      for k in pairs(t) do keys[#keys + 1] = k end
      table.sort(keys)
      local parts = {}
      for _, k in ipairs(keys) do parts[#parts + 1] = ("%s=%d"):format(k, t[k]) end
      return table.concat(parts, " ")
    end
    local nf = 0
    for _, v in pairs(T.faults) do nf = nf + v end
    local allowed = T.dial_ok + T.dial_err_sent
    local rss_max_growth, rss_parts = 0, {}
    for i, r in ipairs(rss) do
      rss_parts[#rss_parts + 1] = ("w%d %.1f/%.1f MiB"):format(i, r.first / MIB, r.last / MIB)
      rss_max_growth = math.max(rss_max_growth, r.last - r.first)
    end
    print("storm summary")
    print(("  seed            %d"):format(seed))
    print(("  calls           %d in %.1f s (%d workers, %d calls each; first RSS mark after %d calls)")
      :format(T.calls, seconds, nworkers, per, rss[1] and rss[1].mark or 0))
    print(("  faults injected %d: %s"):format(nf, kv(T.faults)))
    print(("  results         %s"):format(kv(T.results)))
    print(("  dials           ok=%d err_sent=%d err_unsent=%d; placed by the simulator %d, allowed %d..%d")
      :format(T.dial_ok, T.dial_err_sent, T.dial_err_unsent, placed, T.dial_ok, allowed))
    print(("  dial log        %s"):format(logged and ("%d dial requests received, %d processed"):format(logged,
      logged_processed) or "entries of the request log were lost before they were read: not counted there"))
    print(("  jobs            recordings downloaded by calls %d, archive files failed %d, manifest entries %d,"
      .. " records synced %d"):format(T.downloaded, T.archive_failed_files, arch.manifest_entries, T.synced))
    print(("  uploads         %s"):format(store and ("%d by the workers; the store received %d PUTs and keeps %d "
      .. "objects"):format(T.uploaded, store_puts, store_objects) or "none (--upload 0)"))
    print(("  events          %d on_event events checked"):format(T.events))
    print(("  RSS first/last  %s"):format(table.concat(rss_parts, ", ")))
    print(("  temp files left %d"):format(#arch.temp))
    print(("  canary hits     %d (%d in errors/events, %d files of %d searched)")
      :format(hits, T.canary_hits, #canary_files, #all))
    print(("  CLI exit codes  %s"):format(table.concat(cli_codes, " ")))
    check("every worker finished", #rss == nworkers)
    check("calls made", T.calls >= calls, ("%d of %d"):format(T.calls, calls))
    check("errors of documented kinds and fields", #T.problems == 0, #T.problems > 0 and T.problems[1] or nil)
    check("dials placed >= successes", placed >= T.dial_ok)
    check("dials placed <= successes + errors sent", placed <= allowed)
    check("no session id returned twice", T.dial_dup_sessions == 0)
    check("every session id returned is a placed call", T.dial_unknown_sessions == 0,
      ("%d unknown"):format(T.dial_unknown_sessions))
    if logged then
      check("dial requests received <= successes + errors sent", logged >= T.dial_ok and logged <= allowed,
        ("%d received"):format(logged))
      check("dials placed = dial requests processed", placed == logged_processed,
        ("%d processed in the log, %d placed"):format(logged_processed, placed))
    end
    check("RSS flat (within 5 MiB per worker)", rss_max_growth <= 5 * MIB,
      ("largest growth %.2f MiB"):format(rss_max_growth / MIB))
    check("archives whole (manifest = files)", #arch.bad == 0, arch.bad[1])
    check("no temporary file left", #arch.temp == 0, arch.temp[1])
    check("canary found nowhere", hits == 0, canary_files[1])
    check("canary search finds it where it belongs", detector, "the Authorization header in the simulator's log")
    if store then
      check("the store was reached (the canary is its secret key)", store_puts > 0, ("%d PUTs"):format(store_puts))
      check("the store keeps only whole recordings", #store_bad == 0, store_bad[1])
    end
    print("checks")
    for _, l in ipairs(checks) do print(l) end
    for i = 2, math.min(#T.problems, 10) do print("  problem: " .. T.problems[i]) end
  end)
  if not run_ok then
    print("storm: the run itself failed: " .. tostring(run_err))
    ok_all = false
  end
  holder:close()
  s:stop()
  if store then store:stop() end
  if ok_all and not o.keep then
    os.execute("rm -rf " .. sh(work))
  else
    print("storm: files kept in " .. work)
  end
  print(ok_all and "storm: PASS" or "storm: FAIL")
  return ok_all
end

-- required (the spec checks the checks): the pieces, no run
if select("#", ...) > 0 and not (arg and arg[0] and arg[0]:match("storm%.lua$")) then
  return { canary_forms = canary_forms, leaks = leaks, serialize = serialize, check_archive = check_archive }
end

local o = parse_args(arg)
if o.worker then
  worker(o)
else
  os.exit(storm(o) and 0 or 1)
end
