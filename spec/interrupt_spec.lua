-- Ctrl-C: the standalone interpreters (lua, luajit) turn SIGINT into the error "interrupted!" (with a
-- position: "batch.lua:344: interrupted!") raised wherever Lua code runs next. The library never makes it an
-- error value, a failed recording or a failed run: every pcall that protects a transport, a hook, a sleep
-- or a batch task raises it again, as it is, once the job's lock is released and its temporary files are
-- removed. Here a transport, a hook or a sleep raises the interrupt itself; spec/cli_interrupt_spec.lua
-- sends a real SIGINT to the command.
local j = require "spec.helpers.jobs"
local mc = require "spec.helpers.client"
local core = require "clicktocall.core"
local errors = require "clicktocall.errors"
local batch = require "clicktocall.batch"

local INT = "spec.lua:1: interrupted!" -- what lua.c's hook raises: luaL_error with the position of the code it hit

-- f() must raise the interrupt itself, unchanged -> true
local function raises_interrupt(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "returned instead of raising the interrupt")
  assert.equal("string", type(e), "raised " .. tostring(e) .. " instead of the interrupt")
  assert.equal(INT, e)
  return true
end

-- no temporary file of ours anywhere under dir
local function no_temp(dir)
  for _, name in ipairs(j.tree(dir)) do
    assert.is_nil(name:match("%.ctc%-[^/]*%.part$"), "left behind: " .. name)
  end
end

-- the lock at path is free: another run could take it now
local function lock_free(path)
  local lk, msg = core.lock_file(path)
  assert.truthy(lk, msg)
  lk:unlock()
end

describe("errors.is_interrupt and errors.pcall", function()
  it("knows the interrupt with and without its position, and nothing else", function()
    for _, v in ipairs { "interrupted!", "x.lua:344: interrupted!",
                         "bin/../lua/clicktocall/batch.lua:344: interrupted!", '[string "loop"]:3: interrupted!' } do
      assert.is_true(errors.is_interrupt(v), v)
    end
    for _, v in ipairs { "interrupted", "on_file: interrupted!", "interrupted! again", "", 130, true,
                         { message = "interrupted!" }, errors.new("protocol", "interrupted!") } do
      assert.is_false(errors.is_interrupt(v), tostring(v))
    end
    assert.is_false(errors.is_interrupt(nil))
  end)

  it("pcall passes an interrupt on and returns everything else as pcall does", function()
    assert.is_true(raises_interrupt(errors.pcall, error, INT, 0))
    assert.same({ false, "x.lua:1: boom" }, { errors.pcall(error, "x.lua:1: boom", 0) })
    assert.same({ true, 1, nil, 3 }, { errors.pcall(function() return 1, nil, 3 end) })
    local t = {}
    assert.same({ false, t }, { errors.pcall(error, t) })
  end)
end)

describe("an interrupt in a call", function()
  it("raised by the transport goes through balance, not as nil, err; nothing retried", function()
    local n = 0
    local client = mc.new { transport = function() n = n + 1 error(INT, 0) end }
    raises_interrupt(client.balance, client)
    assert.equal(1, n)
  end)

  it("raised by on_event goes through the call it observes", function()
    local client = mc.new { on_event = function(e) if e.type == "response" then error(INT, 0) end end }
    raises_interrupt(client.balance, client)
  end)

  it("raised by sleep during a backoff goes through, not as the error it was waiting to retry", function()
    local client, provider = mc.new { retries = 2, sleep = function() error(INT, 0) end }
    provider:fail("balance", { status = 503 })
    raises_interrupt(client.balance, client)
    assert.equal(1, provider:count())
  end)

  it("reaches the records iterator's caller as the interrupt, not an error object", function()
    local _, provider = mc.new()
    provider:seed_records(250)
    for _, concurrency in ipairs { 1, 4 } do
      local pages = 0
      local client = mc.new { transport = function(req)
        pages = pages + 1
        if pages == 2 then error(INT, 0) end
        return provider.transport(req)
      end }
      local now = os.time()
      local got = 0
      raises_interrupt(function()
        for _ in client:records { start_time = now - 86400 * 30, end_time = now, concurrency = concurrency } do
          got = got + 1
        end
      end)
      assert.equal(2, pages)
    end
  end)

  it("in download_recording leaves no file, the temporary one removed first", function()
    local dir = j.mkdtemp()
    finally(function() j.rmtree(dir) end)
    local client = mc.new { retries = 0, transport = function(req)
      assert(req.sink(("x"):rep(1000)))
      error(INT, 0)
    end }
    raises_interrupt(client.download_recording, client, "http://rec.example.com/1.wav", dir .. "/call.wav")
    assert.same({}, j.tree(dir))
  end)

  it("in a mock fault function is passed on by the mock too", function()
    local client, provider = mc.new()
    provider:fail("balance", function() error(INT, 0) end)
    raises_interrupt(client.balance, client)
  end)
end)

describe("an interrupt in a job", function()
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  it("archive: raised by on_file stops the run, lock released, no temporary file, nothing lost", function()
    local client, provider = j.client()
    local now = os.time()
    for i = 1, 5 do provider:seed_records { { callEndTime = now - i * 600 } } end
    local files = 0
    raises_interrupt(client.archive_recordings, client, {
      start_time = now - 86400, end_time = now, dir = dir,
      on_file = function() files = files + 1 if files == 2 then error(INT, 0) end end,
    })
    assert.equal(2, files) -- not one failed recording among others: the run stopped there
    lock_free(dir .. "/.clicktocall.lock")
    no_temp(dir)
    assert.equal(1, #j.lines(dir .. "/manifest.jsonl"))
    local summary = assert(client:archive_recordings { start_time = now - 86400, end_time = now, dir = dir })
    assert.equal(4, summary.downloaded)
    assert.equal(1, summary.skipped)
  end)

  it("archive: raised by the transport mid-download stops the run, no temporary file", function()
    local _, provider = j.client()
    local now = os.time()
    provider:seed_records { { callEndTime = now - 600 }, { callEndTime = now - 1200 } }
    local downloads = 0
    local c2 = mc.new { retries = 0, transport = function(req)
      if req.sink then
        downloads = downloads + 1
        assert(req.sink(("x"):rep(5000)))
        error(INT, 0)
      end
      return provider.transport(req)
    end }
    raises_interrupt(c2.archive_recordings, c2, { start_time = now - 86400, end_time = now, dir = dir })
    assert.equal(1, downloads)
    lock_free(dir .. "/.clicktocall.lock")
    no_temp(dir)
  end)

  it("sync: raised by on_record stops the run, lock released, no temporary file", function()
    local client, provider = j.client()
    provider:seed_records(150)
    local seen = 0
    raises_interrupt(client.sync, client, { state = dir .. "/state.json", since = os.time() - 86400 * 2,
                                            on_record = function() seen = seen + 1 if seen == 120 then
                                              error(INT, 0) end return true end })
    assert.equal(120, seen)
    lock_free(dir .. "/state.json.lock")
    no_temp(dir)
  end)

  it("sync: raised between the state's fsync and its rename leaves no temporary file, the old state kept",
     function()
    local client, provider = j.client()
    provider:seed_records(150)
    local state = dir .. "/state.json"
    local since = os.time() - 86400 * 2
    assert(client:sync { state = state, since = since, on_record = function() return true end })
    local before = j.read(state)
    provider:seed_records(5)
    local real = core.file_sink
    finally(function() core.file_sink = real end)
    core.file_sink = function(path)
      local sink, msg, why = real(path)
      if not sink then return nil, msg, why end
      return {
        write = function(_, s) return sink:write(s) end,
        abort = function() return sink:abort() end,
        finish = function()
          assert(sink:finish())
          error(INT, 0) -- as when SIGINT comes during the fsync: the hook fires as finish returns
        end,
      }
    end
    raises_interrupt(client.sync, client, { state = state, on_record = function() return true end })
    core.file_sink = real
    lock_free(state .. ".lock")
    no_temp(dir)
    assert.equal(before, j.read(state))
  end)

  it("sync: raised by the transport on a page stops the run the same way", function()
    local _, provider = j.client()
    provider:seed_records(150)
    local pages = 0
    local client = mc.new { transport = function(req)
      pages = pages + 1
      if pages == 2 then error(INT, 0) end
      return provider.transport(req)
    end }
    raises_interrupt(client.sync, client, { state = dir .. "/state.json", since = os.time() - 86400 * 2,
                                            on_record = function() return true end })
    lock_free(dir .. "/state.json.lock")
    no_temp(dir)
  end)
end)

describe("an interrupt in batch.run", function()
  it("one after another: stops the run, never one item's failure", function()
    local t = require("clicktocall.transport.func").new(function() end)
    local done = {}
    raises_interrupt(batch.run, nil, t, { 1, 2, 3 }, function(item)
      if item == 2 then error(INT, 0) end
      done[#done + 1] = item
    end)
    assert.same({ 1 }, done)
  end)

  it("with libcurl: stops the run, the multi closed, a download it finished but its task never saw removed",
     function()
    local dir = j.mkdtemp()
    finally(function() j.rmtree(dir) end)
    local saved = core.curl_multi
    local closed = false
    -- every transfer added completes at the next wait, in the order added; a download's file is whole
    core.curl_multi = function()
      local queue = {}
      return {
        add = function(_, token, request, tmp)
          queue[#queue + 1] = { token, request, tmp }
          return true
        end,
        wait = function()
          local done = {}
          for i, p in ipairs(queue) do
            if p[3] then j.write(p[3], "whole") end
            done[i] = { p[1], { status = 200, headers = {}, bytes = 5, sha256 = "x" } }
          end
          queue = {}
          return done
        end,
        count = function() return #queue end,
        close = function() closed = true end,
      }
    end
    finally(function() core.curl_multi = saved end)
    local t = assert(require("clicktocall.transport.curl").new {})
    local sched = t:scheduler(2)
    if not sched then
      return -- plain Lua 5.1: one after another, covered above
    end
    local tmp = dir .. "/.ctc-1-2-3.part"
    local after = {}
    raises_interrupt(batch.run, sched, t, { "sender", "downloader" }, function(item, io)
      if item == "sender" then
        assert(io:send { method = "GET", url = "http://x/" })
        error(INT, 0) -- resumed before the downloader in the same turn
      end
      assert(io:download({ method = "GET", url = "http://x/1.wav" }, tmp))
      after[#after + 1] = item
    end)
    assert.is_true(closed)
    assert.same({}, after)
    assert.is_nil(j.read(tmp))
  end)
end)

describe("an interrupt in records{ concurrency } over the multi", function()
  it("reaches the caller as the interrupt, the scheduler closed with its transfers", function()
    local clicktocall = require "clicktocall"
    local mock = require "clicktocall.mock"
    local provider = mock.new {}
    provider:seed_records(400)
    local saved = core.curl_multi
    local closed, waits = false, 0
    -- answers from the mock, one transfer per wait; the third wait is where Ctrl-C lands
    core.curl_multi = function()
      local queue = {}
      return {
        add = function(_, token, request) queue[#queue + 1] = { token, request } return true end,
        wait = function()
          waits = waits + 1
          if waits == 3 then error(INT, 0) end
          local p = table.remove(queue, 1)
          if not p then return {} end
          return { { p[1], provider.transport(p[2]) } }
        end,
        count = function() return #queue end,
        close = function() closed = true end,
      }
    end
    finally(function() core.curl_multi = saved end)
    local client = assert(clicktocall.new { base_url = "http://mock", app_secret = "TEST", user_data = j.USER_DATA })
    finally(function() client:close() end)
    if not require("clicktocall.transport.curl").new({}):scheduler(1) then
      return -- plain Lua 5.1: slice after slice through the network, no scheduler
    end
    local now = os.time()
    local it, state, ctl = client:records { start_time = now - 86400 * 30, end_time = now, concurrency = 4 }
    raises_interrupt(function()
      for _ in it, state, ctl do end -- no 5.4 closing value here: the iterator closes the scheduler itself
    end)
    assert.equal(3, waits)
    assert.is_true(closed)
  end)
end)

describe("cli.main and an interrupt", function()
  local cli = require "clicktocall.cli"
  local mock = require "clicktocall.mock"
  local UD = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"

  local function buffer()
    local parts = {}
    return {
      write = function(self, ...)
        for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
        return self
      end,
      flush = function() end,
      text = function() return table.concat(parts) end,
    }
  end

  -- cli.main(args) with a transport that raises the interrupt at the n-th request -> code, stderr, requests
  local function main(args, n)
    local provider = mock.new { user_data = UD, secret = "S" }
    provider:seed_records(250, { start_time = os.time() - 3000, end_time = os.time() - 60 })
    local requests = 0
    local out, err = buffer(), buffer()
    local code = cli.main(args, {
      stdout = out, stderr = err, isatty = function() return false end,
      getenv = function(k)
        return ({ CLICKTOCALL_BASE_URL = "http://mock", CLICKTOCALL_APP_SECRET = "S",
                  CLICKTOCALL_USER_DATA = UD, HOME = "/nonexistent" })[k]
      end,
      client_options = { sleep = provider.sleep, transport = function(req)
        requests = requests + 1
        if requests == n then error(INT, 0) end
        return provider.transport(req)
      end },
    })
    return code, err:text(), requests
  end

  it("exits 130 with one line naming the command, for archive, sync and records", function()
    local dir = j.mkdtemp()
    finally(function() j.rmtree(dir) end)
    for _, case in ipairs {
      { "archive", { "archive", "--from", "1h", "--dir", dir }, 9 }, -- the third download (3 pages listed twice)
      { "archive", { "archive", "--from", "1h", "--dir", dir }, 2 }, -- while it lists the recordings
      { "sync", { "sync", "--state", dir .. "/state.json", "--since", "1h" }, 2 },
      { "records", { "records", "--from", "1h" }, 2 },
    } do
      local code, err, requests = main(case[2], case[3])
      assert.equal(130, code, err)
      local last = err:match("([^\n]*)\n$")
      assert.equal("clicktocall " .. case[1] .. ": interrupted.", last)
      assert.equal(1, select(2, err:gsub("interrupt", "")), err)
      assert.equal(case[3], requests) -- nothing after the interrupt
      no_temp(dir)
    end
  end)
end)
