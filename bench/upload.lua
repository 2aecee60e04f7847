--- bench/upload.lua: archive_recordings{ upload } (issue #21, "Figures"), side by side in one run.
--
--   lua5.4 bench/upload.lua [--rounds N] [--only c,a,m]
--
-- Starts its own simulator (2 workers) and the signature-checking S3 endpoint (spec/helpers/s3.lua, botocore
-- verifying every request), on free loopback ports. Each contender runs in a fresh process; the contenders of
-- a comparison alternate (A B A B ...) for N rounds; medians, min-max, the ratio of the medians.
--   c  200 recordings of 256 KiB, API, recordings and store answers each 30 ms late: archive with upload at
--      concurrency 8 vs 1 (download and upload, each a fresh directory and key prefix)
--   a  the same 200 files already downloaded, the store 30 ms late, no API latency: the run that only
--      uploads them (concurrency 8) vs `aws s3 cp --recursive` of the same files (Debian's awscli, its
--      default concurrency, its start-up included)
--   m  peak RSS (VmHWM) of the process that uploads 8 recordings at concurrency 8 (already downloaded by an
--      earlier process): 100 MiB each vs 256 KiB each
-- Internal: `bench/upload.lua child ...` is one contender (prints its figures).
-- Run from the repository root after `make`; writes the table to stdout.
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

-- child archive BASE FROM TO CONC DIR [ENDPOINT PREFIX ACCESS SECRET REGION]: prints "seconds downloaded
-- uploaded vmhwm_kib"
local function child(argv)
  local core = require "clicktocall.core"
  local clicktocall = require "clicktocall"
  local base, from, to, conc, dir = argv[1], tonumber(argv[2]), tonumber(argv[3]), tonumber(argv[4]), argv[5]
  local client = assert(clicktocall.new { base_url = base, app_secret = SECRET, user_data = USER_DATA,
                                          timeout = 120 })
  local upload
  if argv[6] then
    upload = { url = "s3://calls/" .. argv[7] .. "/", endpoint = argv[6], access_key = argv[8],
               secret_key = argv[9], region = argv[10], path_style = true }
  end
  local t0 = core.now()
  local s = assert(client:archive_recordings { start_time = from, end_time = to, dir = dir, concurrency = conc,
                                               upload = upload })
  local dt = core.now() - t0
  assert(#s.failed == 0, "failed: " .. tostring(s.failed[1] and s.failed[1].err and s.failed[1].err.message))
  io.write(string.format("%.4f %d %d %d\n", dt, s.downloaded, s.uploaded or 0, vm_hwm()))
end

if arg[1] == "child" then
  child { table.unpack(arg, 2) }
  return
end

-- ------------------------------------------------------------------ the driver

local sim = require "spec.helpers.sim"
local s3h = require "spec.helpers.s3"
local core = require "clicktocall.core"

local opts = { rounds = 3, only = "c,a,m" }
do
  local i = 1
  while arg[i] do
    if arg[i] == "--rounds" then i = i + 1; opts.rounds = assert(tonumber(arg[i]), "--rounds N")
    elseif arg[i] == "--only" then i = i + 1; opts.only = assert(arg[i], "--only LIST")
    else error("bench/upload.lua: unknown argument " .. arg[i]) end
    i = i + 1
  end
end
local ROUNDS = opts.rounds
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

local results = {}
local function record(key, round, v)
  results[key] = results[key] or {}
  results[key][round] = v
  log("%s round %d: %s", key, round, tostring(v))
end

local function median(list)
  local t = {}
  for _, v in pairs(list) do t[#t + 1] = v end
  table.sort(t)
  if #t == 0 then return nil end
  local m = #t // 2
  return #t % 2 == 1 and t[m + 1] or (t[m] + t[m + 1]) / 2, t[1], t[#t]
end

local s = assert(sim.start { workers = 2 })
local store = assert(s3h.start { buckets = { "calls" } })
local tmp = {}
local function mkdtemp()
  local d = (sh("mktemp -d /tmp/ctc-upbench.XXXXXX")):gsub("%s+$", "")
  tmp[#tmp + 1] = d
  return d
end

local ok_all, err_all = xpcall(function()
  local now, DAY = os.time(), 86400
  local W = {
    arc = { now - 3 * DAY, now - 3 * DAY + 3600, 200, 262144 },
    small = { now - 2 * DAY, now - 2 * DAY + 600, 8, 262144 },
    big = { now - 1 * DAY, now - 1 * DAY + 600, 8, 100 * 1048576 },
  }
  for _, k in ipairs { "arc", "small", "big" } do
    local w = W[k]
    s:seed { count = w[3], start_time = w[1], end_time = w[2], recorded = true, recording_bytes = w[4] }
  end

  -- one archive process -> { seconds, downloaded, uploaded, vmhwm } | raises
  local function run(w, conc, dir, prefix)
    local args = { s.base_url, w[1], w[2], conc, dir }
    if prefix then
      for _, v in ipairs { store.endpoint, prefix, store.access_key, store.secret_key, store.region } do
        args[#args + 1] = v
      end
    end
    for i, v in ipairs(args) do args[i] = q(v) end
    local out, ok = sh(LUA .. " bench/upload.lua child " .. table.concat(args, " ") .. " 2>&1")
    assert(ok, out)
    local v = {}
    for x in out:gmatch("%S+") do v[#v + 1] = tonumber(x) end
    return v
  end

  if want "c" then
    s:options { latency_ms = 30, recording_latency_ms = 30 }
    store:options { latency_ms = 30 }
    for r = 1, ROUNDS do
      for _, conc in ipairs { 1, 8 } do
        local v = run(W.arc, conc, mkdtemp(), ("c%d-%d"):format(r, conc))
        assert(v[2] == 200 and v[3] == 200, "c: not all 200 downloaded and uploaded")
        record("c." .. conc, r, v[1])
      end
    end
  end

  if want "a" then
    s:options { latency_ms = 0, recording_latency_ms = 0 }
    store:options { latency_ms = 30 }
    for r = 1, ROUNDS do
      local d1, d2 = mkdtemp(), mkdtemp()
      run(W.arc, 8, d1)
      run(W.arc, 8, d2)
      local v = run(W.arc, 8, d1, ("a%d-ctc"):format(r))
      assert(v[2] == 0 and v[3] == 200, "a: the run downloaded or did not upload all")
      record("a.ctc", r, v[1])
      local t0 = core.now()
      local ok, out = store:aws(("s3 cp --recursive --only-show-errors --exclude manifest.jsonl "
        .. "--exclude .clicktocall.lock %s s3://calls/a%d-aws/"):format(q(d2), r))
      assert(ok, out)
      record("a.aws", r, core.now() - t0)
    end
  end

  if want "m" then
    s:options { latency_ms = 0, recording_latency_ms = 0 }
    store:options { latency_ms = 0 }
    for r = 1, ROUNDS do
      for _, k in ipairs { "small", "big" } do
        local d = mkdtemp()
        run(W[k], 8, d)
        local v = run(W[k], 8, d, ("m%d-%s"):format(r, k))
        assert(v[3] == 8, "m: not all 8 uploaded")
        record("m." .. k, r, v[4])
        os.execute("rm -rf " .. q(d))
      end
    end
  end
end, debug.traceback)

store:stop()
s:stop()
for _, d in ipairs(tmp) do if d:match("^/tmp/") then os.execute("rm -rf " .. q(d)) end end
assert(ok_all, err_all)

-- ------------------------------------------------------------------ the table
local out = {}
local function line(...) out[#out + 1] = string.format(...) end
local function fig(key)
  local m, lo, hi = median(results[key] or {})
  return m, lo, hi
end
line("| figure | A | B | ratio | target |")
line("|---|---:|---:|---:|---|")
if results["c.1"] then
  local a, alo, ahi = fig("c.1")
  local b, blo, bhi = fig("c.8")
  line("| 200 x 256 KiB, 30 ms answers: archive with upload, concurrency 1 (A) vs 8 (B), s | %.2f (%.2f – %.2f) "
       .. "| %.2f (%.2f – %.2f) | **%.1fx** | ≥ 5x |", a, alo, ahi, b, blo, bhi, a / b)
end
if results["a.ctc"] then
  local a, alo, ahi = fig("a.aws")
  local b, blo, bhi = fig("a.ctc")
  line("| the same 200 uploads, store 30 ms late: `aws s3 cp --recursive` (A) vs archive, concurrency 8 (B), s "
       .. "| %.2f (%.2f – %.2f) | %.2f (%.2f – %.2f) | **%.2fx** | ≥ 1.0x |", a, alo, ahi, b, blo, bhi, a / b)
end
if results["m.small"] then
  local a = fig("m.small")
  local b = fig("m.big")
  line("| peak RSS uploading 8 at once: 8 x 256 KiB (A) vs 8 x 100 MiB (B), MiB | %.1f | %.1f | **%+.1f MiB** "
       .. "| within 5 MiB |", a / 1024, b / 1024, (b - a) / 1024)
end
line("")
line("%d rounds, medians (min – max). %s", ROUNDS, os.date("!%Y-%m-%d %H:%M UTC"))
print(table.concat(out, "\n"))
