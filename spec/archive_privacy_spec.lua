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
