-- The examples take their account from CLICKTOCALL_* as the command line does, and never from a default:
-- under cron's empty environment they stop at once, exit non-zero, and say which variable is missing,
-- instead of archiving from (or dialling through) the bundled simulator's address.
local ROOT = (function()
  local p = assert(io.popen("pwd"))
  local d = p:read("*l")
  p:close()
  return d
end)()

local ACCOUNT = { "CLICKTOCALL_BASE_URL", "CLICKTOCALL_APP_SECRET", "CLICKTOCALL_USER_DATA" }

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("*a")
  f:close()
  return s
end

-- Runs `lua5.4 examples/<file> args...` under `env -i` plus the given variables; the module paths are
-- given as an installed module would be found, so nothing but the settings can stop the example.
-- -> exit code, stdout, stderr
local function run(file, args, vars)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. q(dir)))
  local env = { "env -i", "PATH=/usr/bin:/bin", "HOME=" .. q(dir), "LOGNAME=cron", "SHELL=/bin/sh",
                "LUA_PATH=" .. q(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"),
                "LUA_CPATH=" .. q(ROOT .. "/build/5.4/?.so;;") }
  for k, v in pairs(vars or {}) do
    env[#env + 1] = k .. "=" .. q(v)
  end
  local quoted = {}
  for i, a in ipairs(args or {}) do
    quoted[i] = q(a)
  end
  local cmd = ("unset LD_PRELOAD; cd %s && %s lua5.4 %s %s >%s/out 2>%s/err; echo $?"):format(q(dir),
    table.concat(env, " "), q(ROOT .. "/examples/" .. file), table.concat(quoted, " "), q(dir), q(dir))
  local p = assert(io.popen(cmd))
  local code = tonumber(p:read("*a"):match("%d+"))
  p:close()
  local out, err = read(dir .. "/out"), read(dir .. "/err")
  os.execute("rm -rf " .. q(dir))
  return code, out, err
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. q(d)))
  return d
end

local function listing(dir)
  local p = assert(io.popen("ls -A " .. q(dir)))
  local s = p:read("*a")
  p:close()
  return s
end

describe("the examples under an empty environment", function()
  local cases = {
    { file = "archive_recordings.lua", needs = ACCOUNT, dir_arg = true },
    { file = "sync_sqlite.lua", needs = ACCOUNT,
      args = function(d) return { d .. "/calls.db", d .. "/state.json" } end },
    { file = "sync_postgres.lua", needs = { ACCOUNT[1], ACCOUNT[2], ACCOUNT[3], "CLICKTOCALL_POSTGRES" },
      args = function(d) return { d .. "/state.json" } end },
    { file = "quickstart.lua", args = function() return {} end,
      needs = { ACCOUNT[1], ACCOUNT[2], ACCOUNT[3], "CLICKTOCALL_SEAT", "CLICKTOCALL_AGENT_PHONE",
                "CLICKTOCALL_CUSTOMER_PHONE" } },
  }
  for _, c in ipairs(cases) do
    it(c.file .. " stops at once, exit 2, naming every variable it lacks, and writes nothing", function()
      local d = tmpdir()
      local args = c.dir_arg and { d, "2" } or c.args(d)
      local code, out, err = run(c.file, args)
      assert.equal(2, code)
      assert.equal("", out)
      for _, name in ipairs(c.needs) do
        assert.truthy(err:find(name, 1, true), c.file .. " did not name " .. name .. ": " .. err)
      end
      assert.truthy(err:find("nothing was done", 1, true), err)
      assert.is_nil(err:find("127.0.0.1", 1, true), err)
      assert.equal(1, select(2, err:gsub("\n", "")), "one sentence: " .. err)
      assert.equal("", listing(d)) -- no lock, no manifest, no database, no state file
      os.execute("rm -rf " .. q(d))
    end)
  end

  it("names only what is missing, and counts an empty value as missing", function()
    local d = tmpdir()
    local code, _, err = run("archive_recordings.lua", { d }, { CLICKTOCALL_BASE_URL = "http://127.0.0.1:1",
                                                              CLICKTOCALL_APP_SECRET = "" })
    assert.equal(2, code)
    assert.matches("CLICKTOCALL_APP_SECRET and CLICKTOCALL_USER_DATA are not set", err, 1, true)
    assert.is_nil(err:match("^[^(]*CLICKTOCALL_BASE_URL"), err) -- named only in the list of what it needs
    assert.equal("", listing(d))
    os.execute("rm -rf " .. q(d))
  end)

  it("reads no CTC_* variable: the old names are not a second scheme", function()
    local d = tmpdir()
    local code, _, err = run("archive_recordings.lua", { d }, { CTC_BASE_URL = "http://127.0.0.1:1",
      CTC_APP_SECRET = "TEST", CTC_USER_DATA = "4e2239c5-a6e6-4201-a072-8342e29c3ae3" })
    assert.equal(2, code)
    assert.truthy(err:find("CLICKTOCALL_BASE_URL", 1, true), err)
    os.execute("rm -rf " .. q(d))
  end)

  it("the README's cron lines, with the crontab's settings but not the secret's file, fail loudly", function()
    local readme = assert(read(ROOT .. "/README.md"))
    local block = assert(readme:match("```cron\n(.-)```"), "README has no cron block")
    local crontab_env = {}
    for name, value in block:gmatch("\n?([%u_]+)=([^\n]*)") do
      crontab_env[name] = value
    end
    local n = 0
    for line in block:gmatch("[^\n]+") do
      local script, rest = line:match("lua5%.4 /opt/app/examples/(%S+)%s+([^>]*)")
      if script then
        n = n + 1
        local args = {}
        for a in rest:gmatch("%S+") do
          args[#args + 1] = a
        end
        local code, out, err = run(script, args, crontab_env)
        assert.equal(2, code, line)
        assert.equal("", out)
        assert.matches("^[^\n]*/examples/" .. script:gsub("%p", "%%%0") .. ": CLICKTOCALL_APP_SECRET is not set, "
                       .. "so nothing was done", err)
      end
    end
    assert.is_true(n >= 2, "expected the archive and sync cron lines, found " .. n)
  end)
end)
