-- The C helpers the jobs stand on (csrc/fsys.c): the lock, the listing, the liveness of a pid, the
-- durable append.
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"

describe("core.lock_file", function()
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  it("is exclusive: a second holder is busy until unlock, and unlock twice is harmless", function()
    local a = assert(core.lock_file(dir .. "/l"))
    local b, err = core.lock_file(dir .. "/l")
    assert.is_nil(b)
    assert.equal("busy", err.code)
    assert.equal("io", err.kind)
    assert.matches(dir .. "/l", err.message, 1, true)
    assert.is_true(a:unlock())
    assert.is_true(a:unlock())
    assert(core.lock_file(dir .. "/l")):unlock()
  end)

  it("is released when the lock is collected", function()
    do
      local _ = assert(core.lock_file(dir .. "/l"))
    end
    collectgarbage()
    collectgarbage()
    assert(core.lock_file(dir .. "/l")):unlock()
  end)

  it("is released by the kernel when its holder is killed with -9", function()
    local script = j.script(dir, "holder.lua", ([[
local core = require "clicktocall.core"
local l = assert(core.lock_file(%q))
local f = io.open(%q, "w") f:write("held") f:close()
while true do core.sleep(0.05) end
]]):format(dir .. "/l", dir .. "/held"))
    local pid = tonumber(j.shell(("%s '%s' >/dev/null 2>&1 & echo $!"):format(j.LUA, script)):match("%d+"))
    assert.is_true(j.wait_until(function() return core.file_kind(dir .. "/held") == "file" end, 10))
    local _, err = core.lock_file(dir .. "/l")
    j.shell("kill -9 " .. pid)
    assert.equal("busy", err.code)
    assert.is_true(j.wait_until(function()
      local l = core.lock_file(dir .. "/l")
      if l then l:unlock() return true end
      return false
    end, 10))
  end)

  it("is an io failure in a directory that does not exist", function()
    local l, err = core.lock_file(dir .. "/no/l")
    assert.is_nil(l)
    assert.equal("io", err.kind)
    assert.is_nil(err.code)
    assert.matches("No such file", err.message)
  end)
end)

describe("core.append_sync, list_dir, pid_alive, dir_writable, mkdir", function()
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  it("append_sync creates, then appends; a directory is an error", function()
    assert.is_true(core.append_sync(dir .. "/m", "a\n"))
    assert.is_true(core.append_sync(dir .. "/m", "b\n"))
    assert.equal("a\nb\n", j.read(dir .. "/m"))
    local ok, err = core.append_sync(dir, "x")
    assert.is_nil(ok)
    assert.is_string(err.message)
  end)

  it("list_dir names every entry but . and .., hidden ones too; a missing one is nil, err", function()
    j.write(dir .. "/.h", "")
    j.write(dir .. "/v", "")
    local names = assert(core.list_dir(dir))
    table.sort(names)
    assert.same({ ".h", "v" }, names)
    local none, err = core.list_dir(dir .. "/missing")
    assert.is_nil(none)
    assert.matches("missing", err.message)
  end)

  it("pid_alive: ours is, a finished one is not, nonsense is not", function()
    assert.is_true(core.pid_alive(core.getpid()))
    assert.is_true(core.pid_alive(1))
    local dead = tonumber(j.shell("sh -c 'echo $$'"):match("%d+"))
    assert.is_false(core.pid_alive(dead))
    assert.is_false(core.pid_alive(0))
    assert.is_false(core.pid_alive(-1))
    assert.is_false(core.pid_alive(1.5))
  end)

  it("dir_writable: a directory yes; a file or a missing path no, with a message", function()
    assert.is_true(core.dir_writable(dir))
    j.write(dir .. "/f", "")
    local ok, err = core.dir_writable(dir .. "/f")
    assert.is_nil(ok)
    assert.matches("Not a directory", err.message)
    assert.is_nil((core.dir_writable(dir .. "/missing")))
  end)

  it("mkdir makes a directory and accepts one that exists", function()
    assert.is_true(core.mkdir(dir .. "/d"))
    assert.is_true(core.mkdir(dir .. "/d"))
    assert.equal("directory", core.file_kind(dir .. "/d"))
    assert.is_nil((core.mkdir(dir .. "/no/d")))
  end)
end)

describe("core.file_mode", function()
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  it("gives a file's permission bits, through a symlink, and an io error with code missing", function()
    local f = dir .. "/f"
    assert(io.open(f, "w")):close()
    assert(os.execute("chmod 640 '" .. f .. "' && ln -s f '" .. dir .. "/l'"))
    assert.equal(tonumber("640", 8), core.file_mode(f))
    assert.equal(tonumber("640", 8), core.file_mode(dir .. "/l"))
    assert(os.execute("chmod 4755 '" .. f .. "'"))
    assert.equal(tonumber("4755", 8), core.file_mode(f))
    local m, err = core.file_mode(dir .. "/none")
    assert.is_nil(m)
    assert.equal("io", err.kind)
    assert.equal("missing", err.code)
    assert.matches(dir .. "/none", err.message, 1, true)
  end)
end)
