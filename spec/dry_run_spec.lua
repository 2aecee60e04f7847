-- archive_recordings{ dry_run = true } and sync{ dry_run = true } against the mock provider: they page the
-- window and say what a run would do, writing nothing, calling no hook and taking no lock.
local j = require "spec.helpers.jobs"
local core = require "clicktocall.core"

local HOUR, DAY = 3600, 86400

local function count(provider, op)
  local n = 0
  for _, r in ipairs(provider.requests) do
    if r.op == op then n = n + 1 end
  end
  return n
end

describe("archive_recordings{ dry_run = true }", function()
  local dir
  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  it("says what it would fetch, what is there, what has no recording and what expires within 24 h, and "
     .. "writes nothing", function()
    local client, provider = j.client()
    local now = os.time()
    local recs = provider:seed_records {
      { callEndTime = now - 7 * DAY + 2 * HOUR }, { callEndTime = now - 3 * DAY },
      { callEndTime = now - 2 * HOUR }, { recordFlag = "0", callEndTime = now - HOUR },
    }
    -- one recording archived already (a window that holds only it)
    assert.equal(1, assert(client:archive_recordings { start_time = now - 3 * HOUR, end_time = now - HOUR,
                                                      dir = dir }).downloaded)
    local before, manifest = j.tree(dir), j.read(dir .. "/manifest.jsonl")
    local downloads = count(provider, "download")
    local hooks = 0
    local plan = assert(client:archive_recordings {
      start_time = now - 8 * DAY, end_time = now, dir = dir, dry_run = true,
      on_file = function() hooks = hooks + 1 end, on_plan = function() hooks = hooks + 1 end,
    })
    assert.is_true(plan.dry_run)
    assert.equal(2, plan.to_download)
    assert.equal(1, plan.skipped)
    assert.equal(1, plan.no_recording)
    assert.equal(1, plan.pages)
    -- the listing gives no sizes: bytes counts where known, bytes_unknown the others
    assert.equal(0, plan.bytes)
    assert.equal(2, plan.bytes_unknown)
    assert.equal(1, #plan.expiring)
    assert.equal(recs[1].id, plan.expiring[1].id)
    assert.equal(recs[1].sessionId, plan.expiring[1].sessionId)
    assert.is_true(math.abs(plan.expiring[1].expires_at - (now + 2 * HOUR)) <= 2)
    assert.equal(0, hooks)
    assert.equal(downloads, count(provider, "download"))
    assert.same(before, j.tree(dir))
    assert.equal(manifest, j.read(dir .. "/manifest.jsonl"))
    -- and a real run does what the plan said
    local real = assert(client:archive_recordings { start_time = now - 8 * DAY, end_time = now, dir = dir })
    assert.equal(2, real.downloaded)
    assert.equal(1, real.skipped)
  end)

  it("writes no dated folder, manifest or lock file in an empty directory", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records(3, { start_time = now - DAY, end_time = now - 60 })
    local plan = assert(client:archive_recordings { start_time = now - DAY, end_time = now, dir = dir,
                                                    dry_run = true })
    assert.equal(3, plan.to_download)
    assert.same({}, j.tree(dir))
  end)

  it("takes no lock: it runs while a real archive of the same directory holds it", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records(3, { start_time = now - DAY, end_time = now - 60 })
    local plans = {}
    local summary = assert(client:archive_recordings {
      start_time = now - DAY, end_time = now, dir = dir, concurrency = 1,
      on_file = function()
        -- the real run holds dir's lock here
        plans[#plans + 1] = assert(client:archive_recordings { start_time = now - DAY, end_time = now, dir = dir,
                                                               dry_run = true })
        return true
      end,
    })
    assert.equal(3, summary.downloaded)
    assert.equal(3, #plans)
    -- on_file comes before its manifest line: the first plan still sees all three to fetch, the last one
    assert.equal(3, plans[1].to_download)
    assert.equal(2, plans[3].skipped)
    assert.equal(1, plans[3].to_download)
  end)

  it("refuses a dry_run that is not a boolean, sending nothing", function()
    local client, provider = j.client()
    local s, err = client:archive_recordings { start_time = os.time() - DAY, end_time = os.time(), dir = dir,
                                               dry_run = "yes" }
    assert.is_nil(s)
    assert.equal("argument", err.kind)
    assert.matches("dry_run", err.message)
    assert.equal(0, #provider.requests)
  end)
end)

describe("sync{ dry_run = true }", function()
  local dir, state
  before_each(function()
    dir = j.mkdtemp()
    state = dir .. "/ctc-sync.json"
  end)
  after_each(function() j.rmtree(dir) end)

  it("with no state file: counts what it would deliver and where through would go, creating nothing", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records(120, { start_time = now - 20 * HOUR, end_time = now - 60 })
    local plan = assert(client:sync { state = state, dry_run = true })
    assert.is_true(plan.dry_run)
    assert.equal(120, plan.new)
    assert.equal(0, plan.delivered)
    assert.equal(0, plan.skipped)
    assert.equal(2, plan.pages)
    assert.is_true(math.abs(plan.through - now) <= 5)
    assert.same({}, j.tree(dir))
  end)

  it("with a state: new and already delivered, the state file's bytes unchanged, on_record never called",
     function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records(10, { start_time = now - 30 * 60, end_time = now - 60 })
    assert.equal(10, assert(client:sync { state = state, on_record = function() end }).delivered)
    provider:seed_records(3, { start_time = now - 50, end_time = now - 10 })
    local bytes, before = j.read(state), j.tree(dir)
    local called = 0
    local plan = assert(client:sync { state = state, dry_run = true, on_record = function() called = called + 1 end,
                                      on_page = function() called = called + 1 end })
    assert.equal(3, plan.new)
    assert.equal(10, plan.skipped)
    assert.equal(0, called)
    assert.equal(bytes, j.read(state))
    assert.same(before, j.tree(dir))
    local real = assert(client:sync { state = state, on_record = function() end })
    assert.equal(3, real.delivered)
    assert.equal(10, real.skipped)
  end)

  it("takes no lock: it runs while a real sync of the same state holds it", function()
    local client, provider = j.client()
    local now = os.time()
    provider:seed_records(4, { start_time = now - 30 * 60, end_time = now - 60 })
    local plans = {}
    assert(client:sync { state = state, on_record = function()
      plans[#plans + 1] = assert(client:sync { state = state, dry_run = true })
    end })
    assert.equal(4, #plans)
    assert.equal(4, plans[1].new)
    assert.equal(4, plans[4].new) -- the real run writes its state after the page
    local held = assert(core.lock_file(state .. ".lock"))
    assert.equal(0, assert(client:sync { state = state, dry_run = true }).new)
    held:unlock()
  end)

  it("refuses a dry_run that is not a boolean; a real run still needs on_record", function()
    local client, provider = j.client()
    local s, err = client:sync { state = state, dry_run = 1 }
    assert.is_nil(s)
    assert.equal("argument", err.kind)
    assert.matches("dry_run", err.message)
    s, err = client:sync { state = state, dry_run = false }
    assert.is_nil(s)
    assert.matches("on_record", err.message)
    assert.equal(0, #provider.requests)
  end)
end)
