--- bench/multi.lua: the batch transport (core.curl_multi) against an upstream that answers late.
--
--   lua5.4 bench/multi.lua [PAGES] [ROUNDS] [LATENCY_MS]      (defaults 100 pages, 3 rounds, 30 ms)
--
-- Starts its own nginx (spec/helpers/nginx.lua) whose /page answers a page of 100 records shaped like
-- the simulator's after LATENCY_MS, and reads PAGES pages, each decoded by core.response, with:
--   perform    the single transport, one page after another (what records{} does today)
--   multi1     core.curl_multi, one transfer at a time
--   multi8     core.curl_multi, 8 transfers in flight (independent pages, as concurrent slices are)
--   prefetch   core.curl_multi, one after another, but page N+1 is asked for (maxId from the
--              cursor core.response gives) as soon as page N is decoded
--   records    client:records{} with libcurl (it keeps the next page in flight the same way)
--   records_fn client:records{} through a function transport over a libcurl handle (no prefetch)
-- Prints the median records/s of each over ROUNDS rounds (contenders alternate within a round; a first,
-- untimed round lets the upstream build its pages once, so later rounds measure the client).
-- Run from the repository root after `make`.
package.path = "./?.lua;./lua/?.lua;" .. package.path
package.cpath = "./build/5.4/?.so;" .. package.cpath

local nginx = require "spec.helpers.nginx"
local core = require "clicktocall.core"

local PAGES = tonumber(arg[1]) or 100
local ROUNDS = tonumber(arg[2]) or 3
local LATENCY = (tonumber(arg[3]) or 30) / 1000

local srv = assert(nginx.start { http = [[
init_by_lua_block { CTC_PAGES = {} }
server {
  listen 127.0.0.1:${port1};
  keepalive_requests 100000;
  location = /call/record/voice {
    content_by_lua_block {
      ngx.req.read_body()
      local asked = ngx.req.get_body_data():match('"maxId":(%d+)')
      return ngx.exec("/page", "latency=${latency}&max_id=" .. asked)
    }
  }
  location = /page {
    content_by_lua_block {
      local latency = tonumber(ngx.var.arg_latency)
      if latency > 0 then ngx.sleep(latency) end
      ngx.header["Content-Type"] = "application/json"
      local cached = CTC_PAGES[ngx.var.arg_max_id] -- built once: the upstream costs next to nothing
      if cached then return ngx.print(cached) end
      local first = tonumber(ngx.var.arg_max_id) + 1
      local recs = {}
      for i = 0, 99 do
        local id = first + i
        recs[#recs + 1] = '{"id":' .. id .. ',"sessionId":"s-' .. id .. '","direction":"0",'
          .. '"callerNum":"+8613500000002","calleeNum":"+8613918000010","callEndTime":"2019-03-25 10:30:00",'
          .. '"recordFlag":"1","recordFileDownloadUrl":"http://rec.example.com/' .. id .. '.wav",'
          .. '"duration":"42","callmin":1,"remark":null}'
      end
      local page = '{"meta":{"success":true,"message":"ok"},"data":[' .. table.concat(recs, ",") .. "]}"
      CTC_PAGES[ngx.var.arg_max_id] = page
      ngx.print(page)
    }
  }
}
]], vars = { latency = tostring(LATENCY) } })

local function request(max_id)
  return { method = "GET", url = srv:url("/page?latency=" .. LATENCY .. "&max_id=" .. max_id),
           want_headers = false }
end

local function decode(body, asked)
  local recs, cursor = assert(core.response("records_page", 200, body, asked))
  return #recs, cursor
end

local contenders = {}

function contenders.perform()
  local t = core.curl_transport()
  local cursor, count = 0, 0
  for _ = 1, PAGES do
    local res = assert(t:perform(request(cursor)))
    local n
    n, cursor = decode(res.body, cursor)
    count = count + n
  end
  t:close()
  return count
end

-- the next page's answer: one transfer, waited for (or already back: `early`)
local function one(m, early)
  local done = early or {}
  while not done[1] do
    done = m:wait(5)
  end
  return assert(done[1][2], done[1][3] and done[1][3].message)
end

function contenders.multi1()
  local m = core.curl_multi {}
  local cursor, count = 0, 0
  for _ = 1, PAGES do
    assert(m:add(cursor, request(cursor)))
    local n
    n, cursor = decode(one(m).body, cursor)
    count = count + n
  end
  m:close()
  return count
end

function contenders.multi8()
  local m = core.curl_multi {}
  local next_page, count = 0, 0
  local function add()
    assert(m:add(next_page * 100, request(next_page * 100)))
    next_page = next_page + 1
  end
  while next_page < PAGES and m:count() < 8 do add() end
  while m:count() > 0 do
    for _, d in ipairs(m:wait(5)) do
      local res = assert(d[2], d[3] and d[3].message)
      if next_page < PAGES then add() end
      count = count + decode(res.body, d[1])
    end
  end
  m:close()
  return count
end

function contenders.prefetch()
  local m = core.curl_multi {}
  local asked, count = 0, 0
  local early
  assert(m:add(asked, request(asked)))
  for p = 1, PAGES do
    local body = one(m, early).body
    local n, cursor = decode(body, asked)
    early = nil
    if p < PAGES and cursor then
      assert(m:add(cursor, request(cursor)))
      early = m:wait(0) -- on the wire while this page's records are used
    end
    count = count + n
    asked = cursor
  end
  m:close()
  return count
end

-- records{} itself: with libcurl it keeps the next page in flight; through a function transport
-- over the same libcurl handle (transport_kind "function") it does not
local clicktocall = require "clicktocall"
local function iterate(transport)
  local t = core.curl_transport()
  local c = assert(clicktocall.new { base_url = srv:url(""), app_secret = "S", user_data = "u",
    transport = transport and function(req) return t:perform(req) end or nil })
  local count = 0
  for _ in c:records { start_time = "2023-01-01 00:00:00", end_time = "2023-01-02 00:00:00",
                       limit = PAGES * 100 } do
    count = count + 1
  end
  c:close()
  t:close()
  return count
end
function contenders.records() return iterate(false) end
function contenders.records_fn() return iterate(true) end

local order = { "perform", "multi1", "multi8", "prefetch", "records_fn", "records" }
if os.getenv("CTC_BENCH_ONLY") then -- e.g. CTC_BENCH_ONLY=multi8,prefetch
  order = {}
  for name in os.getenv("CTC_BENCH_ONLY"):gmatch("[^,]+") do order[#order + 1] = name end
end
local rates = {}
contenders.multi8() -- untimed: the upstream builds and keeps every page
for _ = 1, ROUNDS do
  for _, name in ipairs(order) do
    local t0 = core.now()
    local count = contenders[name]()
    local dt = core.now() - t0
    assert(count == PAGES * 100, name .. " read " .. count)
    rates[name] = rates[name] or {}
    table.insert(rates[name], count / dt)
  end
end
srv:stop()

local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

io.write(string.format("%d pages of 100 records, %.0f ms per answer, median of %d rounds\n", PAGES,
                       LATENCY * 1000, ROUNDS))
local base = rates.perform and median(rates.perform) or 0
for _, name in ipairs(order) do
  local r = median(rates[name])
  io.write(string.format("  %-10s %10.0f records/s  %5.2fx perform\n", name, r, r / base))
end
