-- download_recording: streamed to a temporary file beside the path, renamed only when whole.
local sim = require "spec.helpers.sim"
local read = require("spec.helpers.util").read_file

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function sha256_of(path)
  local p = io.popen("unset LD_PRELOAD; sha256sum '" .. path .. "'")
  local out = p:read("*a")
  p:close()
  return out:match("^(%x+)")
end

local function entries(dir)
  local p = io.popen("unset LD_PRELOAD; ls -A '" .. dir .. "'")
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  return names
end

describe("download_recording #integration", function()
  local s, client, dir, rec

  setup(function()
    s = assert(sim.start())
    client = s:client()
  end)

  teardown(function()
    if client then client:close() end
    if s then s:stop() end
  end)

  before_each(function()
    s:reset()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p '" .. dir .. "'"))
    assert(client:bind_seat { seat = "PP1", phone = "13500000002" })
    local sid = assert(client:dial { caller = "13500000002", callee = "13918000010", seat = "PP1" })
    local now = os.time()
    for r in client:records { start_time = now - 60, end_time = now + 3 * 3600 } do
      if r.sessionId == sid then rec = r end
    end
    assert.is_table(rec)
    s:post("/_sim/requests/clear")
  end)

  after_each(function()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("writes the whole file and reports its size and sha256", function()
    local path = dir .. "/call.wav"
    local ok, info = client:download_recording(rec, path)
    assert.is_true(ok)
    local data = read(path)
    assert.equal(8044, #data)
    assert.equal("RIFF", data:sub(1, 4))
    assert.equal(8044, info.bytes)
    assert.equal(sha256_of(path), info.sha256)
    assert.same({ "call.wav" }, entries(dir)) -- no temporary file left behind
  end)

  it("sends no Authorization header to the recording host", function()
    assert.is_true(client:download_recording(rec.recordFileDownloadUrl, dir .. "/a.wav"))
    local log = s:requests()
    assert.equal(1, #log)
    assert.matches("^/recordings/", log[1].uri)
    assert.equal(require("spec.helpers").null, log[1].authorization) -- JSON null: no header came
  end)

  it("a recording cut short leaves nothing at path, and an existing file untouched", function()
    local path = dir .. "/keep.wav"
    write(path, "old contents")
    s:fault { path = "/recordings/*", kind = "cut", count = 10 }
    local ok, err = client:download_recording(rec, path)
    assert.is_nil(ok)
    assert.equal("network", err.kind)
    assert.equal("old contents", read(path))
    assert.same({ "keep.wav" }, entries(dir))
    assert.equal(3, #s:requests()) -- retried like any idempotent call
  end)

  it("a cut-short recording with no file before leaves no file at all", function()
    s:fault { path = "/recordings/*", kind = "cut", count = 10 }
    local ok = client:download_recording(rec, dir .. "/new.wav")
    assert.is_nil(ok)
    assert.same({}, entries(dir))
  end)

  it("an expired recording (past 7 days) is an http 410 Gone, nothing written", function()
    s:post("/_sim/clock", { offset_seconds = 8 * 86400 })
    local ok, err = client:download_recording(rec, dir .. "/old.wav")
    assert.is_nil(ok)
    assert.equal("http", err.kind)
    assert.equal(410, err.status)
    assert.is_false(err.retryable)
    assert.same({}, entries(dir))
  end)

  it("refuses a directory as path, a missing directory, a record without recording, other schemes", function()
    local cases = {
      { rec, dir },
      { rec, dir .. "/no/such/dir/x.wav" },
      { { recordFlag = "0", id = 1 }, dir .. "/x.wav" },
      { { recordFlag = "1" }, dir .. "/x.wav" },
      { "file:///etc/passwd", dir .. "/x.wav" },
      { "ftp://127.0.0.1/x.wav", dir .. "/x.wav" },
      { 42, dir .. "/x.wav" },
      { rec, "" },
      { rec, nil },
    }
    for i, c in ipairs(cases) do
      local ok, err = client:download_recording(c[1], c[2])
      assert.is_nil(ok, "case " .. i)
      assert.equal("argument", err.kind, "case " .. i)
      assert.is_false(err.sent)
    end
    assert.equal(0, #s:requests())
    assert.same({}, entries(dir))
  end)

  it("replaces an existing file only when the new one is whole", function()
    local path = dir .. "/x.wav"
    write(path, "old")
    assert.is_true(client:download_recording(rec, path))
    assert.equal(8044, #read(path))
  end)

  it("takes a file name of 250 bytes: the temporary name is short and its own", function()
    local path = dir .. "/" .. ("n"):rep(246) .. ".wav"
    local ok, info = client:download_recording(rec, path)
    assert.is_true(ok, info and tostring(info))
    assert.equal(8044, #read(path))
    assert.same({ ("n"):rep(246) .. ".wav" }, entries(dir))
  end)

  it("is not blocked by stale temporary files of ours (as after kill -9)", function()
    local download = require "clicktocall.download"
    local probe = download.temp_name(dir)
    local n = tonumber(probe:match("%-(%x+)%.part$"), 16)
    for i = 1, 3 do
      write((probe:gsub("%-%x+%.part$", ("-%x.part"):format(n + i))), "stale")
    end
    assert.is_true(client:download_recording(rec, dir .. "/y.wav"))
    assert.equal(8044, #read(dir .. "/y.wav"))
  end)
end)
