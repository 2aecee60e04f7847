--- A hostile HTTP/1.1 server on 127.0.0.1, run as its own process by specs:
--   lua spec/helpers/hostile_server.lua CONTROL_FILE MODE [LIFETIME_SECONDS]
-- It binds a free port itself and appends what it does to CONTROL_FILE, one line each, so a spec
-- waits on conditions instead of sleeping:
--   "port N"          listening (first line)
--   "request N"       the Nth request was read in full (its answer follows)
--   "stray N"         (MODE "stray") 150 ms after answering request N, a second complete answer
--                     was written on the same connection, unasked
--   "closed"          a client closed a connection
-- Every answer is the provider's dial answer with data "sid-N"; a stray one says "stray-N".
-- It exits by itself after LIFETIME_SECONDS (default 30).
local socket = require "socket"

local control, mode, lifetime = arg[1], arg[2] or "stray", tonumber(arg[3]) or 30

local function note(line)
  local f = assert(io.open(control, "a"))
  f:write(line, "\n")
  f:close()
end

local function answer(data)
  local body = '{"meta":{"success":true,"message":"ok"},"data":"' .. data .. '"}'
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #body
    .. "\r\n\r\n" .. body
end

-- Reads one request from c; false when the connection closed.
local function read_request(c)
  local length = 0
  local line, err = c:receive("*l")
  if not line then
    return false, err
  end
  repeat
    line, err = c:receive("*l")
    if not line then
      return false, err
    end
    local n = line:lower():match("^content%-length:%s*(%d+)")
    if n then
      length = tonumber(n)
    end
  until line == ""
  if length > 0 and not c:receive(length) then
    return false
  end
  return true
end

local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
note("port " .. port)

local conns, count = { server }, 0
local deadline = socket.gettime() + lifetime
while socket.gettime() < deadline do
  local ready = socket.select(conns, nil, 0.5)
  for _, s in ipairs(ready or {}) do
    if s == server then
      local c = server:accept()
      if c then
        c:settimeout(2)
        conns[#conns + 1] = c
      end
    elseif read_request(s) then
      count = count + 1
      note("request " .. count)
      s:send(answer("sid-" .. count))
      if mode == "stray" then
        socket.sleep(0.15)
        s:send(answer("stray-" .. count))
        note("stray " .. count)
      end
    else
      s:close()
      for i = #conns, 1, -1 do
        if conns[i] == s then
          table.remove(conns, i)
        end
      end
      note("closed")
    end
  end
end
for _, s in ipairs(conns) do
  s:close()
end
