--- bench/records.lua: record streaming, one contender per process.
--
--   lua5.4 bench/records.lua MODE BASE_URL N        (decode, decode_hot: MODE PAGES_FILE N)
--     MODE: ctc     for rec in client:records{ ..., limit = N } (libcurl transport)
--           socket  LuaSocket's socket.http + lua-cjson paging by maxId, the same pages
--           decode  the pages of N records from PAGES_FILE (written by dump: the bodies the replay
--                   upstream serves), one at a time as the client holds them: each page is read (not
--                   timed), then cjson.decode and the walk over its records are timed, in the
--                   process's CPU time: the decode limit (see below)
--           decode_hot  the first 10 pages of PAGES_FILE, kept and cycled until N records (informational)
--           rss     like ctc, then prints the peak RSS (VmHWM, KiB) instead of a rate
--           core    no server (BASE_URL ignored): core.response on 10 pages of 100 records built here,
--                   cycled until N records: the C reader alone (decode, ids, normalization)
--           core_big  the same with ids past 2^53 (cjson's doubles are not exact: the raw-byte scan runs)
--           dump    fetches the pages of N records and writes them to the file arg[4] for
--                   bench/replay.lua ("<maxId asked> <length>\n<body>\n" each); prints the page count
-- Prints on stdout the figure: records per second (or KiB for rss); then, for the timed modes, a second
-- line "wall=<s> cpu=<s> records=<n> runq=<s>": the timed part's wall-clock and CPU seconds, and the
-- seconds the process was runnable but kept off a CPU by other processes (/proc/self/schedstat; -1 where
-- there is none). wall - cpu - runq is the time it slept, waiting for its upstream. The simulator must hold >= N
-- records between START and END (bench/run seeds them). Run from the repository root.
--
-- The one definition both harnesses use (bench/run's group b, bench/jobs.lua's group s):
--   sequential records/s = ctc's records per WALL second against the replay upstream: it includes
--     the waits on the upstream that keeping the next page in flight is meant to hide;
--   the decode limit = decode's records per CPU second over the same bytes, with one page in memory
--     at a time, as the client has them. Not all the pages at once: with 48 MB of bodies live, Lua's
--     GC lets the heap grow to about twice that before a cycle, so the decoded records land in fresh
--     memory: ~13,800 page faults in the timed part against ~540 one page at a time, for the same
--     instructions (callgrind: 3.07G against 3.29G for 1,000 pages). What a fault costs on the
--     shared VM varies several-fold with the other processes, and with it that figure (203k and 387k
--     records/s minutes apart; 165k against 471k for one page at a time in alternated runs). The
--     client's own heap stays flat (peak RSS +0.27 MiB from 10,000 to 1,000,000 records).
--     CPU time, not wall time: decoding is one CPU-bound thread, so on an idle core the two are equal,
--     while on a shared machine the wall-clock rate drops whenever another process takes the core.

-- CTC_BENCH_ROOT: the clicktocall tree to load (default "."; bench/run --candidate DIR sets it)
local ROOT = os.getenv("CTC_BENCH_ROOT") or "."
package.path = ROOT .. "/lua/?.lua;" .. package.path
package.cpath = ROOT .. "/build/5.4/?.so;" .. package.cpath

local mode, base, n = arg[1], arg[2], tonumber(arg[3])
assert(mode and base and n, "usage: records.lua ctc|socket|rss|dump BASE_URL N | decode|decode_hot PAGES_FILE N")

local SECRET = "TEST"
local USER_DATA = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"
local START, END = "2023-01-01 00:00:00", "2023-12-31 23:59:59"

local function now()
  -- the core's monotonic clock when present; LuaSocket's otherwise (no extra module in the rss run)
  local ok, core = pcall(require, "clicktocall.core")
  if ok and core.now then
    now = core.now
  else
    now = require("socket").gettime
  end
  return now()
end

-- the timed part's wall-clock and CPU seconds
local function clocks()
  return now(), os.clock()
end

-- seconds spent runnable but not running so far (Linux schedstat), or nil
local function runq()
  local f = io.open("/proc/self/schedstat")
  local l = f and f:read("l")
  if f then
    f:close()
  end
  local ns = l and tonumber(l:match("^%d+ (%d+)"))
  return ns and ns / 1e9
end

local function vm_hwm()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)"))
end

local function ctc_run()
  local clicktocall = require "clicktocall"
  local client = assert(clicktocall.new { base_url = base, app_secret = SECRET, user_data = USER_DATA })
  local count, last = 0, 0
  now()
  local q0 = runq()
  local t0, c0 = clocks()
  for rec in client:records { start_time = START, end_time = END, limit = n } do
    count = count + 1
    last = rec.id
  end
  local t1, c1 = clocks()
  local q1 = runq()
  assert(count == n, "got " .. count .. " records, wanted " .. n)
  assert(last and last > 0)
  return t1 - t0, c1 - c0, count, q0 and q1 and q1 - q0
end

-- LuaSocket + cjson: fetch one page body (the string) for maxId
local function socket_fetcher()
  local http = require "socket.http"
  local ltn12 = require "ltn12"
  local cjson = require "cjson"
  local mime = require "mime"
  local auth = (mime.b64(SECRET))
  local url = base .. "/call/record/voice"
  return function(max_id)
    local b = cjson.encode { maxId = max_id, starTime = START, endTime = END, userData = USER_DATA }
    local out = {}
    local ok, code = http.request {
      url = url, method = "POST",
      headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json",
                  ["Authorization"] = auth, ["Content-Length"] = #b },
      source = ltn12.source.string(b), sink = ltn12.sink.table(out),
    }
    assert(ok and code == 200, tostring(code))
    return table.concat(out)
  end
end

local function socket_run()
  local cjson = require "cjson"
  local fetch = socket_fetcher()
  now()
  local q0 = runq()
  local t0, c0 = clocks()
  local count, max_id = 0, 0
  while count < n do
    local doc = cjson.decode(fetch(max_id))
    assert(doc.meta and doc.meta.success == true)
    local data = doc.data
    for i = 1, #data do
      local rec = data[i]
      count = count + 1
      max_id = rec.id
      if count >= n then
        break
      end
    end
    if #data < 100 then
      break
    end
  end
  local t1, c1 = clocks()
  local q1 = runq()
  assert(count == n, "got " .. count .. " records, wanted " .. n)
  return t1 - t0, c1 - c0, count, q0 and q1 and q1 - q0
end

-- the next page body of a file written by dump (nil at its end)
local function read_page(f)
  local head = f:read("l")
  if not head then
    return nil
  end
  local len = assert(tonumber(head:match("^%d+ (%d+)$")), "not a pages file (bench/records.lua dump)")
  local body = f:read(len)
  f:read("l")
  return body
end

-- decode: page after page from the file, only the decoding timed; decode_hot: the first 10 pages kept
local function decode_run(hot)
  local decode = require("cjson").decode
  local f = assert(io.open(base, "rb"))
  local kept = {}
  if hot then
    for p = 1, math.min(10, math.ceil(n / 100)) do
      kept[p] = assert(read_page(f), "the pages file holds fewer pages than asked")
    end
  end
  now()
  local wall, cpu, count, last, queued = 0, 0, 0, 0, 0
  for p = 1, math.ceil(n / 100) do
    local body = hot and kept[(p - 1) % #kept + 1] or read_page(f)
    assert(body, "the pages file holds fewer pages than asked")
    local q0 = queued and runq()
    local t0, c0 = clocks()
    local data = decode(body).data
    for i = 1, #data do
      count = count + 1
      last = data[i].id
    end
    local t1, c1 = clocks()
    local q1 = q0 and runq()
    wall, cpu = wall + (t1 - t0), cpu + (c1 - c0)
    queued = q1 and queued + (q1 - q0) or nil
  end
  f:close()
  assert(count >= n and last > 0, "decoded " .. count .. " records")
  return wall, cpu, count, queued
end

-- pages shaped like the simulator's: ten fields, one of them null
local function core_run(first_id)
  local core = require "clicktocall.core"
  local pages, asked = {}, {}
  for p = 1, 10 do
    local recs = {}
    for i = 1, 100 do
      local id = string.format("%.0f", first_id + (p - 1) * 100 + i - 1)
      if first_id > 2 ^ 53 then
        id = tostring(math.tointeger and math.tointeger(first_id) + (p - 1) * 100 + i - 1 or id)
      end
      recs[i] = '{"id":' .. id .. ',"sessionId":"s-' .. id .. '","direction":"0","callerNum":"+8613500000002",'
        .. '"calleeNum":"+8613918000010","callEndTime":"2019-03-25 10:30:00","recordFlag":"1",'
        .. '"recordFileDownloadUrl":"http://rec.example.com/' .. id .. '.wav","duration":"42","callmin":1,'
        .. '"remark":null}'
    end
    pages[p] = '{"meta":{"success":true,"message":"ok"},"data":[' .. table.concat(recs, ",") .. "]}"
    asked[p] = p == 1 and 0 or pages[p - 1]:match('.*"id":(%d+)')
  end
  local response = core.response
  -- CPU time, not wall time: this mode measures C code on a machine other work may share
  local t0 = os.clock()
  local count = 0
  for p = 1, math.ceil(n / 100) do
    local k = (p - 1) % 10 + 1
    local data = assert(response("records_page", 200, pages[k], asked[k]))
    count = count + #data
  end
  return os.clock() - t0, count
end

-- the figure (records per wall or CPU second), then the clocks line
local function report(by_cpu, wall, cpu, count, queued)
  io.write(string.format("%.1f\nwall=%.6f cpu=%.6f records=%d runq=%.6f\n", count / (by_cpu and cpu or wall), wall,
                         cpu, count, queued or -1))
end

if mode == "core" or mode == "core_big" then
  local dt, count = core_run(mode == "core" and 1000000 or 2 ^ 53 + 2)
  io.write(string.format("%.1f\n", count / dt))
elseif mode == "ctc" then
  report(false, ctc_run())
elseif mode == "socket" then
  report(false, socket_run())
elseif mode == "decode" or mode == "decode_hot" then
  report(true, decode_run(mode == "decode_hot"))
elseif mode == "dump" then
  local f = assert(io.open(assert(arg[4], "dump: file expected"), "wb"))
  local fetch = socket_fetcher()
  local max_id, pages = 0, 0
  for _ = 1, math.ceil(n / 100) do
    local body = fetch(max_id)
    assert(f:write(max_id, " ", #body, "\n", body, "\n"))
    pages = pages + 1
    max_id = tonumber(body:match('.*"id":(%d+)'))
  end
  assert(f:close())
  io.write(pages, "\n")
elseif mode == "rss" then
  ctc_run()
  collectgarbage()
  io.write(string.format("%d\n", vm_hwm()))
else
  error("unknown MODE " .. tostring(mode))
end
