--[==[ spec/helpers/redis.lua: a throw-away redis-server (Debian's) on a free loopback port for busted specs.

    local redis = require "spec.helpers.redis"
    local r, err = redis.start()      -- r | nil, err (err holds the server's log)
    r.port, r.url                     -- the port, "redis://127.0.0.1:<port>"
    r:cmd("GET", "k")                 -- one command over LuaSocket: the reply | nil, err
    r:stop()                          -- SHUTDOWN NOSAVE, wait for the process to go; idempotent
    r:restart()                       -- start again on the same port (after stop), waiting on PING

Each server has its own temporary directory (its pid and log there), no persistence (--save "" --appendonly
no), and is waited on with PING, never a fixed sleep. A port found free may be taken before the server binds
it: start() tries again on a new port.
]==]

local socket = require "socket"
local nginx = require "spec.helpers.nginx"
local resp = require "clicktocall.redis"

local _M = {}

_M.SERVER = os.getenv("CTC_REDIS_SERVER") or "/usr/bin/redis-server"

local util = require "spec.helpers.util"
local sh_quote, read_file = util.quote, util.read_file

-- One command on a fresh LuaSocket connection (after AUTH password when given): the reply | nil, err.
local function cmd(port, password, ...)
  local c = socket.tcp()
  c:settimeout(2)
  local ok, err = c:connect("127.0.0.1", port)
  if not ok then
    c:close()
    return nil, err
  end
  if password then
    c:send(resp.encode { "AUTH", password })
    resp.read_reply(c)
  end
  c:send(resp.encode { ... })
  local v, rerr = resp.read_reply(c)
  c:close()
  return v, rerr
end
_M.cmd = function(port, ...) return cmd(port, nil, ...) end

local Server = {}
Server.__index = Server

function Server:cmd(...)
  return cmd(self.port, self.password, ...)
end

function Server:pid()
  local s = read_file(self.dir .. "/redis.pid")
  return s and tonumber(s:match("%d+"))
end

function Server:log()
  return read_file(self.dir .. "/redis.log") or ""
end

local function alive(pid)
  return (nginx.run("kill -0 " .. pid)) == true
end

-- Runs the server (daemonized, pid file in its dir) and waits for PING: true | nil, err, port_in_use
function Server:launch()
  os.remove(self.dir .. "/redis.log")
  local args = {
    _M.SERVER, "--port", self.port, "--bind", "127.0.0.1", "--dir", sh_quote(self.dir),
    "--pidfile", sh_quote(self.dir .. "/redis.pid"), "--logfile", sh_quote(self.dir .. "/redis.log"),
    "--save", "''", "--appendonly", "no", "--daemonize", "yes", "--protected-mode", "yes",
  }
  if self.password then
    args[#args + 1] = "--requirepass " .. sh_quote(self.password)
  end
  if self.tls_port then
    local d = self.dir
    args[#args + 1] = table.concat({ "--tls-port", self.tls_port, "--tls-cert-file", sh_quote(d .. "/cert.pem"),
      "--tls-key-file", sh_quote(d .. "/key.pem"), "--tls-ca-cert-file", sh_quote(d .. "/cert.pem"),
      "--tls-auth-clients no" }, " ")
  end
  local ok, out = nginx.run(table.concat(args, " "))
  if not ok then
    return nil, "redis-server did not start: " .. out
  end
  local up, err = nginx.wait_for(function()
    if self:cmd("PING") == "PONG" then
      return true
    end
    -- the daemon exits at once when the port is taken; stop waiting then
    local log = self:log()
    if log:find("Address already in use", 1, true) or log:find("Could not create server TCP", 1, true) then
      return "in use"
    end
    return nil
  end, 10, "redis-server to answer PING")
  if up == true then
    self.running = true
    return true
  end
  return nil, (err or "redis-server could not bind its port") .. "\n" .. self:log(), up == "in use"
end

--- Stops the server: SHUTDOWN NOSAVE, then waits for the process to end (SIGKILL after 5 s).
function Server:stop()
  if not self.running then
    return true
  end
  self.running = false
  local pid = self:pid()
  cmd(self.port, self.password, "SHUTDOWN", "NOSAVE") -- the connection closes without a reply
  if pid then
    if not nginx.wait_for(function() return not alive(pid) end, 5, "redis-server to exit") then
      nginx.run("kill -KILL " .. pid)
      nginx.wait_for(function() return not alive(pid) end, 5, "redis-server to die")
    end
  end
  return true
end

--- Starts the stopped server again on the same port.
function Server:restart()
  assert(not self.running, "redis helper: restart() of a running server")
  local ok, err = self:launch()
  assert(ok, err)
  return self
end

--- Stops the server and removes its directory.
function Server:destroy()
  self:stop()
  nginx.run("rm -rf " .. sh_quote(self.dir))
end

-- A self-signed certificate for 127.0.0.1 (its own CA) as <dir>/<name>.pem and <dir>/<name>-key.pem
local function make_cert(dir, cert, key)
  return nginx.run(table.concat({ "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1",
    "-addext", sh_quote("subjectAltName=IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost"),
    "-keyout", sh_quote(dir .. "/" .. key), "-out", sh_quote(dir .. "/" .. cert), "2>&1" }, " "))
end

--- start([opts]) -> server | nil, err. opts.password: --requirepass; opts.user = { name, password }: an ACL
-- user with every right; opts.tls: a TLS port too (r.tls_port, r.ca_file: the server's self-signed certificate,
-- r.other_ca: another one that did not sign it).
function _M.start(opts)
  opts = opts or {}
  local err
  for _ = 1, 6 do
    local _, out = nginx.run("mktemp -d /tmp/ctc-redis.XXXXXX")
    local dir = out:gsub("%s+$", "")
    local port = nginx.free_port()
    local srv = setmetatable({ dir = dir, port = port, url = "redis://127.0.0.1:" .. port,
                               password = opts.password }, Server)
    if opts.tls then
      assert(make_cert(dir, "cert.pem", "key.pem"))
      assert(make_cert(dir, "other.pem", "other-key.pem"))
      srv.tls_port, srv.ca_file, srv.other_ca = nginx.free_port(), dir .. "/cert.pem", dir .. "/other.pem"
      nginx.run("chmod a+r " .. sh_quote(dir) .. "/*.pem") -- nginx workers may run as another user
    end
    local ok, lerr, in_use = srv:launch()
    if ok and opts.user then
      local set = srv:cmd("ACL", "SETUSER", opts.user[1], "on", ">" .. opts.user[2], "~*", "+@all")
      if set ~= "OK" then
        ok, lerr, in_use = nil, "ACL SETUSER failed: " .. tostring(set), false
        srv:stop()
      end
    end
    if ok then
      return srv
    end
    err = lerr
    local pid = srv:pid()
    if pid then
      nginx.run("kill -KILL " .. pid)
    end
    nginx.run("rm -rf " .. sh_quote(dir))
    if not in_use then
      break
    end
  end
  return nil, err
end

--- fake(mode) -> port, stop: a Redis impostor (a LuaSocket server in a child process) on a free port that
-- reads a command's first line and then, mode "slow": answers "$2\r\n" after 1 s and "OK\r\n" 1 s later (each
-- part inside a 1.5 s per-call timeout, the whole past it); mode "drop": sends half a bulk and closes.
-- One connection at a time; stop() kills the child.
function _M.fake(mode)
  local port = nginx.free_port()
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write([[
local socket = require "socket"
local s = assert(socket.bind("127.0.0.1", ]] .. port .. [[))
while true do
  local c = s:accept()
  c:settimeout(5)
  if c:receive("*l") then -- not the probe that waited for the port
    if "]] .. mode .. [[" == "slow" then
      socket.sleep(1); c:send("$2\r\n"); socket.sleep(1); c:send("OK\r\n")
    else
      c:send("$10\r\nabc")
    end
  end
  c:close()
end
]])
  f:close()
  local _, out = nginx.run("lua5.4 " .. sh_quote(script) .. " >/dev/null 2>&1 & echo $!")
  local pid = tonumber(out:match("%d+"))
  assert(nginx.wait_for(function()
    local c = socket.tcp()
    local ok = c:connect("127.0.0.1", port)
    c:close()
    return ok
  end, 10, "the fake Redis to listen"))
  return port, function()
    nginx.run("kill " .. pid)
    os.remove(script)
  end
end

return _M
