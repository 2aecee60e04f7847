-- download_recording through a transport written in Lua (a function here, "ngx" in nginx):
-- the C file sink, temporary names, redirects, lengths, statuses, and nothing left behind.
local h = require "spec.helpers"
local mc = require "spec.helpers.client"
local core = require "clicktocall.core"
local clicktocall = require "clicktocall"
local download = require "clicktocall.download"

local HOST = "http://rec.example.com"
local URL = HOST .. "/calls/1.wav"
local SIZE = 2001

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

-- A client over clicktocall.mock whose recordings live on HOST (every URL there is a download), with one
-- recorded call whose recording (SIZE bytes, 7 a sink write so it crosses many) is at `url` (default URL).
local function setup(opts, url)
  local client, provider = mc.new(opts or { retries = 0 },
                                  { recording_base = HOST, recording_size = SIZE, chunk_size = 7 })
  provider:seed_records { { recordFileDownloadUrl = url or URL } }
  return client, provider
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
    local sink, err = core.file_sink(dir .. "/a")
    assert.is_nil(sink)
    assert.matches("could not create", err.message)
    assert.equal("io", err.kind)
    assert.equal("exists", err.code)
    local _, err2 = core.file_sink(dir .. "/no/such/dir")
    assert.equal("io", err2.kind)
    assert.is_nil(err2.code)
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

  it("writes the whole file, reports bytes and sha256, leaves nothing else", function()
    local client, provider = setup()
    local sink
    provider:fail("download", function(request, serve)
      sink = request.sink
      return serve()
    end)
    local ok, info = client:download_recording(URL, path)
    local wav = provider:recording(URL)
    assert.equal(SIZE, #wav)
    assert.is_true(ok)
    assert.equal(#wav, info.bytes)
    assert.equal(sha256_of(wav), info.sha256)
    assert.equal(wav, read(path))
    assert.same({ "call.wav" }, entries(dir))
    local req = provider.requests[1]
    assert.equal("GET", req.method)
    assert.is_nil(req.headers.Authorization)
    for _, s in ipairs(h.strings(req.headers)) do
      assert.is_nil(s:find(h.SECRET_B64, 1, true))
    end
    assert.is_function(sink)
    assert.equal(1, provider:count())
  end)

  it("takes a file name of 250 bytes (the temporary name is its own, not path .. suffix)", function()
    path = dir .. "/" .. ("n"):rep(246) .. ".wav"
    local client, provider = setup()
    local ok = client:download_recording(URL, path)
    assert.is_true(ok)
    assert.equal(provider:recording(URL), read(path))
    assert.equal(1, #entries(dir))
  end)

  it("follows a relative Location, from the first URL's directory", function()
    local final = HOST .. "/final/1.wav"
    local client, provider = setup(nil, final)
    provider:fail("download", { status = 302, body = "moved", headers = { Location = "../store/1.wav?sig=abc" } })
            :fail("download", { status = 301, body = "moved", headers = { location = "/final/1.wav" } })
    local ok = client:download_recording(URL, path)
    assert.is_true(ok)
    assert.equal(3, provider:count("download"))
    assert.equal(URL, provider.requests[1].url)
    assert.equal("http://rec.example.com/store/1.wav?sig=abc", provider.requests[2].url)
    assert.equal("http://rec.example.com/final/1.wav", provider.requests[3].url)
    assert.equal(provider:recording(final), read(path)) -- the redirects' bodies were not kept
    assert.same({ "call.wav" }, entries(dir))
  end)

  it("stops after MAX_REDIRECTS redirects (protocol)", function()
    local client, provider = setup()
    provider:fail("download", { status = 302, body = "again", headers = { location = HOST .. "/loop" } }, math.huge)
    local ok, err = client:download_recording(URL, path)
    assert.is_nil(ok)
    assert.equal("protocol", err.kind)
    assert.matches("redirected more than " .. download.MAX_REDIRECTS .. " times", err.message)
    assert.equal(download.MAX_REDIRECTS + 1, provider:count())
    assert.same({}, entries(dir))
  end)

  it("refuses a redirect to a URL that is not http(s)", function()
    local client, provider = setup()
    provider:fail("download", { status = 302, body = "", headers = { location = "file:///etc/passwd" } })
    local ok, err = client:download_recording(URL, path)
    assert.is_nil(ok)
    assert.equal("protocol", err.kind)
    assert.equal(1, provider:count())
    assert.same({}, entries(dir))
  end)

  it("checks the recording URL and each redirect with http1.web_url: nothing sent, nothing written", function()
    for _, bad in ipairs({ "ftp://rec.example.com/1.wav", "http://rec.example.com:0/1.wav",
                           "http://rec.example.com:99999/1.wav", "http://rec.example.com/a b.wav", "http://" }) do
      local client, provider = setup()
      local ok, err = client:download_recording(bad, path)
      assert.is_nil(ok, bad)
      assert.same({ "argument", "rec_or_url", false }, { err.kind, err.field, err.sent }, bad)
      assert.matches("the recording URL must be an http:// or https:// URL", err.message, 1, true)
      assert.equal(0, provider:count(), bad)
    end
    local client, provider = setup()
    provider:fail("download", { status = 302, body = "", headers = { location = "http://rec.example.com:x/2.wav" } })
    local ok, err = client:download_recording(URL, path)
    assert.is_nil(ok)
    assert.equal("protocol", err.kind)
    assert.equal("the recording was redirected to something other than an http:// or https:// URL", err.message)
    assert.equal(1, provider:count())
    assert.same({}, entries(dir))
    -- user information is taken, as libcurl takes it
    client = setup(nil, "http://u:p@rec.example.com/calls/1.wav")
    assert(client:download_recording("http://u:p@rec.example.com/calls/1.wav", path))
    assert.equal(SIZE, #read(path))
  end)

  it("a body cut short of its Content-Length is a retryable network error, no file", function()
    local client, provider = setup { retries = 1 }
    provider:fail("download", "cut", 2) -- half the bytes (1000 of 2001), then the whole recording if asked again
    local ok, err = client:download_recording(URL, path)
    assert.is_nil(ok)
    assert.equal("network", err.kind)
    assert.is_true(err.retryable)
    assert.matches("recording cut short: got 1000 of 2001 bytes", err.message, 1, true)
    assert.equal(2, provider:count())
    assert.same({ "cut", "cut" }, { provider.requests[1].fault, provider.requests[2].fault })
    assert.same({}, entries(dir))
  end)

  it("a non-2xx answer is an http error with its status, no file", function()
    local client, provider = setup()
    local ok, err = client:download_recording(HOST .. "/calls/2.wav", path) -- the provider has no such recording
    assert.is_nil(ok)
    assert.equal("http", err.kind)
    assert.equal(404, err.status)
    assert.equal(1, provider:count())
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
    local client, provider = setup()
    local ok = client:download_recording(URL, path)
    assert.is_true(ok)
    local after = entries(dir)
    assert.equal(#before + 1, #after)
    assert.equal(provider:recording(URL), read(path))
  end)

  for _, bad in ipairs {
    { "{}", {} }, { "7", 7 }, { "{ status = \"200\" }", { status = "200" } },
    { "{ status = 1e300 }", { status = 1e300 } }, { "{ status = 0/0 }", { status = 0 / 0 } },
  } do
    it("a transport returning " .. bad[1] .. " is a protocol error, not a raise, no file", function()
      local client, provider = setup()
      provider:fail("download", function() return bad[2] end) -- the function's answer is the transport's
      local ok, err = client:download_recording(URL, path)
      assert.is_nil(ok)
      assert.is_true(clicktocall.is_error(err))
      assert.equal("protocol", err.kind)
      assert.same({}, entries(dir))
    end)
  end

  -- The next two are about a transport that raises: the mock catches a raising fault function (and
  -- answers a network error), so only a bare transport function reaches the client's own guard.
  it("a transport that raises mid-download is a protocol error, no file", function()
    local wav = ("RIFF" .. ("\0\1\2\3"):rep(500)):sub(1, SIZE)
    local client = mc.new { retries = 0, transport = function(req)
      for i = 1, #wav, 7 do assert(req.sink(wav:sub(i, i + 6))) end
      error("connection pool exploded", 0)
    end }
    local ok, err = client:download_recording(URL, path)
    assert.is_nil(ok)
    assert.equal("protocol", err.kind)
    assert.is_true(err.sent)
    assert.matches("connection pool exploded", err.message, 1, true)
    assert.same({}, entries(dir))
  end)

  it("a transport that raises from inside the sink's first write leaves no file", function()
    local client = mc.new { retries = 0, transport = function(req)
      req.sink("RIFF")
      error({ code = 42 })
    end }
    local ok, err = client:download_recording(URL, path)
    assert.is_nil(ok)
    assert.equal("protocol", err.kind)
    assert.same({}, entries(dir))
  end)

  it("a directory that is not writable is an io error, nothing fetched", function()
    if shell("id -u"):match("^0") then
      return -- root writes anywhere; the write-failure spec below covers io errors
    end
    shell("chmod 555 '" .. dir .. "'")
    local client, provider = setup()
    local ok, err = client:download_recording(URL, path)
    shell("chmod 755 '" .. dir .. "'")
    assert.is_nil(ok)
    assert.equal("io", err.kind)
    assert.is_false(err.sent)
    assert.equal(0, provider:count())
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
local mc = require "spec.helpers.client"
local url = "http://rec.example.com/big.wav"
local client, provider = mc.new({ retries = 3 }, { recording_base = "http://rec.example.com",
                                                  recording_size = 64 * 1024, chunk_size = 8192 })
provider:seed_records { { recordFileDownloadUrl = url } }
local ok, err = client:download_recording(url, "%s/out/big.wav")
io.write(tostring(ok), "|", err.kind, "|", tostring(err.retryable), "|", tostring(err.sent), "|",
         provider:count(), "|", err.message)
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
