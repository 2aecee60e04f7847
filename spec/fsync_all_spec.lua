-- core.fsync_all(paths [, max_threads]) -> errs, failed: many fsyncs at once, in threads, each path
-- with its own result (archive_recordings makes a turn's files durable with it).
local core = require "clicktocall.core"
local j = require "spec.helpers.jobs"

local function touch(path, s)
  j.write(path, s or "x")
  return path
end

describe("core.fsync_all", function()
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  it("makes files and directories durable: no errors", function()
    local paths = { touch(dir .. "/a"), touch(dir .. "/b", ("y"):rep(100000)), dir }
    local errs, failed = core.fsync_all(paths)
    assert.same({}, errs)
    assert.equal(0, failed)
    assert.equal(100000, #j.read(dir .. "/b")) -- nothing written
  end)

  it("keeps each path's own error (its errno), and the others succeed", function()
    touch(dir .. "/file")
    local paths = { touch(dir .. "/ok1"), dir .. "/missing", touch(dir .. "/ok2"), dir .. "/file/below" }
    local errs, failed = core.fsync_all(paths, 4)
    assert.equal(2, failed)
    assert.is_nil(errs[1])
    assert.is_nil(errs[3])
    assert.equal("could not open " .. dir .. "/missing: No such file or directory", errs[2])
    assert.equal("could not open " .. dir .. "/file/below: Not a directory", errs[4])
  end)

  it("gives every result to its own path, whatever the number of threads", function()
    local paths, bad = {}, {}
    for i = 1, 100 do
      if i % 7 == 3 then
        paths[i] = dir .. "/none-" .. i
        bad[i] = true
      else
        paths[i] = touch(dir .. "/f-" .. i)
      end
    end
    for _, threads in ipairs { 1, 3, 8, 64 } do
      local errs, failed = core.fsync_all(paths, threads)
      local n = 0
      for i = 1, 100 do
        if bad[i] then
          n = n + 1
          assert.equal("could not open " .. paths[i] .. ": No such file or directory", errs[i])
        else
          assert.is_nil(errs[i], paths[i])
        end
      end
      assert.equal(n, failed)
    end
  end)

  it("syncs a file its owner may write but not read (a umask that takes the read bit)", function()
    -- root reads any file: then the child runs as nobody (setpriv), so that the read bit counts
    local as = ""
    if j.shell("id -u"):match("^0%s") then
      if not j.shell("command -v setpriv"):find("setpriv", 1, true) then
        pending("root without setpriv: cannot drop the read permission")
        return
      end
      as = "setpriv --reuid=65534 --regid=65534 --clear-groups "
      j.shell(("chmod 0777 '%s'"):format(dir))
    end
    local script = j.script(dir, "child.lua", ([[
local core = require "clicktocall.core"
local f = assert(io.open(%q, "w"))
f:write("x")
f:close()
local errs, failed = core.fsync_all({ %q, %q })
io.write(failed, "|", tostring(errs[1]), "|", tostring(errs[2]))
]]):format(dir .. "/w", dir .. "/w", dir .. "/none"))
    local out = j.shell(("%ssh -c \"umask 0466; %s '%s'\" 2>&1"):format(as, j.LUA, script))
    assert.equal("1|nil|could not open " .. dir .. "/none: No such file or directory", out)
    assert.equal("--w-------", j.shell(("ls -l '%s/w'"):format(dir)):sub(1, 10))
  end)

  it("an empty list does nothing", function()
    local errs, failed = core.fsync_all({})
    assert.same({}, errs)
    assert.equal(0, failed)
  end)

  it("refuses what is not a list of paths, before any fsync", function()
    local function refused(pos, ...)
      local ok, msg = pcall(core.fsync_all, ...)
      assert.is_false(ok)
      assert.truthy(tostring(msg):find("bad argument #" .. pos, 1, true), tostring(msg))
    end
    refused(1)
    refused(1, "a")
    refused(1, { dir, 42 })
    refused(1, { dir .. "\0x" })
    refused(2, { dir }, 0)
    refused(2, { dir }, 65)
    refused(2, { dir }, "many")
  end)

  it("runs the fsyncs in threads of their own (strace -f)", function()
    local probe = j.shell("command -v strace >/dev/null 2>&1 && strace -qq -e trace=none true 2>&1 && echo yes")
    if not probe:find("yes", 1, true) then
      pending("strace is not usable here")
      return
    end
    local list = {}
    for i = 1, 8 do
      list[i] = ("%q"):format(touch(dir .. "/t-" .. i, ("z"):rep(65536)))
    end
    local script = j.script(dir, "child.lua", ([[
local core = require "clicktocall.core"
local errs, failed = core.fsync_all({ %s }, 8)
io.write(failed)
]]):format(table.concat(list, ", ")))
    local trace = dir .. "/trace"
    local out = j.shell(("strace -f -qq -o '%s' -e trace=fsync %s '%s' 2>&1"):format(trace, j.LUA, script))
    assert.equal("0", out)
    local tids, calls = {}, 0
    for line in io.lines(trace) do
      local tid = line:match("^(%d+)%s+fsync%(") or line:match("^(%d+)%s+<%.%.%. fsync resumed>")
      if tid and not line:find("resumed", 1, true) then
        calls = calls + 1
        tids[tid] = true
      end
    end
    local n = 0
    for _ in pairs(tids) do n = n + 1 end
    assert.equal(8, calls)
    assert.is_true(n >= 2, "all 8 fsyncs on one thread")
  end)
end)
