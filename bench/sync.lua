--- bench/sync.lua: what sync's state version 2 costs against version 1 (issue 18 part 3), in simulated time.
--
--   lua5.4 bench/sync.lua [--calls 20000] [--interval 300] [--page-ms 30] [--out FILE]
--
-- A day of calls on clicktocall.mock (ids "at_dial": a call is numbered when it is placed), synced every
-- `interval` seconds from midnight until every call of the day has ended and been listed. Time is simulated:
-- os.time (what sync reads) and the mock's clock are one fake clock, and the function transport moves it
-- `page-ms` per records page (the provider's answer time over a slow link), so a run's seconds are its pages
-- times 30 ms; no real waiting. Calls: placed at random over the 24 hours, talking 10 s to 5 min (80%) or
-- 5 min to 1 h (20%); 1% are listed 10 to 40 minutes after they end. Deterministic (MINSTD from a fixed seed).
--
-- Contenders: version 2 (this tree) with lookback 3600 (the default), 600 and 7200; version 1 as it was at
-- commit 1816336 (`git show 1816336:lua/clicktocall/sync.lua`, loaded under another name, its clock read
-- through the same fake os.time; its default lookback 86400). Each one sees the same day on a fresh mock.
--   --out FILE  replace (or append) the "## Sync state version 2 (issue 18)" section of FILE; a hand-written
--               "### Analysis" under it is kept. Without it the section goes to stdout.
-- Run from the repository root after `make`.
package.path = "./?.lua;./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/5.4/?.so;" .. package.cpath

local clicktocall = require "clicktocall"
local mock = require "clicktocall.mock"

local USER_DATA = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"
local V1_COMMIT = "1816336"
local SECTION = "## Sync state version 2 (issue 18)"

local opts = { calls = 20000, interval = 300, page_ms = 30 }
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--calls" or a == "--interval" or a == "--page-ms" then
      opts[a:sub(3):gsub("%-", "_")] = assert(tonumber(arg[i + 1]), a .. " needs a number")
      i = i + 2
    elseif a == "--out" then
      opts.out = assert(arg[i + 1], "--out needs a file")
      i = i + 2
    else
      error("unknown argument " .. a)
    end
  end
end

-- the fake clock: float seconds; os.time() gives its whole seconds
local clock = { t = 0 }
local real_time = os.time
os.time = function(date) -- luacheck: ignore 122
  if date ~= nil then return real_time(date) end
  return math.floor(clock.t)
end

local function load_v1()
  local p = assert(io.popen("git show " .. V1_COMMIT .. ":lua/clicktocall/sync.lua 2>/dev/null"))
  local src = p:read("a")
  p:close()
  assert(src:find("version", 1, true), "git show " .. V1_COMMIT .. " failed (run from the repository)")
  -- loaded after os.time was replaced: its `local os_time = os.time` is the fake clock
  return assert(load(src, "=sync_v1@" .. V1_COMMIT))()
end

-- MINSTD, exact in doubles
local seed = 20261206
local function rand()
  seed = seed * 16807 % 2147483647
  return seed / 2147483647
end

local T0 = 1767196800 -- 2026-01-01 00:00 UTC (08:00 on the provider's clock; the day is the same length)

local function make_day(n)
  local calls = {}
  for k = 1, n do calls[k] = T0 + math.floor(rand() * 86400) end
  table.sort(calls) -- placed in this order: at_dial numbers them so
  local out, last_listed = {}, 0
  for k = 1, n do
    local dur = rand() < 0.8 and 10 + math.floor(rand() * 290) or 300 + math.floor(rand() * 3300)
    local delay = rand() < 0.01 and 600 + math.floor(rand() * 1800) or 0
    local t_end = calls[k] + 8 + dur
    out[k] = { t_end = t_end, dur = dur, delay = delay }
    if t_end + delay > last_listed then last_listed = t_end + delay end
  end
  return out, last_listed
end

local function median(list)
  local t = {}
  for i = 1, #list do t[i] = list[i] end
  table.sort(t)
  if #t == 0 then return 0 end
  return t[math.floor((#t + 1) / 2)]
end

local function max_of(list)
  local m = 0
  for i = 1, #list do if list[i] > m then m = list[i] end end
  return m
end

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end

local function run_contender(c, day, last_listed)
  clock.t = T0
  local provider = mock.new { clock = function() return clock.t end, ids = "at_dial" }
  for k = 1, #day do
    local d = day[k]
    provider:seed_records({ { callEndTime = d.t_end, duration = tostring(d.dur) } },
                          d.delay > 0 and { listing_delay = d.delay } or nil)
  end
  local page_s = opts.page_ms / 1000
  local client = assert(clicktocall.new { base_url = "http://mock", app_secret = "TEST", user_data = USER_DATA,
    transport = function(req)
      if req.url:find("/call/record/voice", 1, true) then clock.t = clock.t + page_s end
      return provider.transport(req)
    end, sleep = provider.sleep })
  local state = os.tmpname()
  os.remove(state)
  package.loaded["clicktocall.sync"] = c.module
  local seen, dup, runs = {}, 0, 0
  local pages, secs, sizes, cpu = {}, {}, {}, {}
  local requests_day = 0
  local next_run = T0 + opts.interval
  local finish = last_listed + opts.interval
  while next_run <= finish do
    clock.t = next_run
    local before = provider:count("records_page")
    local c0 = os.clock()
    local summary = assert(client:sync { state = state, since = T0, lookback = c.lookback, on_record = function(r)
      local k = tostring(r.id)
      if seen[k] then dup = dup + 1 end
      seen[k] = true
    end })
    cpu[#cpu + 1] = os.clock() - c0
    runs = runs + 1
    local n = provider:count("records_page") - before
    if next_run <= T0 + 86400 then requests_day = requests_day + n end
    pages[#pages + 1] = summary.pages
    secs[#secs + 1] = summary.pages * page_s
    sizes[#sizes + 1] = file_size(state)
    next_run = next_run + opts.interval
  end
  os.remove(state)
  os.remove(state .. ".lock")
  local delivered = 0
  for _ in pairs(seen) do delivered = delivered + 1 end
  return { name = c.name, runs = runs, pages_med = median(pages), pages_max = max_of(pages),
           secs_med = median(secs), secs_max = max_of(secs), size_med = median(sizes), size_max = max_of(sizes),
           requests_day = requests_day, cpu_med = median(cpu), missing = #day - delivered, dup = dup }
end

local v2 = require "clicktocall.sync"
local contenders = {
  { name = "version 2, lookback 3600 (default)", module = v2, lookback = 3600 },
  { name = "version 2, lookback 600", module = v2, lookback = 600 },
  { name = "version 2, lookback 7200", module = v2, lookback = 7200 },
  { name = "version 1 (" .. V1_COMMIT .. "), lookback 86400 (its default)", module = load_v1() },
}

local day, last_listed = make_day(opts.calls)
local rows = {}
for _, c in ipairs(contenders) do
  io.stderr:write("bench/sync.lua: ", c.name, "\n")
  rows[#rows + 1] = run_contender(c, day, last_listed)
end

local out = {}
local function line(s) out[#out + 1] = s end
line(SECTION)
line("")
line(("`lua5.4 bench/sync.lua` (%s): a day of %d calls on clicktocall.mock, ids given at dial, sync every %d s,"
  .. " %d ms per records page in simulated time (pages × %d ms; the last column is the CPU of the client and"
  .. " the mock together)."
  .. " 1%% of the calls are listed 10-40 min after they end. Runs from midnight until every call has been listed"
  .. " (%d runs); requests per day count the runs of the 24 hours.")
  :format(os.date("!%Y-%m-%d", real_time()), opts.calls, opts.interval, opts.page_ms, opts.page_ms, rows[1].runs))
line("")
line("| sync | pages a run (median / max) | seconds a run (median / max) | state file (median / max) "
  .. "| provider requests a day | records lost | delivered twice | CPU a run, client + mock (median) |")
line("|---|---|---|---|---|---|---|---|")
for _, r in ipairs(rows) do
  line(("| %s | %d / %d | %.2f / %.2f | %d / %d B | %d | %d | %d | %.1f ms |"):format(r.name, r.pages_med,
    r.pages_max, r.secs_med, r.secs_max, r.size_med, r.size_max, r.requests_day, r.missing, r.dup, r.cpu_med * 1000))
end
line("")
local text = table.concat(out, "\n")

if not opts.out then
  io.write(text)
  os.exit(0)
end
local f = io.open(opts.out, "rb")
local old = f and f:read("a") or ""
if f then f:close() end
local a = old:find(SECTION, 1, true)
if a then
  -- keep a hand-written "### Analysis" that follows the table, up to the next "## " section
  local rest = old:sub(a + #SECTION)
  local next_sec = rest:find("\n## ", 1, true)
  local body = next_sec and rest:sub(1, next_sec) or rest
  local tail = next_sec and rest:sub(next_sec + 1) or ""
  local analysis = body:match("\n(### Analysis.*)$")
  local new = text .. (analysis and ("\n" .. analysis:gsub("\n*$", "\n")) or "")
  old = old:sub(1, a - 1) .. new .. (tail ~= "" and ("\n" .. tail) or "")
else
  old = old:gsub("\n*$", "\n\n") .. text
end
f = assert(io.open(opts.out, "wb"))
f:write(old)
f:close()
