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

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = q

--- the interpreter running this spec, as a command name
function M.lua()
  if rawget(_G, "jit") then
    return "luajit"
  end
  return "lua" .. _VERSION:match("(%d+%.%d+)")
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("*a")
  f:close()
  return s
end

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

--- run(args [, { env = {...}, home =, stdin =, lua =, bin = }]) -> { code, stdout, stderr, home }
-- HOME is a fresh directory unless given, so no real config file is read.
function M.run(args, opts)
  opts = opts or {}
  local home = opts.home or M.tmpdir()
  local out, err = os.tmpname(), os.tmpname()
  local env = { "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"), "HOME=" .. q(home) }
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

return M
