--[==[ spec/helpers/nginx.lua: start a throw-away nginx (Debian's nginx-light + ngx_lua) for busted specs.

Runs on plain Lua 5.1-5.4 with LuaSocket. Load it from the repository root as

    local nginx = require "spec.helpers.nginx"     -- package.path's "./?.lua" finds it

API

    local srv, err = nginx.start{
      http    = [[ server { listen 127.0.0.1:${port1}; location / { ... } } ]],  -- required: http-block text
      main    = "env FOO;",          -- optional: text for the main (top-level) context
      workers = 1,                   -- worker_processes (default 1)
      ports   = 2,                   -- how many free loopback ports to reserve (default 1)
      refused = 1,                   -- how many loopback ports that refuse connections (default 0)
      vars    = { name = "value" },  -- extra ${name} substitutions
      lua_path  = "/x/?.lua;",       -- prepended to lua_package_path
      lua_cpath = "/x/?.so;",        -- prepended to lua_package_cpath
      timeout = 10,                  -- seconds to wait until nginx answers (default 10)
    }
      -> srv | nil, err_string (err holds nginx's own output and error log)

    In `http` and `main`, ${port1}, ${port2}, ... are the reserved ports, ${refused1}, ... the refusing ports,
    ${prefix} the temporary prefix
    directory, ${repo} the repository root (absolute), and any name given in `vars`.
    The generated nginx.conf already has: both load_module lines, pid/error_log/temp paths under the prefix,
    `lua_package_path "<repo>/lua/?.lua;<repo>/lua/?/init.lua;<repo>/spec/nginx/?.lua;/usr/share/lua/5.1/?.lua;
    /usr/share/lua/5.1/?/init.lua;;"`, `lua_package_cpath "<repo>/?.so;<repo>/build/?.so;;"`, `access_log off`.

    srv.ports      { port1, port2, ... }
    srv.refused    { refused1, ... }: bound by this process, never listening, released by stop()
    srv.prefix     the temporary prefix directory (deleted by stop)
    srv.conf       the generated nginx.conf text
    srv:url(path [, i])    "http://127.0.0.1:<ports[i or 1]><path>"
    srv:error_log()        the error log text so far
    srv:worker_pids()      list of the worker processes' pids
    srv:stop()             stop nginx (SIGTERM, wait up to 5 s, then SIGKILL) and remove the prefix; idempotent
    nginx.free_port()      a free loopback TCP port (bind a LuaSocket to port 0); may be taken by another process
                           before you bind it: start() retries with new ports when nginx finds one in use
    nginx.refused_port()   port, holder: a loopback port that refuses connections until holder:close()
    nginx.wait_for(fn [, timeout [, what]])   poll fn() until it returns a true value (its values) or the
                           deadline passes (nil, message); the way to wait without a fixed sleep
    nginx.repo_root()      the repository root this helper belongs to (absolute path)
    nginx.NGINX            the nginx binary ("nginx", or $CTC_NGINX)

Every nginx runs with its own prefix (`nginx -p DIR -c DIR/nginx.conf -e DIR/logs/error.log`), never the
system service. A srv that is garbage-collected or left running at exit is not stopped: call srv:stop()
in a teardown (busted `teardown`/`lazy_teardown`) or `finally`.
]==]

local socket = require "socket"

local _M = { _VERSION = "0.1.0" }

_M.NGINX = os.getenv("CTC_NGINX") or "nginx"

local RUN_AS_ROOT = (function()
  local p = io.popen("id -u")
  local uid = p:read("*l")
  p:close()
  return uid == "0"
end)()

local MODULES = "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n" ..
                "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n"

local sh_quote = require("spec.helpers.util").quote

-- cmd's output and exit status: ok, output, code. The status is echoed by the shell, because what
-- file:close() says of a popen differs (Lua 5.1 and LuaJIT without 5.2 compatibility always say true).
local function run(cmd)
  -- children must not inherit a sanitizer runtime preloaded into the spec runner
  local p = io.popen("unset LD_PRELOAD; { " .. cmd .. " ; } 2>&1; echo \"__ctc_rc=$?\"")
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("__ctc_rc=(%d+)%s*$"))
  out = out:gsub("__ctc_rc=%d+%s*$", "")
  return code == 0, out, code
end
_M.run = run

local read_file = require("spec.helpers.util").read_file

local function write_file(path, data)
  local f, err = io.open(path, "wb")
  if not f then
    return nil, err
  end
  f:write(data)
  f:close()
  return true
end

local repo_root_cache

function _M.repo_root()
  if repo_root_cache then
    return repo_root_cache
  end
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/spec/helpers/[^/]+$")
  if not dir or dir == "" then
    dir = "."
  end
  if dir:sub(1, 1) ~= "/" then
    local _, pwd = run("cd " .. sh_quote(dir) .. " && pwd")
    dir = pwd:gsub("%s+$", "")
  end
  repo_root_cache = dir
  return dir
end

--- A loopback port that refuses connections: a socket bound to it that never listens. The port stays
-- reserved (no other process can take it) until holder:close().
function _M.refused_port()
  local holder = assert(socket.tcp())
  assert(holder:bind("127.0.0.1", 0))
  local _, port = holder:getsockname()
  return tonumber(port), holder
end

--- Wait until fn() returns a true value or `timeout` seconds (default 10) pass: fn's values | nil, message.
function _M.wait_for(fn, timeout, what)
  local deadline = socket.gettime() + (timeout or 10)
  local delay = 0.005
  while true do
    local v1, v2, v3 = fn()
    if v1 then
      return v1, v2, v3
    end
    if socket.gettime() > deadline then
      return nil, "timed out after " .. (timeout or 10) .. " s waiting for " .. (what or "a condition")
    end
    socket.sleep(delay)
    delay = math.min(delay * 2, 0.1)
  end
end

function _M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function substitute(text, vars)
  return (text:gsub("%${([%w_]+)}", function(name)
    local v = vars[name]
    if v == nil then
      error("nginx helper: no value for ${" .. name .. "}", 0)
    end
    return tostring(v)
  end))
end

local function port_open(port)
  local c = socket.tcp()
  c:settimeout(0.2)
  local ok = c:connect("127.0.0.1", port)
  c:close()
  return ok ~= nil
end

local function pid_alive(pid)
  return run("kill -0 " .. tonumber(pid)) == true
end

local Server = {}
Server.__index = Server

function Server:url(path, i)
  return "http://127.0.0.1:" .. self.ports[i or 1] .. (path or "/")
end

function Server:error_log()
  return read_file(self.prefix .. "/logs/error.log") or ""
end

function Server:master_pid()
  local s = read_file(self.prefix .. "/logs/nginx.pid")
  return s and tonumber(s:match("%d+"))
end

function Server:worker_pids()
  local master = self:master_pid()
  if not master then
    return {}
  end
  local _, out = run("pgrep -P " .. master)
  local pids = {}
  for pid in out:gmatch("%d+") do
    pids[#pids + 1] = tonumber(pid)
  end
  return pids
end

function Server:stop()
  if self.stopped then
    return true
  end
  self.stopped = true
  local pid = self:master_pid()
  if pid then
    run("kill -TERM " .. pid)
    local deadline = socket.gettime() + 5
    while pid_alive(pid) and socket.gettime() < deadline do
      socket.sleep(0.05)
    end
    if pid_alive(pid) then
      run("kill -KILL " .. pid)
    end
  end
  for _, h in ipairs(self.holders or {}) do
    h:close()
  end
  if self.prefix and self.prefix:match("^/tmp/ctc%-nginx%.") and not os.getenv("CTC_KEEP_NGINX") then
    run("rm -rf " .. sh_quote(self.prefix))
  end
  return true
end

-- Ports: a port found free (bind to 0, close) may be taken by another process before nginx binds it (several
-- test runs share the machine), so start() retries with fresh ports when nginx says "Address already in use".
local START_ATTEMPTS = 6

local function try_start(opts, repo)
  local ok, out = run("mktemp -d /tmp/ctc-nginx.XXXXXX")
  if not ok then
    return nil, "mktemp failed: " .. out
  end
  local prefix = out:gsub("%s+$", "")
  run("mkdir -p " .. sh_quote(prefix .. "/logs") .. " " .. sh_quote(prefix .. "/tmp"))

  local vars = { prefix = prefix, repo = repo }
  for k, v in pairs(opts.vars or {}) do
    vars[k] = v
  end
  local ports = {}
  local seen = {}
  for i = 1, opts.ports or 1 do
    local p
    repeat
      p = _M.free_port()
    until not seen[p]
    seen[p] = true
    ports[i] = p
    vars["port" .. i] = p
  end
  -- ports that refuse connections: bound (never listening) for the server's lifetime, so no one else takes them
  local holders, refused = {}, {}
  for i = 1, opts.refused or 0 do
    local port, holder = _M.refused_port()
    holders[i], refused[i] = holder, port
    vars["refused" .. i] = port
  end

  local lua_path = (opts.lua_path or "") .. repo .. "/lua/?.lua;" .. repo .. "/lua/?/init.lua;" ..
                   repo .. "/spec/nginx/?.lua;/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;"
  local lua_cpath = (opts.lua_cpath or "") .. repo .. "/?.so;" .. repo .. "/build/?.so;;"
  local ok_sub, conf = pcall(function()
    return table.concat({
      MODULES,
      "worker_processes " .. tostring(opts.workers or 1) .. ";",
      -- as root, workers would run as nobody and could not read a checkout under a 0700 directory
      -- (mktemp -d, CI's clone): keep them as the user who started nginx
      RUN_AS_ROOT and "user root;" or "",
      "daemon on;",
      "master_process on;",
      "pid " .. prefix .. "/logs/nginx.pid;",
      "error_log " .. prefix .. "/logs/error.log " .. (opts.log_level or "warn") .. ";",
      substitute(opts.main or "", vars),
      "events { worker_connections 1024; }",
      "http {",
      "  access_log off;",
      "  client_body_temp_path " .. prefix .. "/tmp/body;",
      "  proxy_temp_path " .. prefix .. "/tmp/proxy;",
      "  fastcgi_temp_path " .. prefix .. "/tmp/fastcgi;",
      "  uwsgi_temp_path " .. prefix .. "/tmp/uwsgi;",
      "  scgi_temp_path " .. prefix .. "/tmp/scgi;",
      "  lua_package_path \"" .. lua_path .. "\";",
      "  lua_package_cpath \"" .. lua_cpath .. "\";",
      substitute(opts.http, vars),
      "}",
      "",
    }, "\n")
  end)
  local function release()
    for _, h in ipairs(holders) do
      h:close()
    end
    run("rm -rf " .. sh_quote(prefix))
  end
  if not ok_sub then
    release()
    return nil, conf
  end
  assert(write_file(prefix .. "/nginx.conf", conf))

  local srv = setmetatable({ prefix = prefix, ports = ports, refused = refused, holders = holders, conf = conf,
                             vars = vars }, Server)
  local started, output = run(_M.NGINX .. " -p " .. sh_quote(prefix) .. " -c " .. sh_quote(prefix .. "/nginx.conf") ..
                              " -e " .. sh_quote(prefix .. "/logs/error.log"))
  if not started then
    local log = srv:error_log()
    srv.stopped = true
    release()
    local msg = "nginx did not start: " .. output .. "\n" .. log
    return nil, msg, (msg:find("Address already in use", 1, true) ~= nil)
  end
  -- the master listens before its workers run; a connection waits in the backlog until one accepts it
  local deadline = socket.gettime() + (opts.timeout or 10)
  while not port_open(ports[1]) do
    if socket.gettime() > deadline then
      local log = srv:error_log()
      srv:stop()
      return nil, "nginx did not answer on port " .. ports[1] .. " in time\n" .. log
    end
    socket.sleep(0.02)
  end
  return srv
end

function _M.start(opts)
  assert(type(opts) == "table" and type(opts.http) == "string", "nginx.start{ http = '...' } expected")
  local repo = _M.repo_root()
  local srv, err, in_use
  for _ = 1, START_ATTEMPTS do
    srv, err, in_use = try_start(opts, repo)
    if srv or not in_use then
      return srv, err
    end
  end
  return nil, err
end

return _M
