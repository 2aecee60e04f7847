-- The C helpers the jobs stand on (csrc/fsys.c): the lock, the listing, the liveness of a pid, the
-- durable append, and the flat JSON of the jobs' own files.
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"
local flatjson = require "clicktocall.flatjson"

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

describe("clicktocall.flatjson", function()
  it("round-trips flat objects: escapes, control characters, UTF-8, booleans, big ids", function()
    local t = { id = "123456789012345678901", s = 'q"b\\s\1\n\té', n = 42, f = 1.5, b = true, neg = -7 }
    local text = flatjson.encode({ "id", "s", "n", "f", "b", "neg", "absent" }, t)
    assert.equal('{"id":123456789012345678901,"s":"q\\"b\\\\s\\u0001\\n\\té","n":42,"f":1.5,"b":true,"neg":-7}',
                 text)
    local back = assert(flatjson.decode(text))
    assert.equal("123456789012345678901", back.id)
    assert.equal(t.s, back.s)
    assert.equal(42, back.n)
    assert.equal(1.5, back.f)
    assert.is_true(back.b)
    assert.equal(-7, back.neg)
    assert.equal("é", flatjson.decode('{"x":"\\u00e9"}').x)
  end)

  it("refuses what is not one flat object", function()
    for _, s in ipairs { "", "[]", "{", '{"a":1,}', '{"a":1} x', '{"a":{"b":1}}', '{"a":"x\1"}', '{a:1}',
                         '{"a":tru}', '{"a":1,"b"}' } do
      assert.is_nil(flatjson.decode(s), s)
    end
    assert.same({}, flatjson.decode(" { } "))
    assert.is_nil(flatjson.decode({}))
  end)
end)
