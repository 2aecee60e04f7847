-- download_recording through a transport written in Lua (a function here, "ngx" in nginx):
-- the C file sink, temporary names, redirects, lengths, statuses, and nothing left behind.
local h = require "spec.helpers"
local core = require "clicktocall.core"
local clicktocall = require "clicktocall"
local download = require "clicktocall.download"

local URL = "http://rec.example.com/calls/1.wav"
local WAV = ("RIFF" .. ("\0\1\2\3"):rep(500)):sub(1, 2001)

local function shell(cmd)
  local p = assert(io.popen("unset LD_PRELOAD; " .. cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local function mkdtemp()
  return (shell("mktemp -d"):gsub("%s+$", ""))
end

local function entries(dir)
  local names = {}
  for name in shell("ls -A '" .. dir .. "'"):gmatch("[^\n]+") do names[#names + 1] = name end
  table.sort(names)
  return names
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function sha256_of(s)
  local hasher = core.sha256()
  hasher:update(s)
  return hasher:hex()
end

local function wav(extra)
  local r = h.raw(200, WAV, { ["content-length"] = tostring(#WAV) })
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

describe("core.file_sink", function()
  local dir
  before_each(function() dir = mkdtemp() end)
  after_each(function() shell("rm -rf '" .. dir .. "'") end)

  it("writes, hashes and syncs a file it created exclusively", function()
    local sink = assert(core.file_sink(dir .. "/a"))
    assert.is_true(sink:write("ab"))
    assert.is_true(sink:write("c"))
    local bytes, sha = sink:finish()
    assert.equal(3, bytes)
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", sha)
    assert.equal("abc", read(dir .. "/a"))
    sink = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.equal("abc", read(dir .. "/a")) -- a finished file stays
  end)

  it("refuses a name that exists, saying so", function()
    io.open(dir .. "/a", "wb"):close()
    local sink, msg, why = core.file_sink(dir .. "/a")
    assert.is_nil(sink)
    assert.matches("could not create", msg)
    assert.equal("exists", why)
    local _, _, why2 = core.file_sink(dir .. "/no/such/dir")
    assert.equal("io", why2)
  end)

  it("removes an unfinished file on abort() and when collected", function()
    local sink = assert(core.file_sink(dir .. "/a"))
    sink:write("x")
    assert.is_true(sink:abort())
    assert.is_true(sink:abort()) -- twice is fine
    assert.same({}, entries(dir))
    assert.is_nil((sink:write("y")))
    do
      local dropped = assert(core.file_sink(dir .. "/b")) -- luacheck: ignore
      dropped:write("x")
    end
    collectgarbage()
    collectgarbage()
    assert.same({}, entries(dir))
  end)
end)

describe("temporary names", function()
  it("are short, hidden, in the target's directory, and new at each call", function()
    local a, b = download.temp_name("/some/dir"), download.temp_name("/some/dir")
    assert.not_equal(a, b)
    assert.matches("^/some/dir/%.ctc%-[%x%-]+%.part$", a)
    assert.is_true(#a - #"/some/dir/" <= 40)
  end)

  it("differ between fresh processes, even on LuaJIT with math.random never seeded", function()
    local lua = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
    local build = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
    local cmd = ("%s -e \"package.path='./lua/?.lua;'..package.path; package.cpath='./build/%s/?.so;'"
      .. "..package.cpath; io.write(require('clicktocall.download').temp_name('.'))\""):format(lua, build)
    local seen = {}
    for _ = 1, 3 do
      local name = shell(cmd)
      assert.matches("^%./%.ctc%-", name)
      assert.is_nil(seen[name], "a name repeated across processes: " .. name)
      seen[name] = true
    end
  end)
end)

describe("download_recording through a function transport", function()
  local dir, path

  before_each(function()
    dir = mkdtemp()
    path = dir .. "/call.wav"
  end)

  after_each(function()
    shell("rm -rf '" .. dir .. "'")
  end)

  local function fetch(queue, opts)
    local client, m = h.client(queue, opts or { retries = 0 })
    local ok, info = client:download_recording(URL, path)
    return ok, info, m
  end

  it("writes the whole file, reports bytes and sha256, leaves nothing else", function()
    local ok, info, m = fetch { wav() }
    assert.is_true(ok)
    assert.equal(#WAV, info.bytes)
    assert.equal(sha256_of(WAV), info.sha256)
    assert.equal(WAV, read(path))
    assert.same({ "call.wav" }, entries(dir))
    assert.is_nil(m.requests[1].headers.Authorization)
    assert.is_function(m.requests[1].sink)
  end)

  it("takes a file name of 250 bytes (the temporary name is its own, not path .. suffix)", function()
    path = dir .. "/" .. ("n"):rep(246) .. ".wav"
    local ok = fetch { wav() }
    assert.is_true(ok)
    assert.equal(WAV, read(path))
    assert.equal(1, #entries(dir))
  end)

  it("follows a relative Location, from the first URL's directory", function()
    local ok, _, m = fetch {
      h.raw(302, "moved", { Location = "../store/1.wav?sig=abc" }),
      h.raw(301, "moved", { location = "/final/1.wav" }),
      wav(),
    }
    assert.is_true(ok)
    assert.equal("http://rec.example.com/store/1.wav?sig=abc", m.requests[2].url)
    assert.equal("http://rec.example.com/final/1.wav", m.requests[3].url)
    assert.equal(WAV, read(path)) -- the redirects' bodies were not kept
    assert.same({ "call.wav" }, entries(dir))
  end)

  it("stops after MAX_REDIRECTS redirects (protocol)", function()
    local hop = h.raw(302, "again", { location = "http://rec.example.com/loop" })
    local client, m = h.client({}, { retries = 0 }, hop)
    local ok, err = client:download_recording(URL, path)
    assert.is_nil(ok)
    assert.equal("protocol", err.kind)
    assert.matches("redirected more than " .. download.MAX_REDIRECTS .. " times", err.message)
    assert.equal(download.MAX_REDIRECTS + 1, #m.requests)
    assert.same({}, entries(dir))
  end)

  it("refuses a redirect to a URL that is not http(s)", function()
    local ok, err = fetch { h.raw(302, "", { location = "file:///etc/passwd" }) }
    assert.is_nil(ok)
    assert.equal("protocol", err.kind)
    assert.same({}, entries(dir))
  end)

  it("a body cut short of its Content-Length is a retryable network error, no file", function()
    local short = h.raw(200, WAV:sub(1, 1000), { ["content-length"] = tostring(#WAV) })
    local ok, err, m = fetch({ short, short, wav() }, { retries = 1 })
    assert.is_nil(ok)
    assert.equal("network", err.kind)
    assert.is_true(err.retryable)
    assert.matches("recording cut short: got 1000 of 2001 bytes", err.message, 1, true)
    assert.equal(2, #m.requests)
    assert.same({}, entries(dir))
  end)

  it("a non-2xx answer is an http error with its status, no file", function()
    local ok, err = fetch { h.raw(404, "no such recording") }
    assert.is_nil(ok)
    assert.equal("http", err.kind)
    assert.equal(404, err.status)
    assert.same({}, entries(dir))
  end)

  it("a stale temporary file of ours never blocks a download", function()
    -- the names the next attempts would draw are taken already (as after kill -9)
    local probe = download.temp_name(dir)
    local n = tonumber(probe:match("%-(%x+)%.part$"), 16)
    for i = 1, 3 do
      io.open((probe:gsub("%-%x+%.part$", ("-%x.part"):format(n + i))), "wb"):close()
    end
    local before = entries(dir)
    local ok = fetch { wav() }
    assert.is_true(ok)
    local after = entries(dir)
    assert.equal(#before + 1, #after)
    assert.equal(WAV, read(path))
  end)

  for _, bad in ipairs {
    { "{}", {} }, { "7", 7 }, { "{ status = \"200\" }", { status = "200" } },
    { "{ status = 1e300 }", { status = 1e300 } }, { "{ status = 0/0 }", { status = 0 / 0 } },
  } do
    it("a transport returning " .. bad[1] .. " is a protocol error, not a raise, no file", function()
      local ok, err = fetch { function() return bad[2] end }
      assert.is_nil(ok)
      assert.is_true(clicktocall.is_error(err))
      assert.equal("protocol", err.kind)
      assert.same({}, entries(dir))
    end)
  end

  it("a transport that raises mid-download is a protocol error, no file", function()
    local ok, err = fetch { wav { raise_after_body = "connection pool exploded" } }
    assert.is_nil(ok)
    assert.equal("protocol", err.kind)
    assert.is_true(err.sent)
    assert.matches("connection pool exploded", err.message, 1, true)
    assert.same({}, entries(dir))
  end)

  it("a transport that raises from inside the sink's first write leaves no file", function()
    local ok, err = fetch { function(req)
      req.sink("RIFF")
      error({ code = 42 })
    end }
    assert.is_nil(ok)
    assert.equal("protocol", err.kind)
    assert.same({}, entries(dir))
  end)

  it("a directory that is not writable is an io error, nothing fetched", function()
    if shell("id -u"):match("^0") then
      return -- root writes anywhere; the write-failure spec below covers io errors
    end
    shell("chmod 555 '" .. dir .. "'")
    local ok, err, m = fetch { wav() }
    shell("chmod 755 '" .. dir .. "'")
    assert.is_nil(ok)
    assert.equal("io", err.kind)
    assert.is_false(err.sent)
    assert.equal(0, #m.requests)
  end)
end)

describe("a local write failure during a download", function()
  it("is kind io, not retried, and leaves no file (EFBIG under ulimit -f)", function()
    local dir = mkdtemp()
    local lua = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
    local build = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
    local script = dir .. "/probe.lua"
    local f = assert(io.open(script, "wb"))
    f:write(([[
package.path = "./lua/?.lua;./?.lua;./?/init.lua;" .. package.path
package.cpath = "./build/%s/?.so;" .. package.cpath
local h = require "spec.helpers"
local body = ("x"):rep(64 * 1024)
local res = h.raw(200, body, { ["content-length"] = tostring(#body) })
res.chunk = 8192
local client, m = h.client({}, { retries = 3 }, res)
local ok, err = client:download_recording("http://rec.example.com/big.wav", "%s/out/big.wav")
io.write(tostring(ok), "|", err.kind, "|", tostring(err.retryable), "|", tostring(err.sent), "|", #m.requests, "|",
         err.message)
]]):format(build, dir))
    f:close()
    shell("mkdir '" .. dir .. "/out'")
    -- 16 KiB file size limit; SIGXFSZ ignored so write() returns EFBIG
    local out = shell(("cd '%s' && sh -c \"trap '' XFSZ; ulimit -f 16; %s '%s'\" 2>&1")
      :format(os.getenv("PWD") or ".", lua, script))
    local listing = entries(dir .. "/out")
    shell("rm -rf '" .. dir .. "'")
    local ok, kind, retryable, sent, requests, message = out:match("^(%w+)|(%w+)|(%w+)|(%w+)|(%d+)|(.*)$")
    assert.equal("nil", ok, out)
    assert.equal("io", kind)
    assert.equal("false", retryable)
    assert.equal("true", sent)
    assert.equal("1", requests) -- no second fetch onto the same full disk
    assert.matches("File too large", message)
    assert.same({}, listing)
  end)
end)
