-- A function transport written to the transport contract, function(request) -> { status, headers, body },
-- that never looks at request.sink (the contract does not require it): downloads work through it as
-- through a streaming one, the returned body written whole or not at all, its length checked.
local h = require "spec.helpers"
local j = require "spec.helpers.jobs"
local clicktocall = require "clicktocall"
local mock = require "clicktocall.mock"
local core = require "clicktocall.core"
local json = require "clicktocall.json"

local HOST = "http://rec.example.com"

local function sha256_of(s)
  local hasher = core.sha256()
  hasher:update(s)
  return hasher:hex()
end

-- provider.transport behind a transport that returns every body whole: the request it passes on has no
-- sink, so the mock answers as a plain function transport does. `edit(res)` may change the answer.
local function whole(provider, edit, seen)
  return function(request)
    local plain = {}
    for k, v in pairs(request) do
      if k ~= "sink" then plain[k] = v end
    end
    local res, err = provider.transport(plain)
    if seen then seen[#seen + 1] = request.sink ~= nil end
    if res and edit then
      res = edit(res, request)
    end
    return res, err
  end
end

local function setup(edit)
  local provider = mock.new { user_data = h.USER_DATA, secret = h.SECRET, recording_base = HOST }
  local seen = {}
  local client = assert(clicktocall.new {
    base_url = "https://api.example.com", app_secret = h.SECRET, user_data = h.USER_DATA, retries = 0,
    sleep = provider.sleep, transport = whole(provider, edit, seen),
  })
  return client, provider, seen
end

describe("a transport that returns the body whole (ignores request.sink)", function()
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  it("download_recording writes the whole file, bytes and sha256 right, nothing else left", function()
    local client, provider, seen = setup()
    local rec = provider:seed_records { {} }[1]
    local ok, info = client:download_recording(rec, dir .. "/call.wav")
    assert.is_true(ok, info and tostring(info))
    local wav = provider:recording(rec)
    assert.equal(32768, #wav)
    assert.equal(#wav, info.bytes)
    assert.equal(sha256_of(wav), info.sha256)
    assert.equal(wav, j.read(dir .. "/call.wav"))
    assert.same({ "call.wav" }, j.tree(dir))
    assert.same({ true }, seen) -- a sink was offered, and not used
  end)

  it("a body without Content-Length is kept whole as it came", function()
    local client, provider = setup(function(res)
      res.headers["content-length"], res.headers["Content-Length"] = nil, nil
      return res
    end)
    local rec = provider:seed_records { {} }[1]
    assert.is_true((client:download_recording(rec, dir .. "/call.wav")))
    assert.equal(provider:recording(rec), j.read(dir .. "/call.wav"))
  end)

  it("a body shorter than its Content-Length is a network error (cut short), no file, nothing left", function()
    local client, provider = setup(function(res)
      res.body = res.body:sub(1, 1000)
      return res
    end)
    local rec = provider:seed_records { {} }[1]
    local ok, err = client:download_recording(rec, dir .. "/call.wav")
    assert.is_nil(ok)
    assert.equal("network", err.kind)
    assert.matches("recording cut short: got 1000 of 32768 bytes", err.message, 1, true)
    assert.same({}, j.tree(dir))
  end)

  it("a body longer than its Content-Length is refused the same way", function()
    local client, provider = setup(function(res)
      res.body = res.body .. "extra"
      return res
    end)
    local rec = provider:seed_records { {} }[1]
    local ok, err = client:download_recording(rec, dir .. "/call.wav")
    assert.is_nil(ok)
    assert.matches("got 32773 of 32768 bytes", err.message, 1, true)
    assert.same({}, j.tree(dir))
  end)

  it("a non-2xx body is never written: an http error, no file", function()
    local client, provider = setup()
    provider:seed_records { {} }
    local ok, err = client:download_recording(HOST .. "/no/such.wav", dir .. "/call.wav")
    assert.is_nil(ok)
    assert.equal("http", err.kind)
    assert.equal(404, err.status)
    assert.same({}, j.tree(dir))
  end)

  it("archive_recordings downloads every recording, the manifest's sha256 the file's", function()
    local client, provider = setup()
    local now = os.time()
    provider:seed_records { { callEndTime = now - 3600 }, { callEndTime = now - 7200 },
                            { callEndTime = now - 9000 } }
    local summary = assert(client:archive_recordings { start_time = now - 86400, end_time = now, dir = dir,
                                                       layout = "flat" })
    assert.equal(3, summary.downloaded, #summary.failed > 0 and tostring(summary.failed[1].err) or nil)
    assert.same({}, summary.failed)
    assert.equal(3 * 32768, summary.bytes)
    local lines = j.lines(dir .. "/manifest.jsonl")
    assert.equal(3, #lines)
    for _, line in ipairs(lines) do
      local e = assert(json.decode(line))
      local data = j.read(dir .. "/" .. e.file)
      assert.equal(provider:recording(e.sessionId), data)
      assert.equal(sha256_of(data), e.sha256)
    end
  end)

  it("sync delivers every record through it (sync downloads nothing, the transport serves its pages)", function()
    local client, provider = setup()
    local now = os.time()
    local recs = provider:seed_records(150)
    local ids = {}
    local summary = assert(client:sync { state = dir .. "/state.json", since = now - 86400 * 2,
                                         on_record = function(r) ids[#ids + 1] = r.id return true end })
    assert.equal(#recs, #ids)
    assert.equal(#recs, summary.delivered)
  end)
end)
