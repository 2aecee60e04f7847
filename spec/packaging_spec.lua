-- The rockspec and the Makefile must ship what the tree holds: a module or a C
-- file added without a line in the rockspec would build with make and break
-- for every LuaRocks user.
local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function list(cmd)
  local p = assert(io.popen("unset LD_PRELOAD; " .. cmd))
  local out = {}
  for line in p:lines() do
    out[#out + 1] = line
  end
  p:close()
  return out
end

for _, rockspec_file in ipairs { "rockspec/clicktocall-scm-1.rockspec", "rockspec/clicktocall-" ..
                        require("clicktocall.core")._VERSION .. "-1.rockspec" } do
describe(rockspec_file, function()
  local rockspec = read(rockspec_file)

  it("differs from the scm rockspec only in its version and tag", function()
    local scm = read("rockspec/clicktocall-scm-1.rockspec")
    local function strip(s)
      return (s:gsub('\nversion = "[^"]*"', ""):gsub('\n  tag = "[^"]*",', ""))
    end
    assert.equal(strip(scm), strip(rockspec))
  end)

  it("lists every Lua module under lua/, each at its own path", function()
    local files = list("find lua -name '*.lua' | sort")
    assert.is_true(#files >= 10, "found only " .. #files .. " modules")
    for _, file in ipairs(files) do
      local name = file:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/", ".")
      local line = ('["%s"] = "%s"'):format(name, file)
      assert.truthy(rockspec:find(line, 1, true), "rockspec lacks " .. line)
    end
  end)

  it("builds the core from every C file under csrc/", function()
    local files = list("ls csrc/*.c")
    assert.is_true(#files >= 10)
    for _, file in ipairs(files) do
      assert.truthy(rockspec:find('"' .. file .. '"', 1, true), "rockspec lacks " .. file)
    end
  end)

  it("installs the clicktocall command, the docs and the examples, on unix", function()
    assert.truthy(rockspec:find('bin = { clicktocall = "bin/clicktocall" }', 1, true))
    assert.truthy(rockspec:find('copy_directories = { "docs", "examples" }', 1, true))
    assert.truthy(rockspec:find('supported_platforms = { "unix" }', 1, true))
  end)
end)
end

describe("make install", function()
  it("puts the modules, the core and the command under DESTDIR", function()
    local dest = list("mktemp -d /tmp/ctc-install.XXXXXX")[1]
    local log = list("make -s install DESTDIR=" .. dest .. " PREFIX=/usr/local >/dev/null 2>&1; echo $?")
    assert.equal("0", log[#log])
    local installed = {}
    for _, f in ipairs(list("cd " .. dest .. " && find . -type f | sort")) do
      installed[f] = true
    end
    for _, file in ipairs(list("find lua -name '*.lua' | sort")) do
      local want = "./usr/local/share/lua/5.4/" .. file:gsub("^lua/", "")
      assert.is_true(installed[want], want .. " not installed")
    end
    assert.is_true(installed["./usr/local/lib/lua/5.4/clicktocall/core.so"])
    assert.is_true(installed["./usr/local/bin/clicktocall"])
    local head = read(dest .. "/usr/local/bin/clicktocall"):match("^[^\n]*")
    assert.equal("#!/usr/bin/env lua5.4", head)
    os.execute("rm -rf '" .. dest .. "'")
  end)
end)
