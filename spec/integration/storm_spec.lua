-- The fault storm (bench/storm.lua) at a small size: several worker processes against the simulator with
-- random faults across every call and job; the storm checks what must hold and exits non-zero when it does not.
-- Also the checks themselves: each can fail (a planted leak fails the run; a broken archive is seen).
local core = require "clicktocall.core"
local storm = require "bench.storm"

local function run(args)
  local p = assert(io.popen("lua5.4 bench/storm.lua " .. args .. " 2>&1"))
  local out = p:read("*a")
  local ok, _, code = p:close()
  return ok and 0 or code, out
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p '" .. d .. "'"))
  return d
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- The storm spawns lua5.4 processes whatever Lua runs busted: run it once, in the plain 5.4 pass (not under
-- the ASan preload, which the children would inherit); the checks' own specs run everywhere.
local preload = os.getenv("LD_PRELOAD") or ""
local storm_it = (_VERSION == "Lua 5.4" and not rawget(_G, "jit") and not preload:find("asan", 1, true))
  and it or pending

describe("the fault storm", function()
  storm_it("400 calls from 3 processes: every check holds, and the summary says so", function()
    local code, out = run("--calls 400 --workers 3")
    assert.is_truthy(out:find("storm summary", 1, true), out)
    assert.are.equal(0, code, out)
    assert.is_truthy(out:find("storm: PASS", 1, true), out)
    assert.is_truthy(out:find("canary hits     0 ", 1, true), out)
    assert.is_truthy(out:find("temp files left 0", 1, true), out)
    -- faults really were injected, and errors really came back
    local nf = tonumber(out:match("faults injected (%d+)"))
    assert.is_true(nf > 50, out)
    assert.is_truthy(out:match("results[^\n]*network=%d"), out)
    assert.is_truthy(out:match("results[^\n]*protocol=%d"), out)
    local placed, lo, hi = out:match("placed by the simulator (%d+), allowed (%d+)%.%.(%d+)")
    assert.is_true(tonumber(placed) >= tonumber(lo) and tonumber(placed) <= tonumber(hi), out)
    -- at this size the request log keeps every request: the dials received are counted there too
    assert.is_truthy(out:find("dial requests received <= successes %+ errors sent%s+ok"), out)
    assert.is_truthy(out:find("dials placed = dial requests processed%s+ok"), out)
    -- archives upload too (the CLI's archive --upload always: PUTs), to a store whose secret key is the same
    -- canary, with the store's faults injected
    assert.is_truthy(out:find("the store was reached %(the canary is its secret key%)%s+ok"), out)
    assert.is_truthy(out:find("the store keeps only whole recordings%s+ok"), out)
    assert.is_truthy(out:match("uploads%s+%d+ by the workers; the store received [1-9]%d* PUTs"), out)
  end)

  storm_it("fails when a worker prints the secret's URL-safe base64", function()
    local code, out = run("--calls 20 --workers 1 --plant_leak 1")
    assert.are_not.equal(0, code, out)
    assert.is_truthy(out:find("canary found nowhere%s+FAIL"), out)
    assert.is_truthy(out:find("storm: FAIL", 1, true), out)
    local kept = out:match("files kept in (%S+)")
    if kept then os.execute("rm -rf '" .. kept .. "'") end
  end)

  it("the canary search covers the raw secret and every base64 form", function()
    local secret = "CANARY-?>?>~~"   -- base64 with '+' and '/' in it
    local forms = storm.canary_forms(secret)
    local b64 = core.base64(secret)
    assert.is_truthy(b64:find("[+/]"))
    for _, s in ipairs { secret, b64, b64:gsub("=+$", ""), (b64:gsub("%+", "-"):gsub("/", "_")),
                         (b64:gsub("%+", "-"):gsub("/", "_"):gsub("=+$", "")) } do
      assert.is_true(storm.leaks(forms, "x" .. s .. "y"), s)
    end
    assert.is_false(storm.leaks(forms, "CANARY-"))
  end)

  it("the archive check sees a temporary file, a stray file, a cut file and a missing one", function()
    local d = tmpdir()
    local good = "abcdefgh"
    local sha = io.popen("printf '%s' " .. good .. " | sha256sum"):read("*a"):match("%x+")
    write(d .. "/a.wav", good)
    write(d .. "/cut.wav", "abc")
    local lines = {}
    for _, f in ipairs { "a.wav", "cut.wav", "gone.wav" } do
      lines[#lines + 1] = ('{"id":1,"file":"%s","bytes":8,"sha256":"%s"}'):format(f, sha)
    end
    write(d .. "/manifest.jsonl", table.concat(lines, "\n") .. "\n")
    write(d .. "/.clicktocall.lock", "")
    local report = { bad = {}, temp = {}, manifest_entries = 0 }
    storm.check_archive(d, report)
    assert.are.equal(0, #report.temp)
    assert.are.equal(2, #report.bad, table.concat(report.bad, "\n"))
    write(d .. "/.ctc-1a2b-3c-1.part", "x")
    write(d .. "/stray.wav", "x")
    report = { bad = {}, temp = {}, manifest_entries = 0 }
    storm.check_archive(d, report)
    assert.are.equal(1, #report.temp)
    assert.are.equal(3, #report.bad, table.concat(report.bad, "\n"))
    os.execute("rm -rf '" .. d .. "'")
  end)

  -- Found by the storm (sync delivered far fewer records than the workers dialled): a dialled call gets its
  -- id when it is placed, its callEndTime when it ends. Version 1's cursor was the highest id delivered, so a
  -- call still in progress whose id is below a shorter, later call that had ended was never delivered.
  -- Version 2's cursor is a time, and each run re-reads the last lookback seconds from maxId 0.
  it("sync delivers a call that ends after a later-dialled call was delivered", function()
    local clicktocall = require "clicktocall"
    local sim = require "spec.helpers.sim"
    local s = assert(sim.start { workers = 1 })
    local state = os.tmpname()
    os.remove(state)
    local ok, err = pcall(function()
      local now = os.time()
      s:seed { times = { now + 3 } }   -- id 1: the longer call, still talking
      s:seed { times = { now - 10 } }  -- id 2: dialled after it, already ended
      local c = assert(clicktocall.new { base_url = s.base_url, app_secret = s.secret, user_data = s.user_data })
      local got = {}
      local function sync_once()
        assert(c:sync { state = state, since = now - 100, on_record = function(rec)
          got[#got + 1] = rec.id
          return true
        end })
      end
      sync_once()
      while os.time() <= now + 4 do core.sleep(0.1) end  -- the longer call has ended now
      sync_once()
      c:close()
      table.sort(got)
      assert.same({ 1, 2 }, got)
    end)
    s:stop()
    os.remove(state)
    os.remove(state .. ".lock")
    assert(ok, err)
  end)
end)
