-- Recordings are personal data: archive_recordings{ mode } for the files, the manifest and the dated
-- folders, under a permissive umask too (the mode is given at open(), the umask only narrows it).
local j = require "spec.helpers.jobs"

local DAY = 86400

-- the octal permission bits of each path, as stat prints them
local function modes(paths)
  local out = {}
  for _, p in ipairs(paths) do
    out[#out + 1] = (j.shell("stat -c %a '" .. p .. "'"):gsub("%s+$", ""))
  end
  return out
end

-- an archive run of two recordings in a child process under `umask` -> the summary's downloaded count
local function run_child(dir, umask, args)
  os.execute("mkdir -p '" .. dir .. "/a'")
  local script = j.script(dir, "run.lua", ([[
local jobs = require "spec.helpers.jobs"
local client, provider = jobs.client()
local now = os.time()
provider:seed_records { { callEndTime = now - 3600 }, { callEndTime = now - 2 * 86400 } }
local s = assert(client:archive_recordings { start_time = now - 8 * 86400, end_time = now, dir = %q %s })
io.write(s.downloaded)
]]):format(dir .. "/a", args or ""))
  return (j.shell("umask " .. umask .. " && " .. j.LUA .. " " .. script .. " 2>&1"))
end

local function files_of(dir)
  local out = {}
  for _, p in ipairs(j.tree(dir)) do
    local base = p:match("[^/]+$")
    if base:match("%.[a-z0-9]+$") and not base:match("^manifest") and not base:match("^%.") then
      out[#out + 1] = dir .. "/" .. p
    end
  end
  table.sort(out)
  return out
end

describe("archive_recordings mode", function()
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  for _, umask in ipairs { "022", "000" } do
    it("makes recordings and the manifest 0640 and dated folders 0750 by default under umask " .. umask, function()
      assert.equal("2", run_child(dir, umask))
      local files = files_of(dir .. "/a")
      assert.equal(2, #files)
      assert.same({ "640", "640" }, modes(files))
      assert.same({ "640" }, modes { dir .. "/a/manifest.jsonl" })
      local folders = {}
      for _, f in ipairs(files) do folders[#folders + 1] = f:match("^(.*)/[^/]+$") end
      for _, m in ipairs(modes(folders)) do assert.equal("750", m) end
    end)
  end

  it("takes the mode given (0600: folders 0700) and leaves an existing manifest's mode as it is", function()
    os.execute("mkdir -p '" .. dir .. "/a' && : > '" .. dir .. "/a/manifest.jsonl' && chmod 0604 '"
      .. dir .. "/a/manifest.jsonl'")
    assert.equal("2", run_child(dir, "000", ", mode = 384"))
    local files = files_of(dir .. "/a")
    assert.same({ "600", "600" }, modes(files))
    assert.equal("700", modes { files[1]:match("^(.*)/[^/]+$") }[1])
    assert.same({ "604" }, modes { dir .. "/a/manifest.jsonl" })
  end)

  it("refuses a mode that is not a whole number from 0 to 0777 (err.field mode), writing nothing", function()
    local client = j.client()
    local now = os.time()
    for _, bad in ipairs { -1, 512, 1.5, "0640", true } do
      local ok, err = client:archive_recordings { start_time = now - DAY, end_time = now, dir = dir, mode = bad }
      assert.is_nil(ok)
      assert.equal("argument", err.kind)
      assert.equal("mode", err.field)
    end
    assert.same({}, j.tree(dir))
  end)
end)

-- an archive of three recordings in dir, in process -> the client, the manifest's entries
local function archive3(dir, extra)
  local json = require "clicktocall.json"
  local client, provider = j.client()
  local now = os.time()
  provider:seed_records { { callEndTime = now - 3600 }, { callEndTime = now - 2 * DAY },
                         { callEndTime = now - 3 * DAY } }
  local args = { start_time = now - 8 * DAY, end_time = now, dir = dir }
  for k, v in pairs(extra or {}) do args[k] = v end
  local summary = assert(client:archive_recordings(args))
  local entries = {}
  for _, line in ipairs(j.lines(dir .. "/manifest.jsonl")) do entries[#entries + 1] = json.decode(line) end
  return client, entries, summary, args
end

local function statuses(report)
  local out = {}
  for _, r in ipairs(report.rows) do out[#out + 1] = r.status end
  return out
end

describe("clicktocall.verify_archive", function()
  local clicktocall = require "clicktocall"
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  it("reports every file ok on a good archive", function()
    archive3(dir)
    local r = assert(clicktocall.verify_archive { dir = dir })
    assert.same({ "ok", "ok", "ok" }, statuses(r))
    assert.equal(3, r.ok)
    assert.equal(0, r.missing + r.changed + r.torn + r.uploaded)
  end)

  it("reports a deleted file missing, a flipped byte and a truncated file changed, a torn line torn", function()
    local _, m = archive3(dir)
    os.remove(dir .. "/" .. m[1].file)
    local path2 = dir .. "/" .. m[2].file
    local f = assert(io.open(path2, "r+b"))
    f:seek("set", 100)
    local b = f:read(1)
    f:seek("set", 100)
    f:write(string.char((b:byte() + 1) % 256))
    f:close()
    os.execute("truncate -s 1000 '" .. dir .. "/" .. m[3].file .. "'")
    f = assert(io.open(dir .. "/manifest.jsonl", "ab"))
    f:write('{"id":99,"sessionId":"x","fi')
    f:close()
    local r = assert(clicktocall.verify_archive { dir = dir, manifest = dir .. "/manifest.jsonl" })
    assert.same({ "torn", "missing", "changed", "changed" }, statuses(r))
    assert.equal(4, r.rows[1].line)
    assert.matches("SHA%-256", r.rows[3].detail)
    assert.matches("size 1000", r.rows[4].detail)
    assert.same({ 0, 1, 2, 1 }, { r.ok, r.missing, r.changed, r.torn })
  end)

  it("counts an entry with `uploaded` and no local file as uploaded (fine), and refuses bad input", function()
    local _, m = archive3(dir)
    os.remove(dir .. "/" .. m[1].file)
    local f = assert(io.open(dir .. "/manifest.jsonl", "ab"))
    m[1].uploaded = { key = "calls/" .. m[1].file, etag = "e1", at = os.time() }
    f:write(require("clicktocall.json").encode(m[1]), "\n")
    f:close()
    local r = assert(clicktocall.verify_archive { dir = dir })
    assert.same({ "uploaded", "ok", "ok" }, statuses(r))
    assert.equal(0, r.missing)
    local ok, err = clicktocall.verify_archive { dir = dir .. "/nope" }
    assert.is_nil(ok)
    assert.equal("dir", err.field)
    ok, err = clicktocall.verify_archive { dir = dir, bogus = 1 }
    assert.is_nil(ok)
    assert.equal("bogus", err.field)
  end)
end)

describe("archive_recordings keep_days", function()
  local json = require "clicktocall.json"
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  -- the manifest rewritten with archived_at moved back `days` and, for the ids in `up`, `uploaded`
  local function age(m, days, up)
    local f = assert(io.open(dir .. "/manifest.jsonl", "wb"))
    for _, e in ipairs(m) do
      e.archived_at = e.archived_at - days * DAY
      if up[e.id] then e.uploaded = { key = "calls/" .. e.file, etag = "e", at = os.time() - DAY } end
      f:write(json.encode(e), "\n")
    end
    f:close()
  end

  it("never removes a file without `uploaded`, however old", function()
    local client, m, _, args = archive3(dir)
    age(m, 30, {})
    args.keep_days = 1
    local s = assert(client:archive_recordings(args))
    assert.equal(0, s.removed)
    for _, e in ipairs(m) do assert.equal("file", require("clicktocall.core").file_kind(dir .. "/" .. e.file)) end
  end)

  it("removes an uploaded copy older than keep_days, keeps a newer one, and does not fetch it again", function()
    local client, m, _, args = archive3(dir)
    local core = require "clicktocall.core"
    age(m, 3, { [m[1].id] = true })
    args.keep_days = 5
    assert.equal(0, assert(client:archive_recordings(args)).removed) -- 3 days old: kept
    assert.equal("file", core.file_kind(dir .. "/" .. m[1].file))
    args.keep_days = 2
    local s = assert(client:archive_recordings(args))
    assert.equal(1, s.removed)
    assert.equal(0, s.downloaded)
    assert.equal("missing", core.file_kind(dir .. "/" .. m[1].file))
    assert.equal("file", core.file_kind(dir .. "/" .. m[2].file))
    s = assert(client:archive_recordings(args)) -- the next run: nothing fetched again, nothing else removed
    assert.same({ 0, 0, 3 }, { s.downloaded, s.removed, s.skipped })
    local r = assert(require("clicktocall").verify_archive { dir = dir })
    assert.same({ 2, 1, 0 }, { r.ok, r.uploaded, r.missing })
  end)

  it("refuses a keep_days that is not a number of days (err.field keep_days)", function()
    local client = j.client()
    for _, bad in ipairs { -1, "7", true, 0 / 0 } do
      local ok, err = client:archive_recordings { start_time = os.time() - DAY, end_time = os.time(), dir = dir,
                                                  keep_days = bad }
      assert.is_nil(ok)
      assert.equal("keep_days", err.field)
    end
  end)
end)

describe("download_recording mode", function()
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  it("creates the file with the mode given and refuses a bad one (err.field mode), sending nothing", function()
    local client, provider = j.client()
    local rec = provider:seed_records { { callEndTime = os.time() - 3600 } }[1]
    assert(client:download_recording(rec, dir .. "/a.wav", 384))
    assert.same({ "600" }, modes { dir .. "/a.wav" })
    local before = #provider.requests
    local ok, err = client:download_recording(rec, dir .. "/b.wav", 1024)
    assert.is_nil(ok)
    assert.equal("mode", err.field)
    assert.equal(before, #provider.requests)
  end)
end)
