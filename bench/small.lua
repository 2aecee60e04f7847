--- bench/small.lua: sequential small calls (dial, balance), one contender per process.
--
--   lua5.4 bench/small.lua IMPL OP BASE_URL N
--     IMPL: ctc     clicktocall, libcurl transport (one client, one keep-alive connection)
--           socket  LuaSocket's socket.http + lua-cjson, the way a Lua user writes it by hand
--                   (socket.http has no keep-alive: a connection per call, as shipped)
--           socket_ka  LuaSocket TCP with a hand-written HTTP/1.1 keep-alive exchange + lua-cjson
--                      (informational: what it takes to give LuaSocket keep-alive)
--     OP:   dial | balance
-- Prints the calls per second on stdout. Run from the repository root.

-- CTC_BENCH_ROOT: the clicktocall tree to load (default "."; bench/run --candidate DIR sets it)
local ROOT = os.getenv("CTC_BENCH_ROOT") or "."
package.path = ROOT .. "/lua/?.lua;" .. package.path
package.cpath = ROOT .. "/build/5.4/?.so;" .. package.cpath

local socket = require "socket"

local impl, op, base, n = arg[1], arg[2], arg[3], tonumber(arg[4])
assert(impl and (op == "dial" or op == "balance") and base and n, "usage: small.lua IMPL dial|balance BASE_URL N")

local SECRET = "TEST"
local USER_DATA = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"
local DIAL = { caller = "13500000002", callee = "13918000010", seat = "PP1" }
local WARMUP = 20

local call -- function() -> value (raises on failure)

if impl == "ctc" then
  local clicktocall = require "clicktocall"
  local client = assert(clicktocall.new { base_url = base, app_secret = SECRET, user_data = USER_DATA })
  if op == "dial" then
    call = function()
      return assert(client:dial(DIAL))
    end
  else
    call = function()
      return assert(client:balance())
    end
  end
elseif impl == "socket" or impl == "socket_ka" then
  local cjson = require "cjson"
  local mime = require "mime"
  local auth = (mime.b64(SECRET))
  local path, body
  if op == "dial" then
    path = "/rest/voiceCall/api"
    -- what a hand-written client does: normalize, then encode the body each call
    body = function()
      return cjson.encode { callerNbr = "+86" .. DIAL.caller, calleeNbr = "+86" .. DIAL.callee,
                            userData = USER_DATA, setingNbr = DIAL.seat }
    end
  else
    path = "/management/customer/isallow"
    body = function()
      return cjson.encode { userData = USER_DATA }
    end
  end
  local function check(text)
    local doc = cjson.decode(text)
    assert(type(doc) == "table" and type(doc.meta) == "table" and doc.meta.success == true, text)
    return doc.data
  end
  if impl == "socket" then
    local http = require "socket.http"
    local ltn12 = require "ltn12"
    local url = base .. path
    call = function()
      local b = body()
      local out = {}
      local ok, code = http.request {
        url = url, method = "POST",
        headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json",
                    ["Authorization"] = auth, ["Content-Length"] = #b },
        source = ltn12.source.string(b), sink = ltn12.sink.table(out),
      }
      assert(ok and code == 200, tostring(code))
      return check(table.concat(out))
    end
  else
    local host, port = base:match("^http://([^:/]+):(%d+)")
    local conn
    local function connect()
      conn = assert(socket.tcp())
      assert(conn:connect(host, tonumber(port)))
      conn:setoption("tcp-nodelay", true)
    end
    connect()
    local head = "POST " .. path .. " HTTP/1.1\r\nHost: " .. host .. ":" .. port ..
                 "\r\nContent-Type: application/json\r\nAccept: application/json\r\nAuthorization: " .. auth ..
                 "\r\nContent-Length: "
    call = function()
      local b = body()
      assert(conn:send(head .. #b .. "\r\n\r\n" .. b))
      local status = assert(conn:receive("*l"))
      assert(status:match("^HTTP/1%.1 200"), status)
      local len, close
      while true do
        local line = assert(conn:receive("*l"))
        if line == "" then
          break
        end
        local k, v = line:match("^([^:]+):%s*(.-)%s*$")
        k = k and k:lower()
        if k == "content-length" then
          len = tonumber(v)
        elseif k == "connection" and v:lower() == "close" then
          close = true
        end
      end
      assert(len, "no Content-Length")
      local text = assert(conn:receive(len))
      if close then
        conn:close()
        connect()
      end
      return check(text)
    end
  end
else
  error("unknown IMPL " .. tostring(impl))
end

for _ = 1, WARMUP do
  call()
end
local v = call()
assert(op ~= "dial" or type(v) == "string", "dial: session id expected")
assert(op ~= "balance" or type(v) == "number", "balance: number expected")

local t0 = socket.gettime()
for _ = 1, n do
  call()
end
local dt = socket.gettime() - t0
io.write(string.format("%.1f\n", n / dt))
