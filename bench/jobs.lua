--- bench/jobs.lua: the jobs' benchmarks (issue 12 part 6), side by side in one run.
--
--   lua5.4 bench/jobs.lua [--quick | --full] [--rounds N] [--only r,n,a,m,s] [--out FILE]
--
-- Starts its own simulator (sim/run, 2 workers, free loopback port) and, for "n" and "s", a throw-away
-- nginx (spec/helpers/nginx.lua). Each contender runs in a fresh process; the two contenders of a
-- comparison alternate (A B A B ...) for N rounds; the table shows medians, min-max and the ratio of the
-- medians with the range of the per-round ratios.
--   r  10,000 records, every API answer 30 ms late: client:records{ concurrency = 8 } vs 1 (libcurl multi)
--   n  the same inside nginx (transport "ngx", LuaJIT build), timed in the handler
--   a  200 recordings of 256 KiB, API and recordings 30 ms late: archive_recordings{ concurrency = 8 } vs 1
--   m  peak RSS (VmHWM) of the archiving process, 8 recordings at concurrency 8: 100 MiB vs 256 KiB each
--   s  loopback, no latency: sequential client:records{} vs lua-cjson decoding the same pages from memory
--      (bench/records.lua ctc / decode against bench/replay.lua's upstream, as bench/run's group b: the
--      same pages, ids 1..N, the same commands; records/s of ctc in wall time, the decode limit in CPU
--      time, see bench/records.lua)
--   --quick  3 rounds (rss: 1), 20,000 records for "s" (a smoke test)
--   --out FILE  replace (or append) the "## Jobs (issue 12)" section of FILE (e.g. bench/RESULTS.md);
--               without it the section goes to stdout
-- Internal: `bench/jobs.lua child records|archive ...` is one contender (prints its figures).
-- Run from the repository root after `make` and `make LUA_VERSION=luajit`.
package.path = "./?.lua;./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/5.4/?.so;" .. package.cpath

local LUA = os.getenv("LUA") or "lua5.4"
local SECRET = "TEST"
local USER_DATA = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"

local function vm_hwm()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)"))
end

-- ------------------------------------------------------------------ one contender (child process)

local function child(argv)
  local core = require "clicktocall.core"
  local clicktocall = require "clicktocall"
  local what, base = argv[1], argv[2]
  local from, to, conc = tonumber(argv[3]), tonumber(argv[4]), tonumber(argv[5])
  local client = assert(clicktocall.new { base_url = base, app_secret = SECRET, user_data = USER_DATA,
                                          timeout = 120 })
  local t0 = core.now()
  if what == "records" then
    local count = 0
    for rec in client:records { start_time = from, end_time = to, concurrency = conc } do
      count = count + (rec.id and 1 or 0)
    end
    io.write(string.format("%.4f %d\n", core.now() - t0, count))
  elseif what == "archive" then
    local s = assert(client:archive_recordings { start_time = from, end_time = to, dir = argv[6],
                                                 concurrency = conc })
    local dt = core.now() - t0
    assert(#s.failed == 0, "failed: " .. tostring(s.failed[1] and s.failed[1].err and s.failed[1].err.message))
    io.write(string.format("%.4f %d %d\n", dt, s.downloaded, vm_hwm()))
  else
    error("unknown child " .. tostring(what))
  end
end

if arg[1] == "child" then
  child { table.unpack(arg, 2) }
  return
end

-- ------------------------------------------------------------------ the driver

local sim = require "spec.helpers.sim"
local nginx = require "spec.helpers.nginx"
local cjson = require "cjson"

local opts = { rounds = nil, quick = false, only = "r,n,a,m,s", out = nil }
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--quick" then opts.quick = true
    elseif a == "--full" then opts.quick = false
    elseif a == "--rounds" then i = i + 1; opts.rounds = assert(tonumber(arg[i]), "--rounds N")
    elseif a == "--only" then i = i + 1; opts.only = assert(arg[i], "--only LIST")
    elseif a == "--out" then i = i + 1; opts.out = assert(arg[i], "--out FILE")
    else error("bench/jobs.lua: unknown argument " .. a) end
    i = i + 1
  end
end
local ROUNDS = opts.rounds or (opts.quick and 3 or 5)
local RSS_ROUNDS = opts.quick and 1 or 2
local SEQ_N = opts.quick and 20000 or 100000
local function want(g) return ("," .. opts.only .. ","):find("," .. g .. ",", 1, true) ~= nil end

local function log(...)
  io.stderr:write(os.date("!%H:%M:%S "), string.format(...), "\n")
end

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local results = {} -- key -> { per-round values } (nil holes for failed rounds)
local notes = {}
local function record(key, round, v)
  results[key] = results[key] or {}
  results[key][round] = v
  log("%s round %d: %s", key, round, tostring(v))
end
local function note(fmt, ...)
  local s = string.format(fmt, ...)
  notes[#notes + 1] = s
  log("note: %s", s)
end

local s = assert(sim.start { workers = 2 })
local servers = {}
local tmpdirs = {}
local function cleanup()
  for _, srv in ipairs(servers) do srv:stop() end
  for _, d in ipairs(tmpdirs) do if d:match("^/tmp/") then os.execute("rm -rf " .. q(d)) end end
  s:stop()
end

local ok_all, err_all = xpcall(function()
  -- group s first, so its records get ids 1..N as in bench/run's group b (the same page bytes but the
  -- port in the recording URLs), and page bench/records.lua's fixed 2023 window
  if want "s" then
    s:seed { count = SEQ_N, start_time = "2023-01-01 00:00:00", end_time = "2023-12-31 00:00:00" }
  end
  local now = os.time()
  local DAY = 86400
  -- windows that do not overlap; the archive ones lie within the recordings' 7 days
  local W = {
    rec = { now - 6 * DAY, now - 5 * DAY, 10000 },
    arc = { now - 3 * DAY, now - 3 * DAY + 3600, 200, 262144 },
    small = { now - 2 * DAY, now - 2 * DAY + 600, 8, 262144 },
    big = { now - 1 * DAY, now - 1 * DAY + 600, 8, 100 * 1048576 },
  }
  for _, k in ipairs { "rec", "arc", "small", "big" } do
    local w = W[k]
    local seeded = s:seed { count = w[3], start_time = w[1], end_time = w[2], recorded = true,
                            recording_bytes = w[4] }
    assert(seeded.last_id - seeded.first_id + 1 == w[3], k .. ": seeded " .. cjson.encode(seeded))
  end

  -- child_run(what, base, from, to, concurrency [, dir [, preload]])
  local function child_run(what, base, from, to, conc, dir, preload)
    local args = {}
    for i, v in ipairs { what, base, from, to, conc, dir } do args[i] = q(v) end
    local out, ok = sh((preload and ("LD_PRELOAD=" .. q(preload) .. " ") or "") .. LUA .. " bench/jobs.lua child "
                       .. table.concat(args, " ") .. " 2>&1")
    if not ok then return nil, out:gsub("%s+", " "):sub(1, 300) end
    local vals = {}
    for v in out:gmatch("%S+") do vals[#vals + 1] = tonumber(v) end
    return vals
  end

  -- ---------------------------------------------------------------- s: loopback, sequential vs decode
  if want "s" then
    s:options { latency_ms = 0, recording_latency_ms = 0 }
    local pages_file = os.tmpname()
    tmpdirs[#tmpdirs + 1] = pages_file
    local out, ok = sh(LUA .. " bench/records.lua dump " .. q(s.base_url) .. " " .. SEQ_N .. " " .. q(pages_file))
    assert(ok, "records.lua dump: " .. out)
    local srv = assert(nginx.start { lua_path = nginx.repo_root() .. "/bench/?.lua;", vars = { pages = pages_file },
      http = [[
  init_by_lua_block { require("replay").load("${pages}") }
  server {
    listen 127.0.0.1:${port1};
    keepalive_requests 10000000;
    location = /call/record/voice { content_by_lua_block { require("replay").serve() } }
  }]] })
    servers[#servers + 1] = srv
    local replay = srv:url("")
    log("s: %d records, %d pages, replay %s, %d rounds", SEQ_N, tonumber(out), replay, ROUNDS)
    local errf = os.tmpname()
    tmpdirs[#tmpdirs + 1] = errf
    for r = 1, ROUNDS do
      -- the client pages the replay upstream; the decode limit reads the same bodies from the file
      for _, c in ipairs { { "s.ctc", "ctc", replay }, { "s.decode", "decode", pages_file } } do
        -- line 1: the figure; line 2: "wall=S cpu=S records=N runq=S" (bench/records.lua)
        local o, okc = sh(LUA .. " bench/records.lua " .. c[2] .. " " .. q(c[3]) .. " " .. SEQ_N .. " 2>" .. q(errf))
        local v = tonumber(o:match("^([^\n]*)"))
        local wall, cpu, n, rq = o:match("wall=([%d.]+) cpu=([%d.]+) records=(%d+) runq=(%-?[%d.]+)")
        if okc and v then
          record(c[1], r, v)
          wall, cpu, n, rq = tonumber(wall), tonumber(cpu), tonumber(n), tonumber(rq)
          if wall and cpu and wall > 0 and cpu > 0 then
            record(c[1] .. ".wall_rate", r, n / wall)
            record(c[1] .. ".cpu_rate", r, n / cpu)
            record(c[1] .. ".core_share", r, cpu / wall)
            if rq and rq >= 0 and wall > rq then
              -- runnable but kept off a CPU; asleep waiting for the upstream (ms a page); the rate without
              -- the run-queue time
              record(c[1] .. ".runq_share", r, rq / wall)
              record(c[1] .. ".blocked_ms", r, (wall - cpu - rq) * 1000 / (n / 100))
              record(c[1] .. ".free_rate", r, n / (wall - rq))
            end
          end
        else
          local ef = io.open(errf)
          note("%s round %d: %s %s", c[1], r, o, ef and ef:read("a") or "")
          if ef then ef:close() end
        end
      end
      record("s.load", r, tonumber((sh("cut -d' ' -f1 /proc/loadavg"))))
    end
  end

  s:options { latency_ms = 30, recording_latency_ms = 30 }

  -- ---------------------------------------------------------------- r: records{ concurrency } in Lua
  if want "r" then
    log("r: 10,000 records, 30 ms a page, %d rounds", ROUNDS)
    for r = 1, ROUNDS do
      for _, c in ipairs { 1, 8 } do
        local v, err = child_run("records", s.base_url, W.rec[1], W.rec[2], c)
        if v and v[2] == W.rec[3] then record("r.c" .. c, r, v[1])
        else note("r.c%d round %d: %s", c, r, err or ("got " .. tostring(v[2]) .. " records")) end
      end
    end
  end

  -- ---------------------------------------------------------------- n: the same inside nginx
  if want "n" then
    local srv, err = nginx.start { workers = 1, lua_cpath = nginx.repo_root() .. "/build/luajit/?.so;",
      vars = { sim = s.base_url, user_data = USER_DATA }, http = [[
  init_worker_by_lua_block {
    package.loaded["bench.client"] = assert(require("clicktocall").new {
      base_url = "${sim}", app_secret = "TEST", user_data = "${user_data}", transport = "ngx", timeout = 120 })
  }
  server {
    listen 127.0.0.1:${port1};
    location = /records {
      content_by_lua_block {
        local a = ngx.req.get_uri_args()
        local n = 0
        ngx.update_time()
        local t0 = ngx.now()
        for rec in package.loaded["bench.client"]:records { start_time = tonumber(a.from),
            end_time = tonumber(a.to), concurrency = tonumber(a.n) } do
          n = n + (rec.id and 1 or 0)
        end
        ngx.update_time()
        ngx.say(string.format("%.4f %d", ngx.now() - t0, n))
      }
    }
  }]] }
    if not srv then
      note("n: nginx did not start: %s", tostring(err):sub(1, 300))
    else
      servers[#servers + 1] = srv
      log("n: inside nginx, %d rounds", ROUNDS)
      for r = 1, ROUNDS do
        for _, c in ipairs { 1, 8 } do
          local out = sh("curl -sS --max-time 300 " ..
            q(srv:url(("/records?from=%d&to=%d&n=%d"):format(W.rec[1], W.rec[2], c))) .. " 2>&1")
          local took, n = out:match("^(%S+) (%d+)")
          if took and tonumber(n) == W.rec[3] then record("n.c" .. c, r, tonumber(took))
          else note("n.c%d round %d: %s", c, r, out:sub(1, 300)) end
        end
      end
    end
  end

  local function fresh_dir()
    local d = (sh("mktemp -d /tmp/ctc-bench-jobs.XXXXXX"):gsub("%s+$", ""))
    tmpdirs[#tmpdirs + 1] = d
    return d
  end

  -- ---------------------------------------------------------------- a: archive_recordings{ concurrency }
  if want "a" then
    -- the profile's contenders: the same runs with fsync and fdatasync made no-ops (an LD_PRELOAD shim
    -- built here), to show what waiting for the disk costs; skipped when no C compiler works
    local shim_dir = fresh_dir()
    local shim = shim_dir .. "/nofsync.so"
    local sf = assert(io.open(shim_dir .. "/nofsync.c", "wb"))
    sf:write("int fsync(int fd) { (void)fd; return 0; }\nint fdatasync(int fd) { (void)fd; return 0; }\n")
    sf:close()
    local _, built = sh("cc -O2 -shared -fPIC -o " .. q(shim) .. " " .. q(shim_dir .. "/nofsync.c") .. " 2>&1")
    if not built then note("a: the no-fsync shim did not build; the nofsync contenders are not measured") end
    log("a: 200 recordings of 256 KiB, 30 ms an answer, %d rounds", ROUNDS)
    for r = 1, ROUNDS do
      for _, c in ipairs { { 1, "" }, { 8, "" }, { 1, "nf" }, { 8, "nf" } } do
        if c[2] == "" or built then
          local d = fresh_dir()
          local key = "a.c" .. c[1] .. c[2]
          local v, err = child_run("archive", s.base_url, W.arc[1], W.arc[2], c[1], d, c[2] == "nf" and shim or nil)
          if v and v[2] == W.arc[3] then record(key, r, v[1])
          else note("%s round %d: %s", key, r, err or ("downloaded " .. tostring(v[2]))) end
          os.execute("rm -rf " .. q(d))
        end
      end
    end
  end

  -- ---------------------------------------------------------------- m: peak RSS, 256 KiB vs 100 MiB
  if want "m" then
    log("m: peak RSS, 8 recordings at concurrency 8, %d rounds", RSS_ROUNDS)
    for r = 1, RSS_ROUNDS do
      for _, k in ipairs { "small", "big" } do
        local d = fresh_dir()
        local v, err = child_run("archive", s.base_url, W[k][1], W[k][2], 8, d)
        if v and v[2] == W[k][3] then
          record("m." .. k, r, v[3])
          record("m." .. k .. ".s", r, v[1])
        else
          note("m.%s round %d: %s", k, r, err or ("downloaded " .. tostring(v[2])))
        end
        os.execute("rm -rf " .. q(d))
      end
    end
  end
end, debug.traceback)
cleanup()
if not ok_all then
  io.stderr:write(tostring(err_all), "\n")
  os.exit(1)
end

-- ------------------------------------------------------------------ report

local function values(key)
  local out = {}
  for _, v in pairs(results[key] or {}) do out[#out + 1] = v end
  table.sort(out)
  return out
end
local function median(t)
  local n = #t
  if n == 0 then return nil end
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end
local function fmt(v, unit)
  if v == nil then return "-" end
  if unit == "s" then return string.format("%.3f s", v) end
  if unit == "x" then return string.format("%.2f", v) end
  if unit == "KiB" then return string.format("%d KiB", v) end
  return string.format("%.0f", v)
end

local lines = {}
local function add(...) lines[#lines + 1] = string.format(...) end

local function contender(label, key, unit)
  local v = values(key)
  if #v == 0 then return add("| %s | - | - | 0 |", label) end
  add("| %s | %s | %s – %s | %d |", label, fmt(median(v), unit), fmt(v[1], unit), fmt(v[#v], unit), #v)
end

-- ratio = num/den of the medians (for times: slow/fast), and the range of the per-round ratios
local function ratio(label, num, den, want_ratio)
  local a, b = results[num] or {}, results[den] or {}
  local per = {}
  for r, x in pairs(a) do if b[r] then per[#per + 1] = x / b[r] end end
  table.sort(per)
  local ma, mb = median(values(num)), median(values(den))
  if not (ma and mb) then return add("| %s | ≥ %.2f | - | - | NOT MEASURED |", label, want_ratio) end
  local rt = ma / mb
  add("| %s | ≥ %.2f | **%.2f** | %.2f – %.2f | %s |", label, want_ratio, rt, per[1] or 0, per[#per] or 0,
      rt >= want_ratio and "PASS" or "BELOW")
end

local function load_avg()
  local f = io.open("/proc/loadavg")
  local l = f and f:read("l") or "?"
  if f then f:close() end
  return l:match("^(%S+ %S+ %S+)") or l
end

add("## Jobs (issue 12)")
add("")
add("`%s bench/jobs.lua%s%s`, %s, %d rounds (peak RSS: %d), contenders alternated (A B A B), each in a fresh",
    LUA, opts.quick and " --quick" or "", opts.rounds and (" --rounds " .. opts.rounds) or "",
    os.date("!%Y-%m-%d %H:%M UTC"), ROUNDS, RSS_ROUNDS)
add("process. Simulator: `sim/run`, 2 workers, loopback. Load average at the end: %s (on %s cores).",
    load_avg(), (sh("nproc"):gsub("%s+", "")))
add("Ratios are ratios of the medians; the column after them is the range of the per-round ratios.")
add("")
add("| contender | median | min – max | rounds |")
add("|---|---|---|---|")
if want "r" then
  contender("10,000 records, 30 ms a page, `records{ concurrency = 1 }`, Lua 5.4 (libcurl)", "r.c1", "s")
  contender("the same, `concurrency = 8` (libcurl multi)", "r.c8", "s")
end
if want "n" then
  contender("10,000 records, 30 ms a page, `concurrency = 1`, inside nginx (transport \"ngx\")", "n.c1", "s")
  contender("the same, `concurrency = 8` (ngx.thread)", "n.c8", "s")
end
if want "a" then
  contender("200 recordings of 256 KiB, 30 ms an answer, `archive_recordings{ concurrency = 1 }`", "a.c1", "s")
  contender("the same, `concurrency = 8`", "a.c8", "s")
  contender("profile: `concurrency = 1`, fsync and fdatasync made no-ops (LD_PRELOAD)", "a.c1nf", "s")
  contender("profile: `concurrency = 8`, the same", "a.c8nf", "s")
end
if want "m" then
  contender("peak RSS (VmHWM), 8 recordings of 256 KiB, concurrency 8", "m.small", "KiB")
  contender("peak RSS (VmHWM), 8 recordings of 100 MiB, concurrency 8", "m.big", "KiB")
  contender("(time for the 8 of 100 MiB)", "m.big.s", "s")
end
if want "s" then
  contender(("records/s, loopback, no latency, sequential `client:records{}`, %d records (replay upstream)")
    :format(SEQ_N), "s.ctc")
  contender("records/s, lua-cjson decoding the same pages from memory, per CPU second (the decode limit)",
            "s.decode")
  contender("(the same decode per wall-clock second; below the limit when the process did not have a core)",
            "s.decode.wall_rate")
  contender("(share of a core the decode got: CPU / wall seconds)", "s.decode.core_share", "x")
  contender("(`client:records{}`, records per CPU second of the client: the most keeping pages in flight can reach)",
            "s.ctc.cpu_rate")
  contender("(`client:records{}`, share of its wall time kept off a CPU by other processes)", "s.ctc.runq_share", "x")
  contender("(`client:records{}`, ms a page asleep waiting for the upstream)", "s.ctc.blocked_ms", "x")
  contender("(`client:records{}`, records per second of wall time minus that run-queue time)", "s.ctc.free_rate")
  contender("(load average, 1 min, at the rounds' ends)", "s.load", "x")
end
add("")
add("| target | want | ratio | per round | |")
add("|---|---|---|---|---|")
if want "r" then ratio("records, concurrency 8 vs 1, plain Lua (times: 1 / 8)", "r.c1", "r.c8", 6) end
if want "n" then ratio("records, concurrency 8 vs 1, inside nginx (times: 1 / 8)", "n.c1", "n.c8", 6) end
if want "a" then
  ratio("archive, concurrency 8 vs 1 (times: 1 / 8)", "a.c1", "a.c8", 5)
  ratio("profile: the same with no-op fsyncs (not the target: durability off)", "a.c1nf", "a.c8nf", 5)
end
if want "s" then
  ratio("sequential records/s / decode limit", "s.ctc", "s.decode", 0.8)
  ratio("(ceiling: the client's records per CPU second / decode limit; not the target)", "s.ctc.cpu_rate", "s.decode",
        0.8)
  ratio("(the same without the client's run-queue time / decode limit; not the target)", "s.ctc.free_rate",
        "s.decode", 0.8)
end
if want "m" then
  local sm, bg = median(values("m.small")), median(values("m.big"))
  if sm and bg then
    add("| peak RSS, 100 MiB recordings minus 256 KiB ones | ≤ 5120 KiB | **%+d KiB** | | %s |", bg - sm,
        bg - sm <= 5120 and "PASS" or "BELOW")
  else
    add("| peak RSS, 100 MiB recordings minus 256 KiB ones | ≤ 5120 KiB | - | | NOT MEASURED |")
  end
end
if #notes > 0 then
  add("")
  add("Notes from the run:")
  add("")
  for _, n in ipairs(notes) do add("- %s", n) end
end
local section = table.concat(lines, "\n") .. "\n"

if not opts.out then
  io.write(section)
  return
end
local f = io.open(opts.out, "rb")
local text = f and f:read("a") or ""
if f then f:close() end
-- the section runs to the next "## " heading; a hand-written "### Analysis" inside it is kept
local head = "## Jobs (issue 12)\n"
local i = text:find(head, 1, true)
if i then
  local j = text:find("\n## ", i + #head, true)
  local rest = j and text:sub(j + 1) or ""
  local analysis = text:sub(i, j or #text):match("(\n### Analysis.-)$")
  text = text:sub(1, i - 1) .. section .. (analysis or "") .. (rest ~= "" and ("\n" .. rest) or "")
else
  text = text .. (text:sub(-1) == "\n" and "\n" or "\n\n") .. section
end
f = assert(io.open(opts.out .. ".tmp", "wb"))
f:write(text)
f:close()
assert(os.rename(opts.out .. ".tmp", opts.out))
log("wrote the section to %s", opts.out)
