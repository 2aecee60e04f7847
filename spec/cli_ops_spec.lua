-- The command line for operations: --metrics-file (Prometheus text for node_exporter's textfile collector,
-- written atomically at the end of balance, archive, sync..., after an error too), --log-format json (one JSON
-- line an event on stderr) and -v with each answer's time. In process, on clicktocall.mock.
local cli = require "clicktocall.cli"
local clicktocall = require "clicktocall"
local mock = require "clicktocall.mock"
local j = require "spec.helpers.jobs"
local cjson = require("cjson").new()

local SECRET = "CANARY-s3cret>>>???~"
local B64 = "Q0FOQVJZLXMzY3JldD4+Pj8/P34="
local UD = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"

local function sink()
  local parts = {}
  return {
    write = function(self, ...)
      for i = 1, select("#", ...) do parts[#parts + 1] = tostring(select(i, ...)) end
      return self
    end,
    flush = function() end,
    text = function() return table.concat(parts) end,
  }
end

local function value(text, series)
  for line in (text or ""):gmatch("[^\n]+") do
    local name, v = line:match("^(.-) (%S+)$")
    if name == series then return tonumber(v) end
  end
  return nil
end

local function promtool_clean(path)
  local out = j.shell(("promtool check metrics < '%s' 2>&1; echo \"exit=$?\""):format(path))
  assert.equal("exit=0\n", out, "promtool check metrics:\n" .. out)
end

describe("clicktocall --metrics-file, --log-format json, -v", function()
  local provider, out, err, dir

  local function run(args)
    out, err = sink(), sink()
    local code = cli.main(args, {
      stdout = out, stderr = err, isatty = function() return false end,
      getenv = function(k)
        return ({ CLICKTOCALL_BASE_URL = "http://mock", CLICKTOCALL_APP_SECRET = SECRET,
                  CLICKTOCALL_USER_DATA = UD, HOME = "/nonexistent" })[k]
      end,
      client_options = { transport = provider.transport, sleep = provider.sleep },
    })
    for _, s in ipairs { SECRET, B64 } do
      assert.is_nil(out:text():find(s, 1, true))
      assert.is_nil(err:text():find(s, 1, true))
    end
    return code
  end

  before_each(function()
    provider = mock.new { user_data = UD, secret = SECRET }
    dir = j.mkdtemp()
  end)

  after_each(function()
    j.rmtree(dir)
  end)

  it("balance --metrics-file: the balance and the call, whole in the file, clean for promtool", function()
    local path = dir .. "/ctc_balance.prom"
    assert.equal(0, run { "balance", "--metrics-file", path })
    assert.equal("6152\n", out:text())
    local text = j.read(path)
    assert.equal(6152, value(text, "clicktocall_balance_seconds"))
    assert.equal(1, value(text, 'clicktocall_calls_total{op="balance",outcome="ok"}'))
    assert.equal(1, value(text, 'clicktocall_requests_total{op="balance",outcome="ok"}'))
    assert.same({ "ctc_balance.prom" }, j.tree(dir))
    promtool_clean(path)
  end)

  it("after an error: the outcome by kind, the exit code of the error", function()
    local path = dir .. "/ctc.prom"
    provider:fail("balance", "api_error")
    assert.equal(1, run { "--metrics-file", path, "balance" })
    local text = j.read(path)
    assert.equal(1, value(text, 'clicktocall_calls_total{op="balance",outcome="api"}'))
    assert.is_nil(value(text, "clicktocall_balance_seconds"))
    promtool_clean(path)
    provider:fail("balance", 503, 3)
    assert.equal(4, run { "--metrics-file", path, "balance" })
    text = j.read(path)
    assert.equal(1, value(text, 'clicktocall_calls_total{op="balance",outcome="http"}'))
    assert.equal(2, value(text, 'clicktocall_retries_total{op="balance",reason="http"}'))
    promtool_clean(path)
  end)

  it("archive --metrics-file: recordings failed and expiring within 24 h, for an alert", function()
    local now = os.time()
    provider:seed_records(3, { start_time = clicktocall.format_time(now - 6.5 * 86400),
                               end_time = clicktocall.format_time(now - 6.5 * 86400 + 60), recorded = true })
    provider:fail("download", 503, 3) -- the first recording: three attempts fail
    local path = dir .. "/ctc_archive.prom"
    os.execute("mkdir '" .. dir .. "/calls'")
    assert.equal(5, run { "archive", "--from", "7d", "--dir", dir .. "/calls", "--concurrency", "1",
                          "--metrics-file", path })
    local text = j.read(path)
    assert.equal(1, value(text, 'clicktocall_job_runs_total{job="archive",outcome="ok"}'))
    assert.equal(2, value(text, 'clicktocall_archive_recordings_total{result="downloaded"}'))
    assert.equal(1, value(text, 'clicktocall_archive_recordings_total{result="failed"}'))
    assert.equal(1, value(text, "clicktocall_archive_expiring_recordings"))
    assert.equal(1, value(text, "clicktocall_archive_failed_recordings"))
    promtool_clean(path)
  end)

  it("sync --metrics-file: delivered, the cursor and the lag", function()
    local now = os.time()
    provider:seed_records(4, { start_time = clicktocall.format_time(now - 3000),
                               end_time = clicktocall.format_time(now - 2000) })
    local path = dir .. "/ctc_sync.prom"
    assert.equal(0, run { "sync", "--state", dir .. "/state.json", "--since", "1h", "--metrics-file", path, "-q" })
    local text = j.read(path)
    assert.equal(4, value(text, 'clicktocall_sync_records_total{result="delivered"}'))
    assert.is_true(value(text, "clicktocall_sync_through_timestamp_seconds") >= now)
    assert.is_true(value(text, "clicktocall_sync_lag_seconds") >= 0)
    promtool_clean(path)
  end)

  it("a metrics file that cannot be written: one sentence, exit 1, the command's output given", function()
    assert.equal(1, run { "balance", "--metrics-file", dir .. "/missing/ctc.prom" })
    assert.equal("6152\n", out:text())
    assert.matches("^clicktocall balance: could not write the metrics to " .. dir:gsub("%p", "%%%0")
                   .. "/missing/ctc%.prom: [^\n]+%.\n$", err:text())
  end)

  it("--log-format json: one JSON line an event on stderr, with op and timing", function()
    provider:fail("balance", 503)
    assert.equal(0, run { "--log-format", "json", "balance" })
    assert.equal("6152\n", out:text())
    local types = {}
    for line in err:text():gmatch("[^\n]+") do
      local e = cjson.decode(line)
      types[#types + 1] = e.event
      assert.equal("balance", e.op)
      assert.equal("POST", e.method)
      if e.event == "response" then assert.is_number(e.elapsed) end
      if e.event == "retry" then assert.is_number(e.delay) end
    end
    assert.same({ "request", "response", "retry", "request", "response" }, types)
    assert.equal(2, run { "--log-format", "xml", "balance" })
  end)

  it("-v: each answer with its time, each retry with its wait", function()
    provider:fail("balance", 503)
    assert.equal(0, run { "-v", "balance" })
    local text = err:text()
    assert.matches("clicktocall: response POST http://mock/management/customer/isallow 503 attempt 1 %(%d+%.%d%d%d s%)"
                   , text)
    assert.matches("clicktocall: retry POST [^\n]+; again in %d+%.%d%d%d s\n", text)
    assert.matches("clicktocall: response POST [^\n]+ 200 attempt 2 %(%d+%.%d%d%d s%)\n", text)
  end)
end)
