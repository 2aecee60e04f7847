--- Starts spec/helpers/hostile_server.lua as its own process and reads what it did from its
-- control file, so a spec waits on conditions instead of sleeping.
--   local hostile = require "spec.helpers.hostile"
--   local srv = hostile.start("stray")   -- srv.port
--   srv:wait_for("stray 1\n")             -- returns the match; raises after 10 s
--   srv:has("request 3\n")                -- the match or nil, without waiting
--   srv:stop()
local socket = require "socket"

local M = {}
local server = {}
server.__index = server

function server:has(pattern)
  local f = io.open(self.control)
  if not f then
    return nil
  end
  local text = f:read("*a")
  f:close()
  return text:match(pattern), text
end

function server:wait_for(pattern)
  local deadline = socket.gettime() + 10
  while socket.gettime() < deadline do
    local v = self:has(pattern)
    if v then
      return v
    end
    socket.sleep(0.005)
  end
  error("the hostile server never wrote " .. pattern .. ": " .. tostring(select(2, self:has("."))))
end

function server:stop()
  if self.pid then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    self.pid = nil
  end
  os.remove(self.control)
end

--- start(mode [, lifetime_seconds]) -> server (run by the Lua that runs busted)
function M.start(mode, lifetime)
  local lua = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
  local srv = setmetatable({ control = os.tmpname() }, server)
  local p = assert(io.popen(string.format("%s spec/helpers/hostile_server.lua %s %s %d >/dev/null 2>&1 & echo $!",
                                          lua, srv.control, mode, lifetime or 60)))
  srv.pid = tonumber(p:read("*l"))
  p:close()
  srv.port = tonumber(srv:wait_for("^port (%d+)"))
  return srv
end

return M
