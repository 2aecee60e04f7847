-- archive_recordings' group commit, seen in the system calls of a child process (strace -f) over the
-- built-in libcurl multi: the recordings that finish in one turn of the scheduler have their files
-- fsynced at once in threads of their own, then renamed, then share one directory fsync and one
-- manifest write with one fsync, and each manifest line still comes after its file's fsync, its
-- rename and the directory's fsync.
local sim = require "spec.helpers.sim"
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"
local json = require "clicktocall.json"

local DAY = 86400

-- plain Lua 5.1 cannot yield across pcall: the batch runs one recording after another there, no turns
local SEQUENTIAL = _VERSION == "Lua 5.1" and not rawget(_G, "jit")

local function have_strace()
  return j.shell("command -v strace >/dev/null 2>&1 && strace -qq -e trace=none true 2>&1 && echo yes")
    :find("yes", 1, true) ~= nil
end

-- A child that archives the window at concurrency 8. whole_turns: core.curl_multi wrapped so that
-- a wait returns only once every transfer in flight is done, so each turn finishes a whole wave of 8
-- (with the real multi, how many finish together is up to the network).
local function child(dir, s, from, to, whole_turns, layout)
  return j.script(dir, "child.lua", ([[
local core = require "clicktocall.core"
local clicktocall = require "clicktocall"
if %s then
  local real = core.curl_multi
  core.curl_multi = function(o)
    local m, err = real(o)
    if not m then return nil, err end
    local all_done = {}
    function all_done.wait()
      local done = {}
      repeat
        local d = m:wait(1)
        for i = 1, #d do done[#done + 1] = d[i] end
      until m:count() == 0
      return done
    end
    return setmetatable(all_done, { __index = function(_, k)
      return function(_, ...) return m[k](m, ...) end
    end })
  end
end
local c = assert(clicktocall.new { base_url = %q, app_secret = %q, user_data = %q })
local s, err = c:archive_recordings { start_time = %d, end_time = %d, dir = %q, concurrency = 8,
                                      layout = %q }
if not s then io.write("ERR ", tostring(err)) os.exit(1) end
io.write(s.downloaded, "|", #s.failed)
]]):format(tostring(whole_turns), s.base_url, s.secret, s.user_data, from, to, dir .. "/out",
            layout or "flat"))
end

-- The trace's events (strace -f: each line starts with the thread's id; a call another thread
-- interrupted comes as "call(args <unfinished ...>" then "<... call resumed>rest"), in the order
-- they ended: { op = "fsync", path =, tid =, from =, to = }, { op = "rename", from =, to = },
-- { op = "write", path =, files = { names in the manifest lines written } }, each with tid and its
-- start and end line numbers (`from`, `to`), so that "A ended before B began" is A.to < B.from.
local function events(trace)
  local out, fds, open_calls = {}, {}, {}
  local n = 0
  for line in io.lines(trace) do
    n = n + 1
    local tid, rest = line:match("^(%d+)%s+(.*)$")
    if not tid then
      tid, rest = "main", line
    end
    local call, args, ret, from
    local c, a = rest:match("^(%w+)%((.*) <unfinished %.%.%.>$")
    if c then
      open_calls[tid] = { call = c, args = a, from = n }
    else
      local rc, tail = rest:match("^<%.%.%. (%w+) resumed>(.*)$")
      if rc then
        local started = open_calls[tid]
        open_calls[tid] = nil
        if started and started.call == rc then
          call, from = rc, started.from
          local more
          more, ret = tail:match("^(.-)%)%s+=%s+(-?%d+)")
          args = started.args .. (more or "")
        end
      else
        call, args, ret = rest:match("^(%w+)%((.*)%)%s+=%s+(-?%d+)")
        from = n
      end
    end
    local e
    if call == "openat" or call == "open" then
      fds[tonumber(ret)] = args:match('"(.-)"')
    elseif call == "fsync" or call == "fdatasync" then
      e = { op = "fsync", fd = tonumber(args) }
    elseif call == "mkdir" or call == "mkdirat" then
      e = { op = "mkdir", path = args:match('"(.-)"') }
    elseif call and call:match("^rename") then
      local a1, a2 = args:match('"(.-)".*"(.-)"')
      e = { op = "rename", from_path = a1, to_path = a2 }
    elseif call == "write" then
      local files = {}
      for name in args:gmatch('\\"file\\":\\"(.-)\\"') do files[#files + 1] = name end
      e = { op = "write", fd = tonumber(args:match("^(%d+)")), files = files }
    end
    if e then
      e.tid, e.from, e.to = tid, from, n
      if e.fd then
        -- the fd stays this thread's until it closes it, after this call: no other open can take it
        e.path = fds[e.fd]
      end
      out[#out + 1] = e
    end
  end
  return out
end

describe("archive_recordings' group commit (strace) #integration", function()
  local s, dir
  setup(function() s = assert(sim.start()) end)
  teardown(function() if s then s:stop() end end)
  before_each(function()
    s:reset()
    dir = j.mkdtemp()
    core.mkdir(dir .. "/out")
  end)
  after_each(function() j.rmtree(dir) end)

  it("one turn's files are fsynced at once in threads, then renamed, then one directory fsync, one manifest write",
     function()
    if SEQUENTIAL or not have_strace() then
      pending(SEQUENTIAL and "plain Lua 5.1: one recording after another" or "strace is not usable here")
      return
    end
    local now = os.time()
    s:post("/_sim/seed", { count = 16, start_time = now - DAY, end_time = now - 60, recorded = true,
                           recording_bytes = 4096 })
    local script = child(dir, s, now - DAY, now, true)
    local trace = dir .. "/trace"
    local out = j.shell(("strace -f -qq -s 100000 -o '%s' -e trace=open,openat,rename,renameat,renameat2,"
      .. "fsync,fdatasync,write %s '%s' 2>&1"):format(trace, j.LUA, script))
    assert.equal("16|0", out)
    local out_dir, manifest = dir .. "/out", dir .. "/out/manifest.jsonl"
    local ev = events(trace)
    local fsyncs = { file = 0, dir = 0, manifest = 0 }
    local writes = {}
    local file_sync = {} -- temporary path -> its fsync
    for i, e in ipairs(ev) do
      if e.op == "fsync" then
        local kind = e.path == out_dir and "dir" or e.path == manifest and "manifest"
          or (e.path or ""):match("/%.ctc%-[^/]*%.part$") and "file"
        assert.truthy(kind, "an fsync of " .. tostring(e.path))
        fsyncs[kind] = fsyncs[kind] + 1
        if kind == "file" then
          assert.is_nil(file_sync[e.path], e.path .. " fsynced twice")
          file_sync[e.path] = e
        end
      elseif e.op == "write" and e.path == manifest then
        writes[#writes + 1] = i
      end
    end
    -- 16 recordings, two turns of 8: 16 + 2 + 2 fsyncs, where each recording alone took 3
    assert.same({ file = 16, dir = 2, manifest = 2 }, fsyncs)
    assert.equal(2, #writes)
    for _, w in ipairs(writes) do
      local names = ev[w].files
      assert.equal(8, #names)
      local renames, tids, synced_by = {}, {}, 0
      for _, name in ipairs(names) do
        -- its rename, before the write
        local r
        for i = w - 1, 1, -1 do
          if ev[i].op == "rename" and ev[i].to_path == out_dir .. "/" .. name then r = ev[i] break end
        end
        assert.truthy(r, name .. " was not renamed before its manifest line")
        renames[#renames + 1] = r
        -- the temporary file's fsync ended before the rename began
        local f = file_sync[r.from_path]
        assert.truthy(f, name .. ": its temporary file was never fsynced")
        assert.is_true(f.to < r.from, name .. ": renamed before its own fsync ended")
        if not tids[f.tid] then
          tids[f.tid] = true
          synced_by = synced_by + 1
        end
        -- the directory's fsync between the rename and the write
        local dir_synced = false
        for i = 1, w - 1 do
          if ev[i].op == "fsync" and ev[i].path == out_dir and ev[i].from > r.to and ev[i].to < ev[w].from then
            dir_synced = true
          end
        end
        assert.is_true(dir_synced, name .. ": its line was written before the directory's fsync")
      end
      -- the turn's renames all come after all the turn's file fsyncs (fsync them all, then rename)
      for _, r in ipairs(renames) do
        for _, q in ipairs(renames) do
          assert.is_true(file_sync[q.from_path].to < r.from,
                         "a rename of the turn began before another file of the turn was fsynced")
        end
      end
      -- and those fsyncs ran in threads of their own, not one after another on the scheduler's
      assert.is_true(synced_by >= 2, "the turn's 8 file fsyncs all ran on one thread")
      -- and the manifest's fsync right after the write, on the same thread
      local after
      for i = w + 1, #ev do
        if ev[i].tid == ev[w].tid then after = ev[i] break end
      end
      assert.truthy(after, "nothing after the manifest write")
      assert.same({ "fsync", manifest }, { after.op, after.path })
    end
    assert.equal(16, #j.lines(manifest))
  end)

  it("a temporary file whose fsync fails fails only its recording: removed, never renamed, no line", function()
    if SEQUENTIAL then
      pending("plain Lua 5.1: one recording after another")
      return
    end
    local now = os.time()
    s:post("/_sim/seed", { count = 12, start_time = now - DAY, end_time = now - 60, recorded = true,
                           recording_bytes = 4096 })
    -- the first temporary file the run asks to make durable gets EIO from its fsync (a disk error):
    -- the real fsync_all runs, its answer for that one path is replaced
    local real = core.fsync_all
    local victim
    core.fsync_all = function(paths, threads)
      local errs, failed = real(paths, threads)
      for i, p in ipairs(paths) do
        if not victim and p:match("/%.ctc%-[^/]*%.part$") then
          victim = p
          errs[i] = "could not sync " .. p .. ": Input/output error"
          failed = failed + 1
        end
      end
      return errs, failed
    end
    local c = s:client()
    local ok, summary, err = pcall(c.archive_recordings, c, { start_time = now - DAY, end_time = now,
                                                             dir = dir .. "/out", concurrency = 8,
                                                             layout = "flat" })
    core.fsync_all = real
    assert.is_true(ok, tostring(summary))
    assert.truthy(summary, err and err.message)
    assert.truthy(victim, "no temporary file went through core.fsync_all")
    assert.equal(11, summary.downloaded)
    assert.equal(1, #summary.failed)
    local e = summary.failed[1].err
    assert.equal("io", e.kind)
    assert.is_false(e.retryable)
    assert.truthy(e.message:find("could not be made durable", 1, true), e.message)
    assert.truthy(e.message:find("Input/output error", 1, true), e.message)
    -- the temporary file is gone, the recording's name is not there, its id is not in the manifest
    assert.equal("missing", core.file_kind(victim))
    local names = {}
    for _, name in ipairs(j.tree(dir .. "/out")) do
      assert.falsy(name:match("%.ctc%-[^/]*%.part$"), "a temporary file was left: " .. name)
      names[name] = true
    end
    local lines = j.lines(dir .. "/out/manifest.jsonl")
    assert.equal(11, #lines)
    local listed = {}
    for _, line in ipairs(lines) do
      local m = json.decode(line)
      assert.truthy(names[m.file], m.file)
      listed[tostring(m.id)] = true
    end
    assert.is_nil(listed[tostring(summary.failed[1].id)])
    local wavs = 0
    for name in pairs(names) do
      if name:match("%.wav$") then wavs = wavs + 1 end
    end
    assert.equal(11, wavs)
    -- and the next run fetches just that one
    local again = assert(c:archive_recordings { start_time = now - DAY, end_time = now, dir = dir .. "/out",
                                                concurrency = 8, layout = "flat" })
    assert.same({ 1, 11, 0 }, { again.downloaded, again.skipped, #again.failed })
    assert.equal(12, #j.lines(dir .. "/out/manifest.jsonl"))
  end)

  it("download_recording still fsyncs its file in C, on its own thread, before the rename", function()
    if not have_strace() then
      pending("strace is not usable here")
      return
    end
    local now = os.time()
    s:post("/_sim/seed", { count = 1, start_time = now - 7200, end_time = now - 3600, recorded = true,
                           recording_bytes = 4096 })
    local script = j.script(dir, "child.lua", ([[
local clicktocall = require "clicktocall"
local c = assert(clicktocall.new { base_url = %q, app_secret = %q, user_data = %q })
local rec
for r in c:records { start_time = %d, end_time = %d } do rec = r end
local ok, info = c:download_recording(rec, %q)
io.write(ok and ("%%d"):format(info.bytes) or tostring(info))
]]):format(s.base_url, s.secret, s.user_data, now - DAY, now, dir .. "/out/one.wav"))
    local trace = dir .. "/trace"
    local out = j.shell(("strace -f -qq -s 1000 -o '%s' -e trace=open,openat,rename,renameat,renameat2,"
      .. "fsync,fdatasync,write %s '%s' 2>&1"):format(trace, j.LUA, script))
    assert.equal("4096", out)
    local synced, renamed
    for _, e in ipairs(events(trace)) do
      if e.op == "fsync" and (e.path or ""):match("/%.ctc%-[^/]*%.part$") then
        assert.is_nil(synced, "the file was fsynced twice")
        synced = e
      elseif e.op == "rename" and e.to_path == dir .. "/out/one.wav" then
        renamed = e
      end
    end
    assert.truthy(synced, "the temporary file was never fsynced")
    assert.truthy(renamed, "never renamed into place")
    assert.equal(renamed.from_path, synced.path)
    assert.equal(renamed.tid, synced.tid)
    assert.is_true(synced.to < renamed.from)
  end)

  it("a dated folder made by the run is made durable in dir before any line names a file in it", function()
    if SEQUENTIAL or not have_strace() then
      pending(SEQUENTIAL and "plain Lua 5.1: one recording after another" or "strace is not usable here")
      return
    end
    local now = os.time()
    s:post("/_sim/seed", { count = 3, start_time = now - 7200, end_time = now - 3600, recorded = true,
                           recording_bytes = 4096 })
    local script = child(dir, s, now - DAY, now, false, "date")
    local trace = dir .. "/trace"
    local out = j.shell(("strace -f -qq -s 100000 -o '%s' -e trace=open,openat,mkdir,mkdirat,rename,renameat,"
      .. "renameat2,fsync,fdatasync,write %s '%s' 2>&1"):format(trace, j.LUA, script))
    assert.equal("3|0", out)
    local out_dir, manifest = dir .. "/out", dir .. "/out/manifest.jsonl"
    local made, parent_synced, first_line
    for i, e in ipairs(events(trace)) do
      if e.op == "mkdir" and e.path:find(out_dir .. "/", 1, true) == 1 then
        made = made or i
      elseif made and e.op == "fsync" and e.path == out_dir then
        parent_synced = parent_synced or i
      elseif e.op == "write" and e.path == manifest then
        first_line = first_line or i
      end
    end
    assert.truthy(made, "no dated folder was made")
    assert.truthy(first_line, "no manifest line was written")
    assert.truthy(parent_synced, "dir was never fsynced after the dated folder was made")
    assert.is_true(parent_synced < first_line)
  end)

  it("a manifest that cannot take a turn's lines at once keeps those that fit, each whole (EFBIG)", function()
    if SEQUENTIAL then
      pending("plain Lua 5.1: one recording after another")
      return
    end
    -- the limit in bytes: sh's ulimit -f counts 512-byte blocks in dash, 1024 in bash; ask it
    j.shell(("sh -c \"trap '' XFSZ; ulimit -f 32; head -c 100000 /dev/zero > '%s/probe' 2>/dev/null\"")
      :format(dir))
    local limit = #j.read(dir .. "/probe")
    os.remove(dir .. "/probe")
    assert.is_true(limit == 16384 or limit == 32768, limit)
    -- room for two or three lines (about 200 bytes each), not for the turn's eight
    local filler = ("x"):rep(limit - 600 - 1) .. "\n"
    j.write(dir .. "/out/manifest.jsonl", filler)
    local now = os.time()
    s:post("/_sim/seed", { count = 8, start_time = now - DAY, end_time = now - 60, recorded = true,
                           recording_bytes = 2048 })
    local script = child(dir, s, now - DAY, now, true)
    local out = j.shell(("sh -c \"trap '' XFSZ; ulimit -f 32; %s '%s'\" 2>&1"):format(j.LUA, script))
    local downloaded, failed = out:match("^(%d+)|(%d+)$")
    assert.truthy(downloaded, out)
    downloaded, failed = tonumber(downloaded), tonumber(failed)
    assert.equal(8, downloaded + failed)
    assert.is_true(downloaded >= 2 and failed >= 1, out)
    local text = j.read(dir .. "/out/manifest.jsonl")
    assert.equal(filler, text:sub(1, #filler))
    local lines = j.lines(dir .. "/out/manifest.jsonl")
    assert.equal(1 + downloaded, #lines)
    for i = 2, #lines do
      assert.truthy(json.decode(lines[i]), lines[i])
    end
    assert.equal("\n", text:sub(-1))
  end)

  it("at concurrency 8 over the real multi, fewer than 3 fsyncs per recording", function()
    if SEQUENTIAL or not have_strace() then
      pending(SEQUENTIAL and "plain Lua 5.1: one recording after another" or "strace is not usable here")
      return
    end
    local now = os.time()
    s:post("/_sim/seed", { count = 40, start_time = now - DAY, end_time = now - 60, recorded = true,
                           recording_bytes = 65536 })
    s:fault { path = "/recordings/*", kind = "latency", ms = 30, count = 1000 }
    local script = child(dir, s, now - DAY, now, false)
    local trace = dir .. "/trace"
    local out = j.shell(("strace -f -qq -c -o '%s' -e trace=fsync,fdatasync %s '%s' 2>&1")
      :format(trace, j.LUA, script))
    assert.equal("40|0", out)
    local calls = 0
    for line in io.lines(trace) do
      local n, name = line:match("^%s*[%d.]+%s+[%d.]+%s+%d+%s+(%d+)%s+%d*%s*(%w+)%s*$")
      if name == "fsync" or name == "fdatasync" then calls = calls + tonumber(n) end
    end
    assert.is_true(calls >= 40, "fewer fsyncs than files: " .. calls)
    assert.is_true(calls < 3 * 40, calls .. " fsyncs for 40 recordings")
    assert.equal(40, #j.lines(dir .. "/out/manifest.jsonl"))
  end)
end)
