-- The paths the jobs hand out are absolute whatever the caller gave: on_file's entry.path for a relative
-- `dir` (API.md: "path (absolute)"), sync's summary.state for a relative `state`; the manifest's `file`
-- stays relative to dir. A relative path is made absolute against the working directory at the call's
-- start, its own ".." kept as given (it names the same directory).
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"
local jobs = require "clicktocall.jobs"
local json = require "clicktocall.json"

-- "../../.." up to "/" from the working directory, then the absolute dir without its leading "/"
local function relative_to_cwd(abs)
  local cwd = assert(core.getcwd())
  local ups = select(2, cwd:gsub("/[^/]+", ""))
  return ("../"):rep(ups) .. abs:sub(2), cwd
end

describe("core.getcwd and jobs.absolute", function()
  it("getcwd is the working directory the shell started us in", function()
    local pwd = j.shell("pwd -P"):gsub("%s+$", "")
    assert.equal(pwd, core.getcwd())
  end)

  it("keeps an absolute path, prefixes a relative one with the working directory", function()
    local cwd = core.getcwd()
    assert.equal("/var/calls", jobs.absolute("/var/calls"))
    assert.equal("/a/../b", jobs.absolute("/a/../b"))
    assert.equal(cwd .. "/calls", jobs.absolute("calls"))
    assert.equal(cwd .. "/calls/2024", jobs.absolute("./calls/2024"))
    assert.equal(cwd .. "/calls", jobs.absolute(".//./calls"))
    assert.equal(cwd .. "/../calls", jobs.absolute("../calls")) -- ".." kept: a symlink before it stays right
    assert.equal(cwd, jobs.absolute("."))
    assert.equal(cwd, jobs.absolute("./"))
  end)
end)

describe("archive_recordings with a relative dir", function()
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  for _, case in ipairs {
    { "relative/dir (through ..)", function(abs) return (relative_to_cwd(abs)) end },
    { "./relative/dir/", function(abs) return "./" .. relative_to_cwd(abs) .. "/" end },
  } do
    it("hands on_file an absolute entry.path (" .. case[1] .. "); the manifest's file stays relative", function()
      local client, provider = j.client()
      local now = os.time()
      provider:seed_records { { callEndTime = now - 3600 }, { callEndTime = now - 7200 } }
      local rel = case[2](dir)
      assert.is_nil(rel:find("^/"))
      local _, cwd = relative_to_cwd(dir)
      local seen = {}
      local summary = assert(client:archive_recordings {
        start_time = now - 86400, end_time = now, dir = rel,
        on_file = function(entry) seen[#seen + 1] = entry end,
      })
      assert.equal(2, summary.downloaded)
      assert.equal(2, #seen)
      local prefix = cwd .. "/" .. rel:gsub("^%./", ""):gsub("/$", "") .. "/"
      for _, entry in ipairs(seen) do
        assert.matches("^/", entry.path)
        assert.equal(prefix .. entry.file, entry.path)
        assert.matches("^%d%d%d%d%-%d%d%-%d%d/[^/]+%.wav$", entry.file)
        assert.equal(provider:recording(entry.sessionId), j.read(entry.path))
        assert.equal(j.read(dir .. "/" .. entry.file), j.read(entry.path)) -- the same file
      end
      local files = {}
      for _, line in ipairs(j.lines(dir .. "/manifest.jsonl")) do
        local e = assert(json.decode(line))
        files[#files + 1] = e.file
        assert.is_nil(e.file:find("^/"))
        assert.is_nil(e.path)
      end
      assert.equal(2, #files)
      -- a second run by the absolute name sees the same archive: nothing downloaded again
      local again = assert(client:archive_recordings { start_time = now - 86400, end_time = now, dir = dir })
      assert.equal(0, again.downloaded)
      assert.equal(2, again.skipped)
    end)
  end

  it("a relative manifest is written where it names, relative to the working directory", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records { { callEndTime = now - 3600 } }
    local rel = relative_to_cwd(dir)
    assert(client:archive_recordings { start_time = now - 86400, end_time = now, dir = rel,
                                       manifest = rel .. "/elsewhere.jsonl" })
    assert.equal(1, #j.lines(dir .. "/elsewhere.jsonl"))
    assert.is_nil(j.read(dir .. "/manifest.jsonl"))
  end)
end)

describe("sync with a relative state", function()
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  it("reports summary.state absolute, the file where the relative name said", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records { { callEndTime = now - 600 } }
    local rel, cwd = relative_to_cwd(dir)
    local n = 0
    local summary = assert(client:sync { state = rel .. "/state.json", since = now - 3600,
                                         on_record = function() n = n + 1 return true end })
    assert.equal(1, n)
    assert.equal(cwd .. "/" .. rel .. "/state.json", summary.state)
    assert.truthy(j.read(dir .. "/state.json"))
    assert.equal(j.read(dir .. "/state.json"), j.read(summary.state))
  end)
end)
