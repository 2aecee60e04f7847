--- Runs bin/clicktocall as a user does: a separate process, its own
-- environment (nothing inherited but PATH), stdout and stderr captured apart.
--   local cli = require "spec.helpers.cli"
--   local r = cli.run({ "balance" }, { env = { CLICKTOCALL_BASE_URL = url, ... } })
--   r.code, r.stdout, r.stderr
-- The interpreter is the one running the specs (lua5.4, lua5.1, luajit...), so
-- the command is tested on each Lua the suite runs on.
local nginx = require "spec.helpers.nginx"

local M = {}

M.ROOT = nginx.repo_root()
M.BIN = M.ROOT .. "/bin/clicktocall"

local util = require "spec.helpers.util"
local q = util.quote
M.quote = q

--- the interpreter running this spec, as a command name
function M.lua()
  if rawget(_G, "jit") then
    return "luajit"
  end
  return "lua" .. _VERSION:match("(%d+%.%d+)")
end

M.read = util.read_file

function M.write(path, data, mode)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  if mode then
    assert(os.execute("chmod " .. mode .. " " .. q(path)))
  end
end

--- a fresh empty directory (removed by M.cleanup)
local dirs = {}
function M.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -m 700 " .. q(d)))
  dirs[#dirs + 1] = d
  return d
end

function M.cleanup()
  for _, d in ipairs(dirs) do
    os.execute("rm -rf " .. q(d))
  end
  dirs = {}
end

local function exit_code(ok, how, code)
  if type(ok) == "number" then -- Lua 5.1: the raw wait status
    return ok >= 256 and math.floor(ok / 256) or ok
  end
  if how == "signal" then
    return 128 + code
  end
  return code
end

-- no system-wide config (/etc/clicktocall/config) unless a spec names one
local function system_config(env, opts)
  if not (opts.env and opts.env.CLICKTOCALL_SYSTEM_CONFIG) then
    env[#env + 1] = "CLICKTOCALL_SYSTEM_CONFIG="
  end
end

--- run(args [, { env = {...}, home =, stdin =, lua =, bin = }]) -> { code, stdout, stderr, home }
-- HOME is a fresh directory unless given, so no real config file is read.
function M.run(args, opts)
  opts = opts or {}
  local home = opts.home or M.tmpdir()
  local out, err = os.tmpname(), os.tmpname()
  local env = { "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"), "HOME=" .. q(home) }
  system_config(env, opts)
  for k, v in pairs(opts.env or {}) do
    env[#env + 1] = k .. "=" .. q(v)
  end
  local argv = {}
  for i, a in ipairs(args) do
    argv[i] = q(a)
  end
  local cmd = ("cd %s && env -i %s %s %s %s <%s >%s 2>%s"):format(q(M.ROOT), table.concat(env, " "),
    opts.lua or M.lua(), q(opts.bin or M.BIN), table.concat(argv, " "), q(opts.stdin or "/dev/null"), q(out), q(err))
  local code = exit_code(os.execute(cmd))
  local r = { code = code, stdout = M.read(out) or "", stderr = M.read(err) or "", home = home }
  os.remove(out)
  os.remove(err)
  return r
end

--- spawn(args [, opts]) -> job: as run(), in the background, for a spec that
-- plays the server itself. job:done() -> true once it exited; job:result()
-- -> { code, stdout, stderr } (nil while it runs); job.output() -> stdout, stderr
-- so far; job.signal(name) sends SIGname to the command's own process (the
-- interpreter: sh and env exec into it). A signal the command does not handle
-- shows as code 128 + its number, as in a shell.
function M.spawn(args, opts)
  opts = opts or {}
  local home = opts.home or M.tmpdir()
  local dir = M.tmpdir()
  local env = { "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"), "HOME=" .. q(home) }
  system_config(env, opts)
  for k, v in pairs(opts.env or {}) do
    env[#env + 1] = k .. "=" .. q(v)
  end
  local argv = {}
  for i, a in ipairs(args) do
    argv[i] = q(a)
  end
  local cmd = ("cd %s && (sh -c 'echo $$ >\"$0\"; exec \"$@\"' %s/pid env -i %s %s %s %s </dev/null >%s/out 2>%s/err; "
    .. "echo $? >%s/rc.tmp; mv %s/rc.tmp %s/rc) &")
    :format(q(M.ROOT), q(dir), table.concat(env, " "), opts.lua or M.lua(), q(M.BIN), table.concat(argv, " "),
      q(dir), q(dir), q(dir), q(dir), q(dir))
  assert(os.execute(cmd))
  local job = {}
  function job.done()
    return M.read(dir .. "/rc") ~= nil
  end
  function job.result()
    local rc = M.read(dir .. "/rc")
    if not rc then
      return nil
    end
    return { code = tonumber(rc), stdout = M.read(dir .. "/out") or "", stderr = M.read(dir .. "/err") or "" }
  end
  function job.output()
    return M.read(dir .. "/out") or "", M.read(dir .. "/err") or ""
  end
  function job.signal(name)
    local pid = tonumber(M.read(dir .. "/pid") or "")
    assert(pid, "the command's process id is not known yet")
    return os.execute(("kill -%s %d"):format(name, pid))
  end
  return job
end

--- the environment for a simulator started by spec.helpers.sim
function M.sim_env(s, extra)
  local env = { CLICKTOCALL_BASE_URL = s.base_url, CLICKTOCALL_APP_SECRET = s.secret,
                CLICKTOCALL_USER_DATA = s.user_data }
  for k, v in pairs(extra or {}) do
    env[k] = v
  end
  return env
end

--- CSV (RFC 4180) into rows of fields; written here, apart from the code under test
function M.parse_csv(s)
  local rows, row, field = {}, {}, {}
  local i, n = 1, #s
  local quoted = false
  while i <= n do
    local c = s:sub(i, i)
    if quoted then
      if c == '"' then
        if s:sub(i + 1, i + 1) == '"' then
          field[#field + 1] = '"'
          i = i + 1
        else
          quoted = false
        end
      else
        field[#field + 1] = c
      end
    elseif c == '"' then
      assert(#field == 0, "a quote inside an unquoted field at byte " .. i)
      quoted = true
    elseif c == "," then
      row[#row + 1] = table.concat(field)
      field = {}
    elseif c == "\r" and s:sub(i + 1, i + 1) == "\n" then
      row[#row + 1] = table.concat(field)
      rows[#rows + 1] = row
      row, field = {}, {}
      i = i + 1
    else
      assert(c ~= "\n" and c ~= "\r", "a bare line end outside quotes at byte " .. i)
      field[#field + 1] = c
    end
    i = i + 1
  end
  assert(not quoted, "an unterminated quoted field")
  if #field > 0 or #row > 0 then
    row[#row + 1] = table.concat(field)
    rows[#rows + 1] = row
  end
  return rows
end

--- start_sim{ secret = } -> a simulator (sim/run) on a free loopback port with
-- that app secret: spec.helpers.sim always uses "TEST", too common a string to
-- search the command's output for. Same shape: base_url, secret, user_data,
-- post(path, body), stop().
local sim_mt = {}
sim_mt.__index = sim_mt

function M.start_sim(opts)
  local core = require "clicktocall.core"
  local port = nginx.free_port()
  local prefix = os.tmpname()
  os.remove(prefix)
  local env = ("CTC_SIM_PORT=%d CTC_SIM_PREFIX=%s CTC_SIM_WORKERS=1 CTC_SIM_SECRET=%s"):format(port, q(prefix),
    q(opts.secret))
  local p = io.popen("unset LD_PRELOAD; " .. env .. " " .. q(M.ROOT .. "/sim/run") .. " start 2>&1")
  local out = p:read("*a")
  p:close()
  local url = out:match("(http://[^\n]+)%s*$")
  if not url then
    return nil, "sim/run start failed: " .. out
  end
  return setmetatable({ base_url = url, secret = opts.secret, user_data = "4e2239c5-a6e6-4201-a072-8342e29c3ae3",
                        env = env, prefix = prefix, http = core.curl_transport() }, sim_mt)
end

function sim_mt:post(path, body)
  local cjson = require "cjson"
  local res, err = self.http:perform { method = "POST", url = self.base_url .. path,
    headers = { ["Content-Type"] = "application/json" }, body = body and cjson.encode(body) or "{}" }
  assert(res, err and err.message)
  assert(res.status == 200, path .. " answered " .. res.status .. ": " .. res.body)
  return cjson.decode(res.body)
end

function sim_mt:get(path)
  local res, err = self.http:perform { method = "GET", url = self.base_url .. path, max_body = 64 * 1024 * 1024 }
  assert(res, err and err.message)
  return require("cjson").decode(res.body)
end

function sim_mt:stop()
  if self.http then
    self.http:close()
    self.http = nil
    os.execute("unset LD_PRELOAD; " .. self.env .. " " .. q(M.ROOT .. "/sim/run") .. " stop >/dev/null 2>&1")
    os.execute("rm -rf " .. q(self.prefix))
  end
end

--- tmux(args, opts) -> session: the command in a real terminal (a detached tmux
-- pane on a private server), for what only a terminal shows.
--   local t = cli.tmux({ "records", ... }, { env = ... })
--   t:wait_for("pattern", seconds) -> the pane's text | nil, text; t:kill()
local tmux_mt = {}
tmux_mt.__index = tmux_mt

local tmux_n = 0
function M.tmux(args, opts)
  opts = opts or {}
  tmux_n = tmux_n + 1
  local sock = ("ctc-cli-%d-%d-%d"):format(os.time(), tmux_n, math.random(1, 1e6))
  local env = { "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"), "HOME=" .. q(opts.home or M.tmpdir()),
                "TERM=xterm" }
  system_config(env, opts)
  for k, v in pairs(opts.env or {}) do
    env[#env + 1] = k .. "=" .. q(v)
  end
  local argv = {}
  for i, a in ipairs(args) do
    argv[i] = q(a)
  end
  -- the exit status is printed after the command; the pane then waits to be read
  local inner = ("cd %s && env -i %s %s %s %s; echo __EXIT__$?; read _"):format(q(M.ROOT), table.concat(env, " "),
    opts.lua or M.lua(), q(M.BIN), table.concat(argv, " "))
  local cmd = ("unset LD_PRELOAD TMUX; tmux -L %s -f /dev/null new-session -d -x %d -y %d %s"):format(sock,
    opts.width or 160, opts.height or 30, q(inner))
  assert(os.execute(cmd))
  return setmetatable({ sock = sock }, tmux_mt)
end

function tmux_mt:capture()
  local p = io.popen("tmux -L " .. self.sock .. " capture-pane -p -J 2>/dev/null")
  local s = p:read("*a")
  p:close()
  return s
end

function tmux_mt:wait_for(pattern, seconds)
  local core = require "clicktocall.core"
  local deadline = core.now() + (seconds or 20)
  local text
  repeat
    text = self:capture()
    if text:find(pattern) then
      return text
    end
    core.sleep(0.05)
  until core.now() > deadline
  return nil, text
end

function tmux_mt:kill()
  os.execute("tmux -L " .. self.sock .. " kill-server >/dev/null 2>&1")
end

return M
