-- sim/run stop and sim/run status asked about a port (or prefix) other than the one the simulator was
-- started with say that no simulator runs there, and where one does: never a bare "stopped" that reads
-- as if the running simulator had been stopped.
local nginx = require "spec.helpers.nginx"

local ROOT = nginx.repo_root()

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then
    return ""
  end
  local s = f:read("*a")
  f:close()
  return s
end

-- sim/run <what> with the given CTC_SIM_* settings -> exit code, stdout, stderr
local function sim_run(what, port, prefix)
  local out, err = os.tmpname(), os.tmpname()
  local env = "CTC_SIM_PORT=" .. port .. (prefix and (" CTC_SIM_PREFIX=" .. q(prefix)) or "")
  local _, _, code = nginx.run(("%s CTC_SIM_WORKERS=1 %s %s >%s 2>%s"):format(env, q(ROOT .. "/sim/run"), what,
                                                                            q(out), q(err)))
  local o, e = read(out), read(err)
  os.remove(out)
  os.remove(err)
  return code, o, e
end

describe("sim/run stop and status", function()
  local port, prefix

  setup(function()
    -- the default prefix (/tmp/clicktocall-sim-<port>), as a user gets it; a port taken meanwhile is tried anew
    for _ = 1, 6 do
      port = nginx.free_port()
      prefix = "/tmp/clicktocall-sim-" .. port
      local code, _, err = sim_run("start", port)
      if code == 0 then
        return
      end
      os.execute("rm -rf " .. q(prefix))
      assert(err:find("Address already in use", 1, true), "sim/run start failed: " .. err)
    end
    error("no free port for the simulator")
  end)

  teardown(function()
    sim_run("stop", port)
    os.execute("rm -rf " .. q(prefix))
  end)

  it("status on another port: not running, exit 1, and the port of the one that runs", function()
    local other = nginx.free_port()
    local code, out, err = sim_run("status", other)
    assert.equal(1, code)
    assert.equal("not running\n", out)
    assert.matches("no simulator runs on http://127.0.0.1:" .. other, err, 1, true)
    assert.matches("CTC_SIM_PORT=" .. port, err, 1, true)
  end)

  it("stop on another port stops nothing and says so; the simulator still answers", function()
    local other = nginx.free_port()
    local code, out, err = sim_run("stop", other)
    assert.equal(0, code)
    assert.equal("not running\n", out)
    assert.matches("no simulator runs on http://127.0.0.1:" .. other, err, 1, true)
    assert.matches("CTC_SIM_PORT=" .. port, err, 1, true)
    local scode, sout = sim_run("status", port)
    assert.equal(0, scode)
    assert.equal("running\n", sout)
  end)

  it("status on its port with another prefix names the prefix it was started with", function()
    local code, out, err = sim_run("status", port, "/tmp/clicktocall-not-this-one")
    assert.equal(1, code)
    assert.equal("not running\n", out)
    assert.matches("was started with CTC_SIM_PREFIX=" .. prefix, err, 1, true)
  end)

  it("stop on its own port stops it; a second stop says nothing runs there", function()
    local code, out = sim_run("stop", port)
    assert.equal(0, code)
    assert.equal("stopped\n", out)
    local code2, out2, err2 = sim_run("stop", port)
    assert.equal(0, code2)
    assert.equal("not running\n", out2)
    assert.matches("no simulator runs on http://127.0.0.1:" .. port, err2, 1, true)
    local scode = sim_run("status", port)
    assert.equal(1, scode)
  end)
end)
