--- bench/records.lua: record streaming, one contender per process.
--
--   lua5.4 bench/records.lua MODE BASE_URL N
--     MODE: ctc     for rec in client:records{ ..., limit = N } (libcurl transport)
--           socket  LuaSocket's socket.http + lua-cjson paging by maxId, the same pages
--           decode  the same pages fetched once into memory (not timed), then only cjson.decode
--                   and the walk over the records are timed: the decode limit
--           decode_hot  the same over the first 10 pages only, cycled until N records: the bodies stay
--                   in the CPU caches, as a body just received does (an upper bound of the limit)
--           rss     like ctc, then prints the peak RSS (VmHWM, KiB) instead of a rate
--           core    no server (BASE_URL ignored): core.response on 10 pages of 100 records built here,
--                   cycled until N records: the C reader alone (decode, ids, normalization)
--           core_big  the same with ids past 2^53 (cjson's doubles are not exact: the raw-byte scan runs)
--           dump    fetches the pages of N records and writes them to the file arg[4] for
--                   bench/replay.lua ("<maxId asked> <length>\n<body>\n" each); prints the page count
-- Prints records per second (or KiB) on stdout. The simulator must hold >= N records between
-- START and END (bench/run seeds them). Run from the repository root.

-- CTC_BENCH_ROOT: the clicktocall tree to load (default "."; bench/run --candidate DIR sets it)
local ROOT = os.getenv("CTC_BENCH_ROOT") or "."
package.path = ROOT .. "/lua/?.lua;" .. package.path
package.cpath = ROOT .. "/build/5.4/?.so;" .. package.cpath

local mode, base, n = arg[1], arg[2], tonumber(arg[3])
assert(mode and base and n, "usage: records.lua ctc|socket|decode|rss BASE_URL N")

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
  local t0 = now()
  for rec in client:records { start_time = START, end_time = END, limit = n } do
    count = count + 1
    last = rec.id
  end
  local dt = now() - t0
  assert(count == n, "got " .. count .. " records, wanted " .. n)
  assert(last and last > 0)
  return dt
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
  local t0 = now()
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
  local dt = now() - t0
  assert(count == n, "got " .. count .. " records, wanted " .. n)
  return dt
end

local function decode_run(hot)
  local cjson = require "cjson"
  local fetch = socket_fetcher()
  local pages, max_id = {}, 0
  for p = 1, hot and math.min(10, math.ceil(n / 100)) or math.ceil(n / 100) do
    local body = fetch(max_id)
    pages[p] = body
    max_id = tonumber(body:match('.*"id":(%d+)'))
  end
  local decode = cjson.decode
  now()
  local t0 = now()
  local count, last = 0, 0
  local np = #pages
  for p = 1, math.ceil(n / 100) do
    local data = decode(pages[(p - 1) % np + 1]).data
    for i = 1, #data do
      count = count + 1
      last = data[i].id
    end
  end
  local dt = now() - t0
  assert(count >= n and last > 0, "decoded " .. count .. " records")
  return dt, count
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

if mode == "core" or mode == "core_big" then
  local dt, count = core_run(mode == "core" and 1000000 or 2 ^ 53 + 2)
  io.write(string.format("%.1f\n", count / dt))
elseif mode == "ctc" then
  io.write(string.format("%.1f\n", n / ctc_run()))
elseif mode == "socket" then
  io.write(string.format("%.1f\n", n / socket_run()))
elseif mode == "decode" or mode == "decode_hot" then
  local dt, count = decode_run(mode == "decode_hot")
  io.write(string.format("%.1f\n", count / dt))
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
