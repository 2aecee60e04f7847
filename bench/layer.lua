--- bench/layer.lua: the Lua layer's own cost, over a function transport that answers at once.
--   lua5.4 bench/layer.lua [ROOT]   (ROOT: the tree whose lua/ to load; default ".")
-- Prints calls/s for balance and dial, and records/s for records over pages of 100 (CPU time, best of 5).
local ROOT = arg[1] or "."
local jit = rawget(_G, "jit")
package.path = ROOT .. "/lua/?.lua;./?.lua;" .. package.path
package.cpath = "./build/" .. (jit and "luajit" or _VERSION:match("%d+%.%d+")) .. "/?.so;" .. package.cpath
local clicktocall = require "clicktocall"
-- CPU time, best of 5: other processes on a shared machine do not count
local now = os.clock

local BAL = { status = 200, headers = {}, body = '{"meta":{"success":true,"message":"ok"},"data":6152}' }
local DIAL = { status = 200, headers = {}, body = '{"meta":{"success":true,"message":"ok"},"data":"s-1"}' }
-- pages of 100 records, keyed by the maxId they answer
local PAGES = {}
for p = 0, 49 do
  local recs = {}
  for i = 1, 100 do
    local id = p * 100 + i
    recs[i] = ('{"id":%d,"sessionId":"s-%d","direction":"0","callerNum":"+8613500000002",'
      .. '"calleeNum":"+8613918000010","callEndTime":"2019-03-25 10:30:00","recordFlag":"1",'
      .. '"recordFileDownloadUrl":"http://r/%d.wav","duration":"42","callmin":1}'):format(id, id, id)
  end
  PAGES[p * 100] = { status = 200, headers = {}, body = '{"meta":{"success":true,"message":"ok"},"data":['
    .. table.concat(recs, ",") .. "]}" }
end

local answer
local client = assert(clicktocall.new { base_url = "http://127.0.0.1:1", app_secret = "TEST", user_data = "u",
                                        transport = function(req)
                                          if answer == PAGES then
                                            return PAGES[tonumber(req.body:match('"maxId":(%d+)'))]
                                          end
                                          return answer
                                        end })

local function rate(n, f)
  f() -- warm up
  local best = 0
  for _ = 1, 5 do
    local t0 = now()
    for _ = 1, n do f() end
    local r = n / (now() - t0)
    if r > best then best = r end
  end
  return best
end

answer = BAL
local bal = rate(50000, function() return assert(client:balance()) end)
answer = DIAL
local args = { caller = "13500000002", callee = "13918000010", seat = "PP1" }
local dial = rate(50000, function() return assert(client:dial(args)) end)
answer = PAGES
local window = { start_time = "2019-03-25 00:00:00", end_time = "2019-03-26 00:00:00", limit = 5000 }
local pages = rate(10, function()
  local n = 0
  for _ in client:records(window) do n = n + 1 end
  assert(n == 5000)
end)
io.write(("balance %.0f/s  dial %.0f/s  records %.0f/s\n"):format(bal, dial, pages * 5000))
