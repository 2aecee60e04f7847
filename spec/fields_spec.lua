-- Argument errors for people and for programs: every "argument" error of clicktocall.new and of each
-- call says "<call>: <field> ..." (never Lua's "bad argument #1 to 'dial' (field 'caller': ...)") and
-- names the field in err.field, the way the caller wrote it in the table, so a web form can mark it.
local h = require "spec.helpers"
local mc = require "spec.helpers.client"
local j = require "spec.helpers.jobs"
local clicktocall = require "clicktocall"

local DIAL = { caller = "13500000002", callee = "13500000003", seat = "PP1" }
local WINDOW = { start_time = "2026-11-30 00:00:00", end_time = "2026-11-30 12:00:00" }

local function with(t, k, v)
  local c = {}
  for key, val in pairs(t) do c[key] = val end
  c[k] = v
  return c
end

local function without(t, k)
  return with(t, k, nil)
end

local tmp
setup(function() tmp = j.mkdtemp() end)
teardown(function() j.rmtree(tmp) end)

local function noop() return true end

local function new_with(k, v)
  return function()
    local o = { base_url = "https://api.example.com", app_secret = h.SECRET, user_data = h.USER_DATA,
                transport = function() error("nothing may be sent") end }
    o[k] = v
    return clicktocall.new(o)
  end
end

local function iterate(args)
  return function(c)
    local ok, e = pcall(function()
      for _ in c:records(args) do end
    end)
    assert.is_false(ok)
    return nil, e
  end
end

local function archive(args)
  return function(c)
    return c:archive_recordings(args)
  end
end

local function sync(args)
  return function(c)
    return c:sync(args)
  end
end

-- { call, what it is given, err.field, err.message (nil: only its start, "<call>: ", is checked) }
local CASES = {
  { "clicktocall.new", new_with("base_url", nil), "base_url",
    "clicktocall.new: base_url must be a string such as \"https://api.example.com\"" },
  { "clicktocall.new", new_with("base_url", "ftp://x"), "base_url",
    "clicktocall.new: base_url must be an http:// or https:// URL without spaces, query or fragment" },
  { "clicktocall.new", new_with("app_secret", ""), "app_secret" },
  { "clicktocall.new", new_with("timeout", -1), "timeout",
    "clicktocall.new: timeout must be a positive number of seconds" },
  { "clicktocall.new", new_with("retries", 11), "retries", "clicktocall.new: retries must be an integer from 0 to 10" },
  { "clicktocall.new", new_with("country_code", "x"), "country_code" },
  { "clicktocall.new", new_with("dial_guard", 5), "dial_guard" },
  { "clicktocall.new", new_with("on_event", 5), "on_event", "clicktocall.new: on_event must be a function" },
  { "clicktocall.new", new_with("timout", 5), "timout", "clicktocall.new: unknown option 'timout'" },

  { "bind_seat", function(c) return c:bind_seat { seat = "PP1" } end, "phone", "bind_seat: phone is missing" },
  { "bind_seat", function(c) return c:bind_seat { phone = "13500000002" } end, "seat", "bind_seat: seat is missing" },
  { "dial", function(c) return c:dial(with(DIAL, "caller", "12")) end, "caller",
    "dial: caller: phone number has 2 digits; a Chinese mobile number has 11" },
  { "dial", function(c) return c:dial(with(DIAL, "callee", 13500000003)) end, "callee",
    "dial: callee must be a string (a number loses a leading 0 or +)" },
  { "dial", function(c) return c:dial(with(DIAL, "seat", "  ")) end, "seat", "dial: seat is empty" },
  { "dial", function(c) return c:dial(with(DIAL, "user_data", "")) end, "user_data", "dial: user_data is empty" },
  { "dial", function(c) return c:dial(with(DIAL, "calee", "x")) end, "calee", "dial: unknown field 'calee'" },
  { "balance", function(c) return c:balance { user_data = 5 } end, "user_data", "balance: user_data must be a string" },
  { "records_page", function(c) return c:records_page(with(WINDOW, "start_time", "2026-12-01 00:00:00")) end,
    "start_time", "records_page: start_time is after end_time" },
  { "records_page", function(c) return c:records_page(with(WINDOW, "end_time", "2026-13-01 00:00:00")) end,
    "end_time", "records_page: end_time: month must be 01-12" },
  { "records_page", function(c) return c:records_page(with(WINDOW, "max_id", -1)) end, "max_id" },
  { "records", iterate(with(WINDOW, "limit", 0)), "limit", "records: limit must be a positive integer" },
  { "records", iterate(with(WINDOW, "concurrency", 99)), "concurrency",
    "records: concurrency must be an integer from 1 to 16" },
  { "records", iterate(without(WINDOW, "end_time")), "end_time", "records: end_time is missing" },
  { "records", iterate(with(with(WINDOW, "concurrency", 2), "start_time", "soon")), "start_time" },
  { "download_recording", function(c) return c:download_recording({ recordFlag = "0" }, tmp .. "/a.wav") end,
    "rec_or_url" },
  { "download_recording", function(c) return c:download_recording("http://rec.example.com/a.wav", tmp) end,
    "path", "download_recording: path " .. "%TMP%" .. " is a directory" },
  { "download_recording", function(c) return c:download_recording("http://rec.example.com/a.wav", nil) end,
    "path", "download_recording: path must be a file path, got nil" },

  { "archive_recordings", archive(with(WINDOW, "dir", nil)), "dir" },
  { "archive_recordings", archive(with(with(WINDOW, "dir", "%TMP%"), "concurrency", 0)), "concurrency",
    "archive_recordings: concurrency must be an integer from 1 to 32" },
  { "archive_recordings", archive(with(with(WINDOW, "dir", "%TMP%"), "layout", "tree")), "layout" },
  { "archive_recordings", archive(with(with(WINDOW, "dir", "%TMP%"), "manifest", "%TMP%")), "manifest" },
  { "archive_recordings", archive(with(with(WINDOW, "dir", "%TMP%"), "on_file", 5)), "on_file" },
  { "archive_recordings", archive(with(without(WINDOW, "start_time"), "dir", "%TMP%")), "start_time",
    "archive_recordings: start_time is missing" },
  { "archive_recordings", archive(with(with(WINDOW, "dir", "%TMP%"), "lock", "redis://h:6379/x")), "lock" },
  { "archive_recordings", archive(with(with(WINDOW, "dir", "%TMP%"), "layot", "flat")), "layot",
    "archive_recordings: unknown field 'layot'" },

  { "sync", sync { on_record = noop }, "state" },
  { "sync", sync { state = "%TMP%/s.json" }, "on_record" },
  { "sync", sync { state = "%TMP%/s.json", on_record = noop, lookback = -1 }, "lookback" },
  { "sync", sync { state = "%TMP%/s.json", on_record = noop, since = "soon" }, "since",
    "sync: since: time is too short; it must look like yyyy-MM-dd HH:mm:ss" },
  { "sync", sync { state = "%TMP%/s.json", on_record = noop, lock = "redis://h:6379/x" }, "lock" },
  { "sync", sync { state = "%TMP%/s.json", on_record = noop, stat = 1 }, "stat" },
}

-- "%TMP%" in a case's table or message stands for the temporary directory, known only once it runs
local function fill(v)
  if type(v) == "string" then
    return (v:gsub("%%TMP%%", tmp))
  end
  return v
end

local function filled_call(call)
  return function(c)
    -- the tables were built before tmp existed: fill them through a shim over the client
    local shim = setmetatable({}, { __index = function(_, k)
      local m = c[k]
      if type(m) ~= "function" then
        return m
      end
      return function(_, a, b)
        if type(a) == "table" then
          local t = {}
          for key, val in pairs(a) do t[key] = fill(val) end
          a = t
        end
        return m(c, fill(a), fill(b))
      end
    end })
    return call(shim)
  end
end

describe("argument errors", function()
  for i, case in ipairs(CASES) do
    local call, run, field, message = case[1], case[2], case[3], case[4]
    it(("%d. %s: %s is named in err.field and in a sentence that starts \"%s: \""):format(i, call, field, call),
      function()
        local client, provider = mc.new()
        local v, err
        if call == "clicktocall.new" then
          v, err = run()
        else
          v, err = filled_call(run)(client)
        end
        assert.is_nil(v)
        assert.is_true(clicktocall.is_error(err), tostring(err))
        assert.equal("argument", err.kind)
        assert.is_false(err.sent)
        assert.is_false(err.retryable)
        assert.equal(field, err.field, err.message)
        assert.equal(call .. ": ", err.message:sub(1, #call + 2), err.message)
        assert.is_nil(err.message:find("bad argument", 1, true), err.message)
        assert.is_nil(err.message:find("^[%w_.]+: field '"), err.message) -- the field is named once, plainly
        if message then
          assert.equal(fill(message), err.message)
        end
        assert.equal("[argument] " .. err.message, tostring(err))
        assert.equal(0, provider:count())
      end)
  end

  it("an error about the call, not one field, has no err.field", function()
    local client = mc.new()
    local _, err = client:dial()
    assert.equal("dial: expected a table of fields, got nil", err.message)
    assert.is_nil(err.field)
    _, err = client.balance()
    assert.equal("balance: clicktocall client expected: call it as client:balance, not client.balance",
                 err.message)
    assert.is_nil(err.field)
    client:close()
    _, err = client:balance()
    assert.equal("balance: the client is closed (client:close() was called); nothing was sent", err.message)
    assert.is_nil(err.field)
  end)

  it("the secret never appears in an argument error, nor in its field", function()
    local _, err = clicktocall.new { base_url = "https://api.example.com/" .. h.SECRET .. "?q", app_secret = h.SECRET }
    assert.equal("base_url", err.field)
    assert.is_nil(err.message:find(h.SECRET, 1, true), err.message)
  end)

  it("format_time says \"time\" once, whatever the parser's sentence starts with", function()
    local _, e = clicktocall.format_time("soon")
    assert.equal("time is too short; it must look like yyyy-MM-dd HH:mm:ss", e.message)
    _, e = clicktocall.format_time("2026-13-01 00:00:00")
    assert.equal("time: month must be 01-12", e.message)
    _, e = clicktocall.format_time({})
    assert.equal("time must be a \"yyyy-MM-dd HH:mm:ss\" string or Unix seconds", e.message)
    assert.equal("time: month must be 01-12",
                 select(2, require("clicktocall.core").parse_time("2026-13-01 00:00:00")).message)
  end)

  it("the jobs' older wording (\"field 'x' ...\") is read for its field and said the newer way", function()
    local jobs = require "clicktocall.jobs"
    local st = { secrets = { h.SECRET } }
    local _, e = jobs.argument(st, "sync", "field 'state' must be a file path")
    assert.equal("sync: state must be a file path", e.message)
    assert.equal("state", e.field)
    _, e = jobs.argument(st, "sync", "field 'state': /x is a directory")
    assert.equal("sync: state: /x is a directory", e.message)
    assert.equal("state", e.field)
    _, e = jobs.argument(st, "sync", "field 'since' time is too short")
    assert.equal("sync: since: time is too short", e.message)
    _, e = jobs.argument(st, "sync", "unknown field 'stat'")
    assert.equal("stat", e.field)
    _, e = jobs.argument(st, "sync", "the state file /s is corrupt")
    assert.is_nil(e.field)
    _, e = jobs.argument(st, "sync", "since: time must look like yyyy-MM-dd HH:mm:ss", "since")
    assert.equal("sync: since: time must look like yyyy-MM-dd HH:mm:ss", e.message)
    assert.equal("since", e.field)
  end)
end)

describe("base_url, read by http1.web_url", function()
  it("takes what API.md promises (http:// or https://, user information as libcurl takes it) and refuses "
     .. "a URL no transport can use with the one sentence", function()
    for _, good in ipairs({ "https://api.example.com", "HTTP://API.example.com:8080/base/", "http://[::1]:8081",
                            "https://u:p@api.example.com" }) do
      local c, err = new_with("base_url", good)()
      assert(c, good .. ": " .. tostring(err))
      c:close()
    end
    for _, bad in ipairs({ "ftp://x", "https://", "https://h:0", "https://h:99999", "https://h:port",
                           "https://ex!ample.com", "https://h/a b", "https://h?x=1", "https://h/#f", "//h" }) do
      local c, err = new_with("base_url", bad)()
      assert.is_nil(c, bad)
      assert.equal("base_url", err.field, bad)
      assert.equal("clicktocall.new: base_url must be an http:// or https:// URL without spaces, query or fragment",
                   err.message, bad)
    end
  end)
end)
