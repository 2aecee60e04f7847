-- Ctrl-C on the command (docs/CLI.md: exit 130): a real SIGINT sent to bin/clicktocall once it is provably
-- under way (a line it wrote), against the simulator slowed down so that the signal lands mid-run. The
-- interpreter's hook raises "interrupted!" in whatever Lua code runs next; the library passes it on,
-- releasing its lock and removing its temporary files, and the command says so in one line: no path of
-- ours, no traceback.
-- The last spec is the library's side over the libcurl multi: an interrupt raised in on_file while other
-- transfers are in flight. (spec/interrupt_spec.lua has the rest of the library's side, with no server.)
-- #noasan: the command is another process, never under the sanitizer's runtime.
local cli = require "spec.helpers.cli"
local sim = require "spec.helpers.sim"
local core = require "clicktocall.core"
local clicktocall = require "clicktocall"

local function lines(text)
  local t = {}
  for l in text:gmatch("([^\n]*)\n") do
    t[#t + 1] = l
  end
  return t
end

-- waits until pred() is true (polling, never a fixed sleep) -> true, or fails naming what it waited for
local function wait_for(what, pred, seconds)
  local deadline = core.now() + (seconds or 60)
  while not pred() do
    assert(core.now() < deadline, "timed out waiting for " .. what)
    core.sleep(0.02)
  end
  return true
end

-- every file left under dir whose name is one of our temporary ones
local function temp_files(dir)
  local p = assert(io.popen("find '" .. dir .. "' -name '.ctc-*.part' 2>/dev/null"))
  local out = p:read("*a")
  p:close()
  return lines(out)
end

-- SIGINT once `ready(stdout, stderr)` holds; the job's result once it exited
local function interrupt(job, what, ready)
  wait_for(what, function()
    assert(not job.done(), "the command ended before it was interrupted: " .. select(2, job.output()))
    return ready(job.output())
  end)
  job.signal("INT")
  wait_for("the command to exit", job.done)
  return job.result()
end

-- exit 130; stderr's last line is the one sentence, and no line shows a path of ours or the raw message
local function says_interrupted(r, cmd)
  assert.equal(130, r.code, r.stderr)
  local err = lines(r.stderr)
  assert.equal("clicktocall " .. cmd .. ": interrupted.", err[#err], r.stderr)
  local n = 0
  for _, l in ipairs(err) do
    if l:find("interrupt", 1, true) then n = n + 1 end
    assert.is_nil(l:find(".lua", 1, true), l)
    assert.is_nil(l:find("traceback", 1, true), l)
    assert.is_nil(l:find("interrupted!", 1, true), l)
  end
  assert.equal(1, n, r.stderr)
end

describe("Ctrl-C on the command #noasan", function()
  local s, env

  lazy_setup(function()
    s = assert(sim.start())
    env = cli.sim_env(s)
  end)

  lazy_teardown(function()
    if s then
      s:stop()
    end
    cli.cleanup()
  end)

  before_each(function()
    s:reset()
  end)

  it("archive: exits 130 with one line mid-download, no temporary file left; the next run completes", function()
    local now = os.time()
    s:seed { count = 20, start_time = now - 3600, end_time = now - 60 }
    s:options { recording_latency_ms = 300 }
    local dir = cli.tmpdir()
    local args = { "archive", "--from", "2h", "--dir", dir, "--concurrency", "2" }
    local r = interrupt(cli.spawn(args, { env = env }), "the first recording archived", function(_, err)
      return err:find("archived 1/", 1, true) ~= nil
    end)
    says_interrupted(r, "archive")
    assert.equal("", r.stdout) -- no summary: the run did not finish
    assert.same({}, temp_files(dir))
    s:options { recording_latency_ms = 0 }
    local again = cli.run(args, { env = env })
    assert.equal(0, again.code, again.stderr)
    local archived, skipped = again.stdout:match("^archived (%d+), skipped (%d+)")
    assert.equal(18, tonumber(archived) + tonumber(skipped)) -- ids divisible by 10 have no recording
    assert.is_true(tonumber(skipped) >= 1)
  end)

  it("archive: a real Ctrl-C in a terminal (tmux) leaves the bar's line and says so on a line of its own", function()
    local now = os.time()
    s:seed { count = 20, start_time = now - 3600, end_time = now - 60 }
    s:options { recording_latency_ms = 300 }
    local t = cli.tmux({ "archive", "--from", "2h", "--dir", cli.tmpdir(), "--concurrency", "1" }, { env = env })
    finally(function() t:kill() end)
    local mid, seen = t:wait_for("%] %d+/18 recordings", 30)
    assert.truthy(mid, seen)
    assert(os.execute("tmux -L " .. t.sock .. " send-keys C-c")) -- SIGINT to the terminal's foreground group
    local done, text = t:wait_for("__EXIT__%d+", 30)
    assert.truthy(done, text)
    assert.matches("__EXIT__130", done)
    assert.matches("/18 recordings[^\n]*\nclicktocall archive: interrupted%.\n__EXIT__", done)
    assert.is_nil(done:find(".lua", 1, true))
  end)

  it("archive: exits 130 while it lists the recordings before the first download", function()
    local now = os.time()
    s:seed { count = 250, start_time = now - 3600, end_time = now - 60 }
    s:options { latency_ms = 300 }
    local dir = cli.tmpdir()
    local job = cli.spawn({ "-v", "archive", "--from", "2h", "--dir", dir }, { env = env })
    local r = interrupt(job, "the first page listed", function(_, err)
      return err:find("clicktocall: response POST", 1, true) ~= nil
    end)
    says_interrupted(r, "archive")
    assert.is_nil(r.stderr:find("GET", 1, true)) -- not one recording asked for: the listing never went on
    assert.same({}, temp_files(dir))
  end)

  it("sync: exits 130 between pages, no temporary state file left", function()
    local now = os.time()
    s:seed { count = 250, start_time = now - 3600, end_time = now - 60 }
    s:options { latency_ms = 300 }
    local dir = cli.tmpdir()
    local r = interrupt(cli.spawn({ "sync", "--state", dir .. "/state.json", "--since", "2h" }, { env = env }),
                        "the first record delivered", function(out)
      return out:find("\n", 1, true) ~= nil
    end)
    says_interrupted(r, "sync")
    assert.is_true(#lines(r.stdout) >= 1)
    assert.same({}, temp_files(dir))
  end)

  it("records, one page after another and in slices (--concurrency 4): exits 130 with one line", function()
    local now = os.time()
    s:seed { count = 250, start_time = now - 3600, end_time = now - 60 }
    s:options { latency_ms = 300 }
    for _, extra in ipairs { {}, { "--concurrency", "4" } } do
      local args = { "-v", "records", "--from", "2h", "--format", "jsonl" }
      for _, a in ipairs(extra) do args[#args + 1] = a end
      local r = interrupt(cli.spawn(args, { env = env }), "the first page answered", function(_, err)
        return err:find("clicktocall: response POST", 1, true) ~= nil
      end)
      says_interrupted(r, "records")
    end
  end)

  it("the library over the multi: an interrupt in on_file stops the run, lock released, no file from the "
     .. "transfers in flight; the next run completes", function()
    local dir = cli.tmpdir()
    local now = os.time()
    s:seed { count = 40, start_time = now - 3600, end_time = now - 60 }
    s:options { recording_latency_ms = 100 }
    local client = assert(clicktocall.new { base_url = s.base_url, app_secret = s.secret, user_data = s.user_data })
    finally(function() client:close() end)
    local files = 0
    local INT = "spec.lua:1: interrupted!"
    local ok, e = pcall(client.archive_recordings, client, {
      start_time = now - 7200, end_time = now, dir = dir, concurrency = 8,
      on_file = function() files = files + 1 if files == 3 then error(INT, 0) end end,
    })
    assert.is_false(ok)
    assert.equal(INT, e)
    assert.equal(3, files)
    local lk = assert(core.lock_file(dir .. "/.clicktocall.lock"))
    lk:unlock()
    assert.same({}, temp_files(dir))
    s:options { recording_latency_ms = 0 }
    local summary = assert(client:archive_recordings { start_time = now - 7200, end_time = now, dir = dir })
    assert.same({}, summary.failed)
    assert.equal(36, summary.downloaded + summary.skipped) -- ids divisible by 10 have no recording
  end)
end)
