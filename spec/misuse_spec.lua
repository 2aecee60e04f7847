-- What a hostile server or a careless caller tries: echoed secrets, raising
-- user functions, an iterator used after close(), options that cannot be honoured.
local h = require "spec.helpers"
local mc = require "spec.helpers.client"
local mock = require "clicktocall.mock"
local clicktocall = require "clicktocall"

local WINDOW = { start_time = "2019-03-25 00:00:00", end_time = "2019-03-26 00:00:00" }

-- its base64 has a '/' (so the URL-safe form differs) and one '=' of padding
local CANARY = "CANARY-s3cr3t-XYZ??>"
local FORMS = {
  raw = CANARY,
  base64 = "Q0FOQVJZLXMzY3IzdC1YWVo/Pz4=",
  base64_unpadded = "Q0FOQVJZLXMzY3IzdC1YWVo/Pz4",
  urlsafe = "Q0FOQVJZLXMzY3IzdC1YWVo_Pz4=",
  urlsafe_unpadded = "Q0FOQVJZLXMzY3IzdC1YWVo_Pz4",
}

-- Any part of any form: every form starts with one of these.
local function assert_clean(s)
  assert.is_string(s)
  assert.is_nil(s:find("CANARY", 1, true), "the secret leaked in: " .. s)
  assert.is_nil(s:find("Q0FOQVJZ", 1, true), "a base64 form of the secret leaked in: " .. s)
end

-- a client and a provider that both know the canary as the secret
local function canary_client(opts)
  opts = opts or {}
  opts.app_secret = CANARY
  opts.retries = opts.retries or 0
  return mc.new(opts, { secret = CANARY })
end

-- A client over a bare transport function, for what the mock cannot do: raise at the client (the mock
-- pcall-wraps a fault function and answers a network error instead). Counts the calls, keeps the sleeps
-- and the events.
local function contract_client(transport, opts)
  local seen = { calls = 0, slept = {}, events = {} }
  local o = {
    base_url = "https://api.example.com", app_secret = h.SECRET, user_data = h.USER_DATA,
    transport = function(request)
      seen.calls = seen.calls + 1
      return transport(request)
    end,
    sleep = function(s) seen.slept[#seen.slept + 1] = s end,
    on_event = function(e) seen.events[#seen.events + 1] = e end,
  }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(clicktocall.new(o)), seen
end

local function assert_events_clean(events)
  for _, e in ipairs(events) do
    for _, s in ipairs(h.strings(e)) do
      assert_clean(s)
    end
  end
end

-- core.response's 5th argument: the secrets, redacted before the excerpt is cut
local straddle = it

describe("the secret in every form", function()
  it("checks the forms it tests", function()
    local core = require "clicktocall.core"
    assert.equal(FORMS.base64, core.base64(CANARY))
  end)

  for name, form in pairs(FORMS) do
    it("is redacted when the provider echoes its " .. name .. " form in meta.message", function()
      local client, provider, events = canary_client()
      provider:fail("balance", { api_error = "bad credential " .. form })
      local v, err = client:balance()
      assert.is_nil(v)
      assert.equal("api", err.kind)
      assert.equal("bad credential ***", err.message)
      assert_clean(tostring(err))
      assert_events_clean(events)
    end)

    it("is redacted when a transport error echoes its " .. name .. " form", function()
      local client, provider, events = canary_client()
      provider:fail("balance", function()
        return nil, { kind = "network", message = "proxy said " .. form, sent = false }
      end)
      local _, err = client:balance()
      assert.equal("network", err.kind)
      assert_clean(err.message)
      assert_clean(tostring(err))
      assert.truthy(err.message:find("***", 1, true))
      assert_events_clean(events)
    end)

    for _, status in ipairs { 200, 502 } do
      straddle("is redacted before a non-JSON body is cut (HTTP " .. status .. ", " .. name .. ")", function()
        -- the form starts a few characters before the 60-character cut, so cutting first would leave a piece
        for _, at in ipairs { 50, 55, 58 } do
          local body = ("x"):rep(at) .. form .. ("y"):rep(80)
          local client, provider, events = canary_client()
          provider:fail("balance", { status = status, body = body })
          local _, err = client:balance()
          assert_clean(err.message)
          assert_events_clean(events)
        end
      end)
    end
  end

  it("is redacted in a message a transport raises", function()
    -- a bare transport: the mock would catch the raise itself
    local client, seen = contract_client(function() error("boom " .. FORMS.urlsafe_unpadded, 0) end,
                                         { app_secret = CANARY, retries = 0 })
    local _, err = client:balance()
    assert.equal("protocol", err.kind)
    assert_clean(err.message)
    assert_events_clean(seen.events)
  end)
end)

-- the transports here raise, which is the transport contract itself: bare transports, not the mock
describe("user functions that raise", function()
  it("a raising transport is a protocol error, sent, not retried", function()
    for _, raised in ipairs { "connection pool exploded", { code = 42 } } do
      local client, seen = contract_client(function() error(raised) end, { retries = 2 })
      local v, err = client:balance()
      assert.is_nil(v)
      assert.is_true(clicktocall.is_error(err))
      assert.equal("protocol", err.kind)
      assert.is_true(err.sent)
      assert.is_false(err.retryable)
      assert.matches("the transport function raised an error", err.message, 1, true)
      assert.equal(1, seen.calls)
      assert.equal(0, #seen.slept)
    end
  end)

  it("a raising transport never makes a dial go twice", function()
    local client, seen = contract_client(function() error("half way") end, { retries = 2 })
    local v, err = client:dial { caller = "13500000001", callee = "13500000002", seat = "PP1" }
    assert.is_nil(v)
    assert.is_true(err.sent)
    assert.equal(1, seen.calls)
  end)

  it("inside records, the iterator raises an error object, never the raw value", function()
    local client = contract_client(function() error({ code = 42 }) end)
    local ok, e = pcall(function()
      for _ in client:records(WINDOW) do end
    end)
    assert.is_false(ok)
    assert.is_true(clicktocall.is_error(e))
    assert.equal("protocol", e.kind)
  end)

  it("a raising sleep ends the retries with the original error and a note", function()
    local client, provider = mc.new { retries = 3, sleep = function() error("no timers here", 0) end }
    provider:fail("balance", { status = 503, body = "busy" }, math.huge)
    local v, err = client:balance()
    assert.is_nil(v)
    assert.equal("http", err.kind)
    assert.equal(503, err.status)
    assert.matches("the sleep function raised: no timers here", err.message, 1, true)
    assert.equal(1, provider:count("balance"))
  end)

  it("a raising on_event is swallowed", function()
    local client = mc.new({ on_event = function() error("hook broke") end }, { balance = 7 })
    assert.equal(7, client:balance())
  end)
end)

describe("an iterator made before close()", function()
  it("raises an argument error and sends nothing (function transport)", function()
    local client, provider = mc.new()
    provider:seed_records(3, { start_time = "2019-03-25 10:00:00", end_time = "2019-03-25 12:00:00" })
    local it = client:records(WINDOW)
    client:close()
    local ok, e = pcall(it)
    assert.is_false(ok)
    assert.is_true(clicktocall.is_error(e))
    assert.equal("argument", e.kind)
    assert.matches("close", e.message)
    assert.equal(0, provider:count())
  end)

  it("raises an argument error with libcurl too", function()
    local client = assert(clicktocall.new { base_url = "http://127.0.0.1:1", app_secret = "S", user_data = "u" })
    local it = client:records(WINDOW)
    client:close()
    local ok, e = pcall(it)
    assert.is_false(ok)
    assert.is_true(clicktocall.is_error(e))
    assert.equal("argument", e.kind)
  end)
end)

describe("options that cannot be honoured", function()
  local function new(extra)
    local o = { base_url = "https://api.example.com", app_secret = "S", transport = mock.new().transport }
    for k, v in pairs(extra) do o[k] = v end
    return clicktocall.new(o)
  end

  for _, case in ipairs {
    { "timeout", 366 * 86400 }, { "timeout", 86400.5 }, { "connect_timeout", 2 * 86400 },
    { "download_timeout", 8 * 86400 }, { "dial_guard_window", 2 * 86400 }, { "backoff_max", 7200 },
    { "backoff_base", 1e9 }, { "retry_after_max", 2 * 86400 }, { "keepalive_timeout", 1e12 },
    { "max_body", 2 ^ 31 }, { "pool_size", 2 ^ 40 },
  } do
    it(("refuses %s = %.14g with a sentence, never clamps it"):format(case[1], case[2]), function()
      local client, err = new { [case[1]] = case[2] }
      assert.is_nil(client)
      assert.equal("argument", err.kind)
      assert.matches("clicktocall.new: " .. case[1] .. " must be", err.message, 1, true)
      assert.equal(case[1], err.field)
    end)
  end

  it("takes the largest values it can honour", function()
    assert.truthy(new { timeout = 86400, connect_timeout = 86400, download_timeout = 7 * 86400,
                        keepalive_timeout = 0, max_body = 2 ^ 31 - 1 })
  end)

  it("says what the limit is", function()
    local _, err = new { timeout = 366 * 86400 }
    assert.matches("at most 86400 seconds", err.message, 1, true)
  end)
end)
