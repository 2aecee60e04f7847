-- client:archive_recordings{} against the mock provider (a transport function: one download after
-- another): names, layouts, the manifest, re-runs, failures, the lock, hooks, bad input.
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"
local mock = require "clicktocall.mock"
local json = require "clicktocall.json"

local HOUR, DAY = 3600, 86400

local function window(now)
  return now - 8 * DAY, now
end

-- the manifest's entries; `torn` lets lines that do not parse through (counted in the second result)
local function manifest(dir, torn)
  local out, bad = {}, 0
  for _, line in ipairs(j.lines(dir .. "/manifest.jsonl")) do
    local e = json.decode(line)
    if e then
      out[#out + 1] = e
    else
      assert.is_true(torn, "a manifest line that does not parse: " .. line)
      bad = bad + 1
    end
  end
  return out, bad
end

local function downloads(provider)
  local out = {}
  for _, r in ipairs(provider.requests) do
    if r.op == "download" then out[#out + 1] = r.url end
  end
  return out
end

describe("archive_recordings", function()
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  it("downloads every recording once, oldest first, into dated folders, with a manifest line each", function()
    local client, provider = j.client()
    local now = os.time()
    -- ids ascending, call end times descending: the archive must reorder
    local recs = provider:seed_records {
      { callEndTime = now - 3 * HOUR }, { callEndTime = now - 2 * DAY }, { callEndTime = now - 5 * DAY },
      { recordFlag = "0", callEndTime = now - HOUR },
    }
    local from, to = window(now)
    local summary = assert(client:archive_recordings { start_time = from, end_time = to, dir = dir })
    assert.equal(3, summary.downloaded)
    assert.equal(1, summary.no_recording)
    assert.equal(0, summary.skipped)
    assert.equal(3 * 32768, summary.bytes)
    assert.same({}, summary.failed)
    assert.same({}, summary.expiring)
    local urls = downloads(provider)
    assert.same({ recs[3].recordFileDownloadUrl, recs[2].recordFileDownloadUrl, recs[1].recordFileDownloadUrl }, urls)
    local m = manifest(dir)
    assert.equal(3, #m)
    for i, k in ipairs { 3, 2, 1 } do
      local rec = recs[k]
      assert.equal(rec.id, m[i].id)
      assert.equal(rec.sessionId, m[i].sessionId)
      assert.equal(rec.callEndTime:sub(1, 10) .. "/" .. rec.sessionId .. ".wav", m[i].file)
      assert.equal(32768, m[i].bytes)
      local body = provider:recording(rec)
      assert.equal(body, j.read(dir .. "/" .. m[i].file))
      local hasher = core.sha256()
      hasher:update(body)
      assert.equal(hasher:hex(), m[i].sha256)
      assert.equal(rec.callEndTime, m[i].callEndTime)
      assert.is_true(math.abs(m[i].archived_at - os.time()) < 60)
    end
  end)

  it("reads a manifest the earlier writer left, and writes its lines byte for byte as it did", function()
    local client, provider = j.client()
    local now = os.time()
    -- an id past 2^53 and a sessionId of digits: the id a number, the sessionId a string, as before
    local recs = provider:seed_records {
      { id = "9007199254740993", sessionId = "12345678901234567890", callEndTime = now - HOUR },
      { id = "9007199254740995", sessionId = "777", callEndTime = now - 2 * HOUR },
    }
    local from, to = window(now)
    assert(client:archive_recordings { start_time = from, end_time = to, dir = dir, layout = "flat" })
    local lines = j.lines(dir .. "/manifest.jsonl")
    assert.equal(2, #lines)
    local ids = { ["12345678901234567890"] = "9007199254740993", ["777"] = "9007199254740995" }
    local by_sid = {}
    for _, line in ipairs(lines) do
      local m = json.decode(line)
      local rec = m.sessionId == "777" and recs[2] or recs[1]
      assert.equal(('{"id":%s,"sessionId":"%s","file":"%s.wav","bytes":32768,"sha256":"%s","callEndTime":"%s",'
                    .. '"archived_at":%d}'):format(ids[rec.sessionId], rec.sessionId, rec.sessionId, m.sha256,
                                                   rec.callEndTime, m.archived_at), line)
      by_sid[m.sessionId] = line
    end
    -- the first recording's line as the earlier writer wrote it (its own bytes): a re-run skips it
    local old = ('{"id":9007199254740995,"sessionId":"777","file":"777.wav","bytes":32768,"sha256":"%s",'
                 .. '"callEndTime":"%s","archived_at":1700000000}\n'):format(json.decode(by_sid["777"]).sha256,
                                                                           recs[2].callEndTime)
    j.write(dir .. "/manifest.jsonl", old .. by_sid["12345678901234567890"] .. "\n")
    local again = assert(client:archive_recordings { start_time = from, end_time = to, dir = dir, layout = "flat" })
    assert.equal(0, again.downloaded)
    assert.equal(2, again.skipped)
  end)

  it("a re-run downloads nothing and skips each recording; a missing file is fetched again", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records(5, { start_time = now - DAY, end_time = now - 60 })
    local from, to = window(now)
    local args = { start_time = from, end_time = to, dir = dir, layout = "flat" }
    assert.equal(5, assert(client:archive_recordings(args)).downloaded)
    local before = j.count(provider, "download")
    local again = assert(client:archive_recordings(args))
    assert.equal(0, again.downloaded)
    assert.equal(5, again.skipped)
    assert.equal(before, j.count(provider, "download"))
    -- a file lost or cut since: fetched again (the manifest alone is not proof)
    local m = manifest(dir)
    os.remove(dir .. "/" .. m[2].file)
    j.write(dir .. "/" .. m[4].file, "short")
    local third = assert(client:archive_recordings(args))
    assert.equal(2, third.downloaded)
    assert.equal(3, third.skipped)
    assert.equal(before + 2, j.count(provider, "download"))
  end)

  it("a manifest entry whose file is there, whole, is skipped even when the layout changed since", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records(4, { start_time = now - DAY, end_time = now - 60 })
    local from, to = window(now)
    local function run(layout)
      return assert(client:archive_recordings { start_time = from, end_time = to, dir = dir, layout = layout })
    end
    assert.equal(4, run("flat").downloaded)
    local before = j.count(provider, "download")
    local dated = run("date")
    assert.equal(0, dated.downloaded)
    assert.equal(4, dated.skipped)
    assert.equal(before, j.count(provider, "download"))
    -- a file lost since: fetched again, where this run's layout puts it
    local m = manifest(dir)
    os.remove(dir .. "/" .. m[1].file)
    local third = run("date")
    assert.equal(1, third.downloaded)
    assert.equal(3, third.skipped)
    m = manifest(dir)
    assert.equal(m[1].id, m[5].id)
    assert.equal(m[1].callEndTime:sub(1, 10) .. "/" .. m[1].sessionId .. ".wav", m[5].file)
    -- a hand-edited line naming a whole file outside dir is never taken for the recording
    local outside = dir .. "-outside.wav"
    j.write(outside, ("x"):rep(32768))
    local text = j.read(dir .. "/manifest.jsonl")
    local was = '"file":"' .. m[2].file .. '"'
    local at = assert(text:find(was, 1, true))
    j.write(dir .. "/manifest.jsonl", text:sub(1, at - 1) .. '"file":"../' .. outside:match("[^/]+$") .. '"'
      .. text:sub(at + #was))
    local fourth = run("date")
    os.remove(outside)
    assert.equal(1, fourth.downloaded)
    assert.equal(3, fourth.skipped)
  end)

  it("names never leave dir: hostile sessionIds are sanitized, an empty one becomes id-<id>", function()
    local client, provider = j.client()
    local now = os.time()
    local recs = provider:seed_records {
      { sessionId = "../../etc/passwd", callEndTime = now - 5 * HOUR },
      { sessionId = ".hidden", callEndTime = now - 4 * HOUR },
      { sessionId = "a/b", callEndTime = now - 3 * HOUR },
      { sessionId = "x\1y\n z", callEndTime = now - 2 * HOUR },
      { sessionId = "", callEndTime = now - HOUR },
      { sessionId = "...", callEndTime = now - 30 },
    }
    local from, to = window(now)
    local summary = assert(client:archive_recordings { start_time = from, end_time = to, dir = dir,
                                                       layout = "flat" })
    assert.equal(6, summary.downloaded)
    local names = {}
    for _, e in ipairs(manifest(dir)) do names[#names + 1] = e.file end
    assert.same({ "_.._etc_passwd.wav", "hidden.wav", "a_b.wav", "x_y__z.wav", "id-" .. recs[5].id .. ".wav",
                  "id-" .. recs[6].id .. ".wav" }, names)
    for _, name in ipairs(names) do
      assert.equal("file", core.file_kind(dir .. "/" .. name))
    end
  end)

  it("two calls with one sessionId keep both recordings, across runs too", function()
    local client, provider = j.client()
    local now = os.time()
    local recs = provider:seed_records {
      { sessionId = "dup", callEndTime = now - 3 * 3600, recordFileDownloadUrl = "http://mock-recordings/a.wav" },
      { sessionId = "dup", callEndTime = now - 2 * 3600, recordFileDownloadUrl = "http://mock-recordings/b.wav" },
    }
    local args = { start_time = now - DAY, end_time = now, dir = dir, layout = "flat" }
    assert.equal(2, assert(client:archive_recordings(args)).downloaded)
    assert.equal(provider:recording(recs[1]), j.read(dir .. "/dup.wav"))
    assert.equal(provider:recording(recs[2]), j.read(dir .. "/dup-" .. recs[2].id .. ".wav"))
    -- a window that holds only the second: it keeps its own name, nothing is fetched or overwritten
    local again = assert(client:archive_recordings { start_time = now - 2 * 3600 - 1, end_time = now, dir = dir,
                                                     layout = "flat" })
    assert.equal(1, again.skipped)
    assert.equal(0, again.downloaded)
    assert.equal(provider:recording(recs[1]), j.read(dir .. "/dup.wav"))
  end)

  it("the extension is the URL's when it is 1-5 letters or digits, else .wav", function()
    local archive = require "clicktocall.archive"
    local function name(url) return archive.name_of { id = 7, sessionId = "s", recordFileDownloadUrl = url } end
    assert.equal("s.mp3", name("http://h/x/y.mp3?sig=1"))
    assert.equal("s.wav", name("http://h/x/y.mp3456"))
    assert.equal("s.wav", name("http://h/x/y"))
    assert.equal("s.wav", name("http://h/x.d/y"))
    assert.equal("s.ogg", name("https://h/a.b/c.ogg#t"))
  end)

  it("one failure never stops the others: a 404 and a cut-short recording are listed in failed", function()
    local client, provider = j.client()
    local now = os.time()
    local recs = provider:seed_records {
      { sessionId = "good-1", callEndTime = now - 5 * HOUR },
      { sessionId = "missing", callEndTime = now - 4 * HOUR },
      { sessionId = "cut", callEndTime = now - 3 * HOUR },
      { sessionId = "good-2", callEndTime = now - 2 * HOUR },
    }
    provider:fail("download", function(request, serve)
      if request.url:find("/missing.wav", 1, true) then
        return { status = 404, headers = {}, body = "not found" }
      end
      local res, err = serve()
      if res and request.url:find("/cut.wav", 1, true) then
        -- the sink got every byte; claim more were due
        res.headers["content-length"] = tostring(2 * 32768)
      end
      return res, err
    end, math.huge)
    local from, to = window(now)
    local summary = assert(client:archive_recordings { start_time = from, end_time = to, dir = dir,
                                                       layout = "flat" })
    assert.equal(2, summary.downloaded)
    assert.equal(2, #summary.failed)
    local by_sid = {}
    for _, f in ipairs(summary.failed) do by_sid[f.sessionId] = f end
    assert.equal("http", by_sid.missing.err.kind)
    assert.equal(404, by_sid.missing.err.status)
    assert.equal(recs[2].id, by_sid.missing.id)
    assert.equal("network", by_sid.cut.err.kind)
    assert.matches("cut short", by_sid.cut.err.message)
    -- expires 7 days after the call ended: not within 24 h
    assert.equal(now - 4 * HOUR + 7 * DAY, by_sid.missing.expires_at)
    assert.same({}, summary.expiring)
    assert.same({ ".clicktocall.lock", "good-1.wav", "good-2.wav", "manifest.jsonl" }, j.tree(dir))
    assert.equal(2, #manifest(dir))
  end)

  it("a failed recording that expires within 24 h is also in expiring", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records {
      { sessionId = "old", callEndTime = now - 7 * DAY + 2 * HOUR },
      { sessionId = "young", callEndTime = now - 3 * DAY },
    }
    provider:fail("download", 503, math.huge)
    local summary = assert(client:archive_recordings { start_time = now - 8 * DAY, end_time = now, dir = dir })
    assert.equal(2, #summary.failed)
    assert.equal(1, #summary.expiring)
    assert.equal("old", summary.expiring[1].sessionId)
    assert.equal(now + 2 * HOUR, summary.expiring[1].expires_at)
    assert.equal("old", summary.failed[1].sessionId) -- oldest first, there too
  end)

  it("ignores a torn last manifest line (a crash) and re-does that entry; later lines stay whole", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records(3, { start_time = now - DAY, end_time = now - 60 })
    local from, to = window(now)
    local args = { start_time = from, end_time = to, dir = dir, layout = "flat" }
    assert(client:archive_recordings(args))
    local lines = j.lines(dir .. "/manifest.jsonl")
    -- the last line cut in the middle, as a crash during its write would leave it
    j.write(dir .. "/manifest.jsonl", lines[1] .. "\n" .. lines[2] .. "\n" .. lines[3]:sub(1, 30))
    local before = j.count(provider, "download")
    local summary = assert(client:archive_recordings(args))
    assert.equal(1, summary.downloaded)
    assert.equal(2, summary.skipped)
    assert.equal(before + 1, j.count(provider, "download"))
    local m, bad = manifest(dir, true)
    assert.equal(3, #m)
    assert.equal(1, bad) -- the fragment, on its own line: the new entry was not glued to it
    assert.same({ 1, 2, 3 }, { m[1].id, m[2].id, m[3].id })
    -- a third run: all three skipped, the torn fragment ignored for good
    local third = assert(client:archive_recordings(args))
    assert.equal(3, third.skipped)
  end)

  it("removes temporary files of ours left by a dead process, never a live process's or another's", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records(1, { start_time = now - DAY, end_time = now - 60 })
    -- a pid that is not alive: a process that ran and exited
    local dead = tonumber(j.shell("sh -c 'echo $$'"):match("%d+"))
    assert.is_false(core.pid_alive(dead))
    local stale = (".ctc-%x-0badf00d-1.part"):format(dead)
    local live = (".ctc-%x-0badf00d-2.part"):format(core.getpid())
    core.mkdir(dir .. "/2026-11-30")
    j.write(dir .. "/" .. stale, "half")
    j.write(dir .. "/2026-11-30/" .. stale, "half")
    j.write(dir .. "/" .. live, "busy")
    j.write(dir .. "/.ctc-notours.part", "x")
    assert(client:archive_recordings { start_time = now - DAY, end_time = now, dir = dir })
    assert.equal("missing", core.file_kind(dir .. "/" .. stale))
    assert.equal("missing", core.file_kind(dir .. "/2026-11-30/" .. stale))
    assert.equal("file", core.file_kind(dir .. "/" .. live))
    assert.equal("file", core.file_kind(dir .. "/.ctc-notours.part"))
  end)

  it("is busy, doing nothing, while another archive holds dir", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records(2, { start_time = now - DAY, end_time = now - 60 })
    local held = assert(core.lock_file(dir .. "/.clicktocall.lock"))
    local summary, err = client:archive_recordings { start_time = now - DAY, end_time = now, dir = dir }
    assert.is_nil(summary)
    assert.equal("busy", err.kind)
    assert.is_true(err.retryable)
    assert.is_false(err.sent)
    assert.matches(dir, err.message, 1, true)
    assert.equal(0, #provider.requests)
    assert.same({ ".clicktocall.lock" }, j.tree(dir))
    held:unlock()
    assert.equal(2, assert(client:archive_recordings { start_time = now - DAY, end_time = now, dir = dir })
      .downloaded)
  end)

  it("calls on_file with the entry and its path; a raising on_file fails that recording only", function()
    local client, provider = j.client()
    local now = os.time()
    local recs = provider:seed_records(3, { start_time = now - DAY, end_time = now - 60 })
    local seen, boom, down = {}, { reason = "bucket down" }, true
    local function on_file(entry)
      assert.equal(dir .. "/" .. entry.file, entry.path)
      assert.equal("file", core.file_kind(entry.path))
      seen[#seen + 1] = entry.id
      if entry.id == recs[2].id and down then error(boom) end
    end
    local args = { start_time = now - DAY, end_time = now, dir = dir, layout = "flat", on_file = on_file }
    local summary = assert(client:archive_recordings(args))
    assert.same({ recs[1].id, recs[2].id, recs[3].id }, seen)
    assert.equal(2, summary.downloaded)
    assert.equal(1, #summary.failed)
    local err = summary.failed[1].err
    assert.equal("callback", err.kind)
    assert.equal(boom, err.cause)
    -- not in the manifest: the next run gives on_file another chance
    assert.equal(2, #manifest(dir))
    seen, down = {}, false
    local again = assert(client:archive_recordings(args))
    assert.same({ recs[2].id }, seen)
    assert.equal(1, again.downloaded)
    assert.equal(2, again.skipped)
  end)

  it("calls on_plan once with the number of recordings it will download, before any download, paging once",
     function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records(4, { start_time = now - DAY, end_time = now - 60 })
    local args = { start_time = now - DAY, end_time = now, dir = dir, layout = "flat" }
    assert.equal(4, assert(client:archive_recordings(args)).downloaded)
    local m = manifest(dir)
    os.remove(dir .. "/" .. m[3].file) -- fetched again: in the plan; the three kept are not
    provider:seed_records(2, { start_time = now - DAY, end_time = now - 60 })
    local plans, downloads_at_plan = {}, nil
    args.on_plan = function(total)
      plans[#plans + 1] = total
      downloads_at_plan = j.count(provider, "download")
    end
    local pages, dl = j.count(provider, "records_page"), j.count(provider, "download")
    local summary = assert(client:archive_recordings(args))
    assert.same({ 3 }, plans)
    assert.equal(dl, downloads_at_plan)
    assert.equal(3, summary.downloaded)
    assert.equal(pages + 1, j.count(provider, "records_page")) -- the window is listed once
    local _, err = client:archive_recordings { start_time = now - DAY, end_time = now, dir = dir, on_plan = 1 }
    assert.equal("argument", err.kind)
    assert.equal("on_plan", err.field)
    args.on_plan = function() error("no bar") end
    _, err = client:archive_recordings(args)
    assert.equal("callback", err.kind)
    assert.matches("on_plan raised an error: .*no bar", err.message)
  end)

  it("on_file returning nil, err is a failure of kind callback too", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records(1, { start_time = now - DAY, end_time = now - 60 })
    local summary = assert(client:archive_recordings { start_time = now - DAY, end_time = now, dir = dir,
      on_file = function() return nil, "quota" end })
    assert.equal("callback", summary.failed[1].err.kind)
    assert.equal("quota", summary.failed[1].err.cause)
  end)

  it("adds the ca_file and insecure hint to a TLS verification failure of a recording host", function()
    local now = os.time()
    local provider = mock.new {}
    provider:seed_records(1, { start_time = now - DAY, end_time = now - 60 })
    local client = assert(require("clicktocall").new { base_url = "http://mock", app_secret = "TEST",
      user_data = j.USER_DATA, retries = 0, transport = function(request)
        if request.url:find("mock-recordings", 1, true) then
          return nil, { kind = "network", sent = false, code = 60, code_name = "CURLE_PEER_FAILED_VERIFICATION",
                        message = "SSL peer certificate or SSH remote key was not OK" }
        end
        return provider.transport(request)
      end })
    local summary = assert(client:archive_recordings { start_time = now - DAY, end_time = now, dir = dir })
    local err = summary.failed[1].err
    assert.equal("network", err.kind)
    assert.matches("ca_file", err.message, 1, true)
    assert.matches("insecure", err.message, 1, true)
  end)

  it("returns nil, err when the records listing fails, downloading nothing", function()
    local client, provider = j.client { retries = 0 }
    local now = os.time()
    provider:seed_records(2, { start_time = now - DAY, end_time = now - 60 })
    provider:fail("records_page", 500)
    local summary, err = client:archive_recordings { start_time = now - DAY, end_time = now, dir = dir }
    assert.is_nil(summary)
    assert.equal("http", err.kind)
    assert.equal(0, j.count(provider, "download"))
  end)

  describe("refuses bad input as an argument error naming the field, sending and writing nothing:", function()
    local now = os.time()
    local cases = {
      { "dir", function(d) return { dir = d .. "/missing" } end },
      { "dir", function() return { dir = 5 } end },
      { "dir", function() return { dir = nil } end },
      { "concurrency", function(d) return { dir = d, concurrency = 0 } end },
      { "concurrency", function(d) return { dir = d, concurrency = 33 } end },
      { "concurrency", function(d) return { dir = d, concurrency = 2.5 } end },
      { "concurrency", function(d) return { dir = d, concurrency = "4" } end },
      { "layout", function(d) return { dir = d, layout = "tree" } end },
      { "on_file", function(d) return { dir = d, on_file = "print" } end },
      { "manifest", function(d) return { dir = d, manifest = d .. "/no/such/m.jsonl" } end },
      { "start_time", function(d) return { dir = d, start_time = "yesterday" } end },
      { "start_time", function(d) return { dir = d, start_time = now, end_time = now - 10 } end },
      { "colour", function(d) return { dir = d, colour = "red" } end },
    }
    for i, case in ipairs(cases) do
      it(case[1] .. " (#" .. i .. ")", function()
        local client, provider = j.client()
        local args = { start_time = now - DAY, end_time = now }
        for k, v in pairs(case[2](dir)) do args[k] = v end
        local summary, err = client:archive_recordings(args)
        assert.is_nil(summary)
        assert.equal("argument", err.kind)
        assert.matches(case[1], err.message, 1, true)
        assert.equal(0, #provider.requests)
        assert.same({}, j.tree(dir))
      end)
    end

    it("a dir that is not writable", function()
      if j.shell("id -u"):match("^0") then
        -- root writes anywhere: a read-only bind is not available here, use a file instead of a dir
        local client, provider = j.client()
        j.write(dir .. "/f", "")
        local summary, err = client:archive_recordings { start_time = now - DAY, end_time = now, dir = dir .. "/f" }
        assert.is_nil(summary)
        assert.equal("argument", err.kind)
        assert.matches("dir", err.message, 1, true)
        assert.equal(0, #provider.requests)
        return
      end
      local client, provider = j.client()
      j.shell("chmod 0555 '" .. dir .. "'")
      local summary, err = client:archive_recordings { start_time = now - DAY, end_time = now, dir = dir }
      j.shell("chmod 0755 '" .. dir .. "'")
      assert.is_nil(summary)
      assert.equal("argument", err.kind)
      assert.matches("dir", err.message, 1, true)
      assert.equal(0, #provider.requests)
    end)

    it("a table expected", function()
      local client = j.client()
      local summary, err = client:archive_recordings("x")
      assert.is_nil(summary)
      assert.equal("argument", err.kind)
    end)
  end)
end)

describe("archive_recordings on a full disk (EFBIG under ulimit -f, SIGXFSZ ignored)", function()
  it("fails that recording with kind io, leaves no half file, and keeps every manifest line whole", function()
    local dir = j.mkdtemp()
    core.mkdir(dir .. "/out")
    local script = j.script(dir, "probe.lua", ([[
local j = require "spec.helpers.jobs"
local flat = require "clicktocall.json"
local now = os.time()
local client, provider = j.client()
-- 8 KiB, then one of 64 KiB that cannot fit under the 48 KiB limit, then 8 KiB again
provider:seed_records(1, { start_time = now - 3000, end_time = now - 3000, recording_size = 8192 })
provider:seed_records(1, { start_time = now - 2000, end_time = now - 2000, recording_size = 65536 })
provider:seed_records(1, { start_time = now - 1000, end_time = now - 1000, recording_size = 8192 })
local s, err = client:archive_recordings { start_time = now - 4000, end_time = now, dir = "%s/out", layout = "flat" }
if not s then io.write("ERR ", tostring(err)) return end
io.write(s.downloaded, "|", #s.failed, "|", s.failed[1] and s.failed[1].err.kind or "-", "|",
         s.failed[1] and s.failed[1].err.message or "-")
]]):format(dir))
    local out = j.shell(("sh -c \"trap '' XFSZ; ulimit -f 48; %s '%s'\" 2>&1"):format(j.LUA, script))
    local m = j.lines(dir .. "/out/manifest.jsonl")
    local listing = j.tree(dir .. "/out")
    j.rmtree(dir)
    local downloaded, failed, kind, message = out:match("^(%d+)|(%d+)|(%w+)|(.*)$")
    assert.equal("2", downloaded, out)
    assert.equal("1", failed)
    assert.equal("io", kind)
    assert.matches("File too large", message)
    assert.equal(2, #m)
    for _, line in ipairs(m) do assert.truthy(json.decode(line), line) end
    for _, name in ipairs(listing) do
      assert.is_nil(name:match("%.part$"), name)
    end
    assert.equal(4, #listing) -- the lock, two recordings, the manifest
  end)
end)

describe("archive_recordings when the manifest cannot grow (EFBIG under ulimit -f)", function()
  it("fails that recording with kind io and cuts the manifest back: no torn line for the next to be glued to",
     function()
    local dir = j.mkdtemp()
    core.mkdir(dir .. "/out")
    -- the limit in bytes: sh's ulimit -f counts 512-byte blocks in dash, 1024 in bash; ask it
    j.shell(("sh -c \"trap '' XFSZ; ulimit -f 32; head -c 100000 /dev/zero > '%s/probe' 2>/dev/null\""):format(dir))
    local limit = #j.read(dir .. "/probe")
    os.remove(dir .. "/probe")
    assert.is_true(limit == 16384 or limit == 32768, limit)
    -- a manifest 60 bytes under the limit, of whole lines: the next line is written in part, then EFBIG
    local line = '{"id":1,"sessionId":"old","file":"old.wav","bytes":1,"sha256":"00",'
      .. '"callEndTime":"x","archived_at":1}\n'
    local filler = line:rep(math.floor((limit - 60) / #line))
    filler = filler .. ("x"):rep(limit - 60 - #filler - 1) .. "\n"
    j.write(dir .. "/out/manifest.jsonl", filler)
    local script = j.script(dir, "probe.lua", ([[
local j = require "spec.helpers.jobs"
local now = os.time()
local client, provider = j.client()
provider:seed_records(1, { start_time = now - 1000, end_time = now - 1000, recording_size = 4096 })
local s, err = client:archive_recordings { start_time = now - 4000, end_time = now, dir = "%s/out", layout = "flat" }
if not s then io.write("ERR ", tostring(err)) return end
io.write(s.downloaded, "|", #s.failed, "|", s.failed[1] and s.failed[1].err.kind or "-", "|",
         s.failed[1] and s.failed[1].err.message or "-")
]]):format(dir))
    local out = j.shell(("sh -c \"trap '' XFSZ; ulimit -f 32; %s '%s'\" 2>&1"):format(j.LUA, script))
    local after = j.read(dir .. "/out/manifest.jsonl")
    j.rmtree(dir)
    local downloaded, failed, kind, message = out:match("^(%d+)|(%d+)|(%w+)|(.*)$")
    assert.equal("0", downloaded, out)
    assert.equal("1", failed)
    assert.equal("io", kind)
    assert.matches("manifest", message)
    assert.equal(filler, after)
  end)
end)
