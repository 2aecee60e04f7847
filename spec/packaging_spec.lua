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

local VERSION = require("clicktocall.core")._VERSION

-- The Lua files under lua/ with their module names; cli: the command's (clicktocall.cli*), whose
-- dependencies the clicktocall-cli rock declares (LuaRocks installs all of lua/ with the library's rock).
local function modules()
  local out = {}
  for _, file in ipairs(list("find lua -name '*.lua' | sort")) do
    local name = file:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/", ".")
    out[#out + 1] = { name = name, file = file, cli = name:find("^clicktocall%.cli") ~= nil }
  end
  return out
end

-- The rock names a rockspec depends on (without versions), as a set.
local function dependencies(rockspec)
  local deps = {}
  for dep in rockspec:match("\ndependencies = (%b{})"):gmatch('"([%w%-_]+)[^"]*"') do
    deps[dep] = true
  end
  return deps
end

-- Whether any of the given modules requires lib (plainly or under pcall).
local function required(mods, lib)
  for _, m in ipairs(mods) do
    local src = read(m.file)
    if src:find('require[ (]*"' .. lib .. '"') or src:find('pcall%(require, *"' .. lib .. '"') then
      return true
    end
  end
  return false
end

for _, rock in ipairs { "clicktocall", "clicktocall-cli" } do
  local cli = rock == "clicktocall-cli"
  for _, rockspec_file in ipairs { "rockspec/" .. rock .. "-scm-1.rockspec", "rockspec/" .. rock .. "-" .. VERSION
                                   .. "-1.rockspec" } do
describe(rockspec_file, function()
  local rockspec = read(rockspec_file)

  it("differs from the scm rockspec only in its version and tag", function()
    local scm = read("rockspec/" .. rock .. "-scm-1.rockspec")
    local function strip(s)
      return (s:gsub('\nversion = "[^"]*"', ""):gsub('\n  tag = "[^"]*",', "")
        :gsub('"clicktocall == [^"]*"', '"clicktocall == ?"'))
    end
    assert.equal(strip(scm), strip(rockspec))
  end)

  it("lists every Lua module under lua/, each at its own path (the command's rock none)", function()
    local mods = modules()
    assert.is_true(#mods >= 10, "found only " .. #mods .. " modules")
    for _, m in ipairs(mods) do
      local line = ('["%s"] = "%s"'):format(m.name, m.file)
      assert.equal(not cli, rockspec:find(line, 1, true) ~= nil, line)
    end
  end)

  it("declares what its modules require, and nothing of the other rock's", function()
    local mine = {}
    for _, m in ipairs(modules()) do
      if m.cli == cli then
        mine[#mine + 1] = m
      end
    end
    local deps = dependencies(rockspec)
    assert.equal(required(mine, "cjson"), deps["lua-cjson"] == true)
    assert.equal(required(mine, "argparse"), deps["argparse"] == true)
    assert.equal(required(mine, "term"), deps["lua-term"] == true)
    assert.truthy(required(mine, "socket") and deps["luasocket"])
    assert.equal(cli, deps["clicktocall"] == true)
  end)

  it("is for unix; the library builds the core from every C file under csrc/", function()
    assert.truthy(rockspec:find('supported_platforms = { "unix" }', 1, true))
    local files = list("ls csrc/*.c")
    assert.is_true(#files >= 10)
    for _, file in ipairs(files) do
      assert.equal(not cli, rockspec:find('"' .. file .. '"', 1, true) ~= nil, file)
    end
  end)

  if cli then
    it("installs the clicktocall command and LuaRocks' default docs (README, LICENSE...)", function()
      assert.truthy(rockspec:find('\n  type = "none",\n', 1, true))
      assert.truthy(rockspec:find('bin = { clicktocall = "bin/clicktocall" }', 1, true))
      assert.truthy(rockspec:find('copy_directories = {}', 1, true))
    end)
  else
    it("carries the docs, the examples, README.md and LICENSE; `luarocks test` runs busted", function()
      assert.falsy(rockspec:find("bin = {", 1, true))
      assert.truthy(rockspec:find('copy_directories = { "docs", "examples" }', 1, true))
      assert.truthy(rockspec:find('conf = { ["README.md"] = "README.md", LICENSE = "LICENSE" }', 1, true))
      assert.truthy(rockspec:find('\ntest = { type = "command", script = "spec/luarocks_test.lua" }\n', 1, true))
    end)
  end
end)
  end
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

-- Runs cmd in a shell; returns what it printed (stdout and stderr) and its exit status.
local function sh(cmd)
  local out = list("{ " .. cmd .. "; } 2>&1; echo \"exit $?\"")
  local status = table.remove(out):match("^exit (%d+)$")
  return table.concat(out, "\n"), tonumber(status)
end

-- A directory of stand-ins for what changes a machine (apt-get, dpkg, systemctl...), each logging its
-- call; dpkg-query knows no package and `id -u` says root, so a bootstrap run from make would install
-- and (before issue 19) stop services. Returns the directory, the log's path and a PATH putting them first.
local function standins()
  local dir = list("mktemp -d /tmp/ctc-standins.XXXXXX")[1]
  local log = dir .. "/calls.log"
  local logger = '#!/bin/sh\necho "$(basename "$0") $*" >> ' .. log .. "\n"
  for _, name in ipairs { "apt-get", "apt", "aptitude", "dpkg", "systemctl", "service", "invoke-rc.d", "sudo" } do
    local f = assert(io.open(dir .. "/" .. name, "w"))
    -- `systemctl is-active` says yes, as on a box serving with nginx and redis
    f:write(logger, "exit 0\n")
    f:close()
  end
  local f = assert(io.open(dir .. "/dpkg-query", "w"))
  f:write(logger, 'printf "unknown ok not-installed"\n')
  f:close()
  f = assert(io.open(dir .. "/id", "w"))
  f:write('#!/bin/sh\n[ "$1" = -u ] && { echo 0; exit 0; }\nexec /usr/bin/id "$@"\n')
  f:close()
  os.execute("chmod +x '" .. dir .. "'/*; : > '" .. log .. "'")
  return dir, log, dir .. ":" .. os.getenv("PATH")
end

describe("make and make install (issue 19)", function()
  local dir, log, path
  before_each(function()
    dir, log, path = standins()
  end)
  after_each(function()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("as root, install no package and stop no service", function()
    local out, status = sh("PATH='" .. path .. "' make -s")
    assert.equal(0, status, out)
    out, status = sh("PATH='" .. path .. "' make -s install DESTDIR='" .. dir .. "/dest'")
    assert.equal(0, status, out)
    assert.is_true(read(dir .. "/dest/usr/local/bin/clicktocall") ~= nil)
    assert.equal("", read(log))
  end)

  it("names a missing Lua header and its Debian package, installing nothing", function()
    local out, status = sh("PATH='" .. path .. "' make -s LUA_PC=lua9.9")
    assert.is_not.equal(0, status)
    assert.truthy(out:find("the Lua 5.4 headers (pkg-config module lua9.9): liblua5.4-dev", 1, true), out)
    assert.truthy(out:find("apt-get install liblua5.4-dev", 1, true), out)
    assert.equal("", read(log))
  end)

  it("names missing libcurl headers and their Debian package", function()
    local f = assert(io.open(dir .. "/pkg-config", "w"))
    f:write('#!/bin/sh\nfor a; do [ "$a" = libcurl ] && exit 1; done\nexec /usr/bin/pkg-config "$@"\n')
    f:close()
    os.execute("chmod +x '" .. dir .. "/pkg-config'")
    local out, status = sh("PATH='" .. path .. "' make -s install DESTDIR='" .. dir .. "/dest'")
    assert.is_not.equal(0, status)
    assert.truthy(out:find("the libcurl headers (pkg-config module libcurl): libcurl4-openssl-dev", 1, true), out)
    assert.equal("", read(log))
  end)

  it("make bootstrap installs what is missing, and stops nothing", function()
    local out, status = sh("PATH='" .. path .. "' make -s bootstrap")
    assert.equal(0, status, out)
    local calls = read(log)
    assert.truthy(calls:find("\napt-get install -y -qq --no-install-recommends build-essential ", 1, true), calls)
    assert.truthy(calls:find(" nginx-light ", 1, true), calls)
    assert.falsy(calls:find("systemctl", 1, true), calls)
    assert.falsy(calls:find("service", 1, true), calls)
  end)

  it("make demo and make check bootstrap before they build", function()
    local out = sh("PATH='" .. path .. "' make --no-print-directory -n demo")
    assert.equal("scripts/bootstrap --quiet", out:match("^[^\n]*"))
    out = sh("PATH='" .. path .. "' make --no-print-directory -n check")
    assert.equal("scripts/check", out:match("^[^\n]*"))
    local check = read("scripts/check")
    assert.truthy(check:find('\n  step "bootstrap and build (Lua 5.4)"\n  scripts/bootstrap || exit 1\n', 1, true))
  end)
end)

describe("make install with another PREFIX (issue 19)", function()
  local tmp
  before_each(function()
    tmp = list("mktemp -d /tmp/ctc-prefix.XXXXXX")[1]
  end)
  after_each(function()
    os.execute("rm -rf '" .. tmp .. "'")
  end)

  it("gives a command that finds its modules in a clean environment", function()
    local out, status = sh("make -s install PREFIX='" .. tmp .. "/x' DESTDIR=")
    assert.equal(0, status, out)
    local run = "cd / && env -i PATH='" .. tmp .. "/x/bin:/usr/bin:/bin' clicktocall "
    out, status = sh(run .. "--version")
    assert.equal(0, status, out)
    assert.truthy(out:find("^clicktocall %d+%.%d+%.%d+"), out)
    out, status = sh(run .. "normalize 13500000002")
    assert.equal(0, status, out)
    assert.equal("+8613500000002", out)
  end)

  it("puts the user's LUA_PATH first, the install dirs after", function()
    local out, status = sh("make -s install PREFIX='" .. tmp .. "/x' DESTDIR=")
    assert.equal(0, status, out)
    -- a module of the user's own, named like one of ours: theirs wins when they ask for it
    os.execute("mkdir -p '" .. tmp .. "/mine/clicktocall/cli' && printf 'error(\"the user module\")' > '"
      .. tmp .. "/mine/clicktocall/cli.lua'")
    out = sh("cd / && env -i PATH='" .. tmp .. "/x/bin:/usr/bin:/bin' LUA_PATH='" .. tmp
      .. "/mine/?.lua;;' clicktocall --version")
    assert.truthy(out:find("the user module", 1, true), out)
  end)

  it("LUA_VERSION=luajit installs the LuaJIT core and leaves the command as it was", function()
    local dest = tmp .. "/dest"
    local out, status = sh("make -s install DESTDIR='" .. dest .. "'")
    assert.equal(0, status, out)
    local bin = dest .. "/usr/local/bin/clicktocall"
    local before = read(bin)
    out, status = sh("make -s install LUA_VERSION=luajit DESTDIR='" .. dest .. "'")
    assert.equal(0, status, out)
    assert.truthy(out:find("make install-cli LUA_VERSION=luajit", 1, true), out)
    assert.truthy(read(dest .. "/usr/local/lib/lua/5.1/clicktocall/core.so"))
    assert.truthy(read(dest .. "/usr/local/share/lua/5.1/clicktocall/cli.lua"))
    assert.equal(before, read(bin))
    -- uninstalling LuaJIT's leaves the 5.4 command; asked for, the command runs on luajit
    out, status = sh("make -s uninstall LUA_VERSION=luajit DESTDIR='" .. dest .. "'")
    assert.equal(0, status, out)
    assert.is_nil(io.open(dest .. "/usr/local/lib/lua/5.1/clicktocall/core.so"))
    assert.equal(before, read(bin))
    out, status = sh("make -s install-cli LUA_VERSION=luajit DESTDIR='" .. dest .. "'")
    assert.equal(0, status, out)
    assert.equal("#!/usr/bin/env luajit", read(bin):match("^[^\n]*"))
    out, status = sh("make -s uninstall DESTDIR='" .. dest .. "'")
    assert.equal(0, status, out)
    assert.truthy(io.open(bin), "the luajit command is not 5.4's to remove")
    out, status = sh("make -s uninstall LUA_VERSION=luajit DESTDIR='" .. dest .. "'")
    assert.equal(0, status, out)
    assert.is_nil(io.open(bin))
    assert.equal("", list("cd '" .. dest .. "' && find . -type f")[1] or "")
  end)
end)

describe("LuaRocks as the README says (issue 19)", function()
  local readme = read("README.md")
  local tree
  before_each(function()
    tree = list("mktemp -d /tmp/ctc-rocks.XXXXXX")[1]
  end)
  after_each(function()
    os.execute("rm -rf '" .. tree .. "'")
  end)

  -- The README's `luarocks --lua-version=5.4 make ...` lines, in order, into the temporary tree.
  local function make_commands()
    local cmds = {}
    for line in readme:gmatch("\n    (luarocks %-%-lua%-version=5%.4 make [^\n#]*)") do
      cmds[#cmds + 1] = (line:gsub("%s+$", ""):gsub("^luarocks ", "luarocks --tree='" .. tree .. "' "))
    end
    return cmds
  end

  it("installs the library, then the command, which finds its modules", function()
    local cmds = make_commands()
    assert.same({ "rockspec/clicktocall-scm-1.rockspec", "rockspec/clicktocall-cli-scm-1.rockspec" },
      { cmds[1] and cmds[1]:match("%S+$"), cmds[2] and cmds[2]:match("%S+$") })
    assert.truthy(cmds[1]:find(" --deps-mode=none ", 1, true))
    local out, status = sh(cmds[1])
    assert.equal(0, status, out)
    local share = tree .. "/share/lua/5.4/clicktocall"
    assert.truthy(read(share .. "/mock.lua"))
    assert.is_nil(io.open(tree .. "/bin/clicktocall"))
    local rockdir = tree .. "/lib/luarocks/rocks-5.4/clicktocall/scm-1"
    assert.equal(read("README.md"), read(rockdir .. "/conf/README.md"))
    assert.equal(read("LICENSE"), read(rockdir .. "/conf/LICENSE"))
    assert.equal(read("docs/CLI.md"), read(rockdir .. "/docs/CLI.md"))

    -- a script of the user's, with the paths the README's `luarocks path` line gives
    assert.truthy(readme:find('`eval "$(luarocks --lua-version=5.4 --tree=DIR path)"`', 1, true))
    out, status = sh('cd / && eval "$(luarocks --lua-version=5.4 --tree=\'' .. tree .. '\' path)" && lua5.4 -e '
      .. '\'local c = require "clicktocall"; print(c.normalize_phone("13500000002"), '
      .. 'package.searchpath("clicktocall.core", package.cpath))\'')
    assert.equal(0, status, out)
    assert.equal("+8613500000002\t" .. tree .. "/lib/lua/5.4/clicktocall/core.so", out)

    out, status = sh(cmds[2])
    assert.equal(0, status, out)
    local run = "cd / && env -i PATH='" .. tree .. "/bin:/usr/bin:/bin' clicktocall "
    out, status = sh(run .. "--version")
    assert.equal(0, status, out)
    assert.truthy(out:find("^clicktocall %d+%.%d+%.%d+"), out)
    out, status = sh(run .. "normalize 13500000002")
    assert.equal(0, status, out)
    assert.equal("+8613500000002", out)
  end)

  it("`luarocks test` runs the specs", function()
    local line = readme:match("`(luarocks %-%-lua%-version=5%.4 test rockspec/clicktocall%-scm%-1%.rockspec)"
      .. " %[spec files%]`")
    assert.truthy(line, "the README's luarocks test line")
    local out, status = sh(line .. " spec/phone_spec.lua")
    assert.equal(0, status, out)
    assert.truthy(out:find("\n%d+ successes / 0 failures / 0 errors"), out)
  end)
end)
