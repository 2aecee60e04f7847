-- clicktocall.new{}: a bad option is an "argument" error naming it; it never raises.
local mc = require "spec.helpers.client"
local mock = require "clicktocall.mock"
local clicktocall = require "clicktocall"

local AGENT = "+8613500000002"

local function base(extra)
  local o = { base_url = "https://api.example.com", app_secret = "TEST", transport = mock.new().transport }
  for k, v in pairs(extra) do o[k] = v end
  return o
end

describe("new", function()
  it("makes a client from the two required options", function()
    local client, err = clicktocall.new { base_url = "http://127.0.0.1:1", app_secret = "TEST" }
    assert.is_nil(err)
    assert.matches("^clicktocall.client %(http://127.0.0.1:1%)$", tostring(client))
    assert.is_true(client:close())
    assert.is_true(client:close()) -- closing twice is fine
    local v, cerr = client:balance { user_data = "x" }
    assert.is_nil(v)
    assert.equal("argument", cerr.kind)
    assert.matches("closed", cerr.message)
  end)

  it("refuses a non-table", function()
    local client, err = clicktocall.new("https://api.example.com")
    assert.is_nil(client)
    assert.equal("clicktocall.new: expected a table of options, got string", err.message)
    assert.is_nil(err.field)
  end)

  local bad = {
    { { base_url = "ftp://api.example.com" }, "base_url" },
    { { base_url = "file:///etc/passwd" }, "base_url" },
    { { base_url = "api.example.com" }, "base_url" },
    { { base_url = "https://" }, "base_url" },
    { { base_url = "https://api.example.com/a b" }, "base_url" },
    { { base_url = "https://api.example.com/?x=1" }, "base_url" },
    { { base_url = 42 }, "base_url" },
    { { app_secret = "" }, "app_secret" },
    { { app_secret = "a\nb" }, "app_secret" },
    { { app_secret = false }, "app_secret" },
    { { user_data = "" }, "user_data" },
    { { user_data = 7 }, "user_data" },
    { { timeout = -1 }, "timeout" },
    { { timeout = 0 }, "timeout" },
    { { timeout = 0 / 0 }, "timeout" },
    { { timeout = math.huge }, "timeout" },
    { { timeout = "10" }, "timeout" },
    { { connect_timeout = -3 }, "connect_timeout" },
    { { retries = -1 }, "retries" },
    { { retries = 1.5 }, "retries" },
    { { retries = 100 }, "retries" },
    { { max_body = 0 }, "max_body" },
    { { max_body = 1.5 }, "max_body" },
    { { transport = "carrier-pigeon" }, "transport" },
    { { transport = 42 }, "transport" },
    { { country_code = "china" }, "country_code" },
    { { country_code = 86 }, "country_code" },
    { { ca_file = "/nonexistent/ca.pem" }, "ca_file" },
    { { insecure = "yes" }, "insecure" },
    { { proxy = "http://proxy example:3128" }, "proxy" },
    { { user_agent = "x\r\nInjected: 1" }, "user_agent" },
    { { on_event = "print" }, "on_event" },
    { { tiemout = 5 }, "tiemout" },
  }
  for _, case in ipairs(bad) do
    local opts, field = case[1], case[2]
    it("refuses a bad " .. field .. " (" .. tostring(select(2, next(opts))) .. ")", function()
      local client, err = clicktocall.new(base(opts))
      assert.is_nil(client)
      assert.equal("argument", err.kind)
      assert.is_false(err.retryable)
      assert.is_false(err.sent)
      assert.matches(field, err.message, 1, true)
    end)
  end

  it("refuses a dial_guard outside OpenResty with a sentence", function()
    local client, err = clicktocall.new(base { dial_guard = "dials" })
    assert.is_nil(client)
    assert.equal("argument", err.kind)
    assert.matches("dial_guard", err.message)
  end)

  it("refuses transport = \"ngx\" outside OpenResty with a sentence", function()
    local client, err = clicktocall.new(base { transport = "ngx" })
    assert.is_nil(client)
    assert.equal("argument", err.kind)
    assert.matches("ngx", err.message)
  end)

  it("requires user_data from new{} or from the call, sending nothing without it", function()
    local provider = mock.new()
    local client = assert(clicktocall.new { base_url = "https://a.example", app_secret = "S",
                                            transport = provider.transport })
    local v, err = client:balance()
    assert.is_nil(v)
    assert.equal("argument", err.kind)
    assert.matches("user_data", err.message)
    assert.equal(0, provider:count())
  end)

  it("refuses an empty or control-character seat or user_data in a call", function()
    local client, provider = mc.new()
    for _, args in ipairs {
      { caller = "13500000002", callee = "13500000003", seat = "   " },
      { caller = "13500000002", callee = "13500000003", seat = "PP\0011" },
      { caller = "13500000002", callee = "13500000003", seat = "PP1", user_data = "a\tb" },
      { caller = "13500000002", callee = "13500000003", seat = "\255\254" },
      { caller = "13500000002", callee = "13500000003" },
      { caller = "13500000002", callee = "13500000003", seat = 7 },
    } do
      local v, err = client:dial(args)
      assert.is_nil(v)
      assert.equal("argument", err.kind)
    end
    assert.equal(0, provider:count())
  end)

  it("takes country_code for numbers written without one", function()
    local client, provider = mc.new { country_code = "1" }
    assert.is_true(client:bind_seat { seat = "PP1", phone = "(415) 555-2671" })
    assert.equal("+14155552671", provider:last_request("bind_seat").body.userPhone)
    assert.equal("+14155552671", provider:bound_phone("PP1"))
  end)
end)

describe("version", function()
  it("is one string: the core's, every module's, the versioned rockspec's and the changelog's", function()
    local core = require "clicktocall.core"
    local v = core._VERSION
    assert.matches("^%d+%.%d+%.%d+$", v)
    -- the core's is the one written down (csrc/ctc.h); everything else must agree with it
    local ctc_h = assert(io.open("csrc/ctc.h")):read("*a")
    assert.equal(v, ctc_h:match('#define CTC_VERSION "([^"]+)"'))
    local rock = assert(io.open("rockspec/clicktocall-" .. v .. "-1.rockspec"),
                        "no rockspec for version " .. v):read("*a")
    assert.equal(v .. "-1", rock:match('\nversion = "([^"]+)"'))
    assert.equal("v" .. v, rock:match('tag = "([^"]+)"'))
    local changelog = assert(io.open("CHANGELOG.md")):read("*a")
    assert.equal(v, changelog:match("\n## (%d+%.%d+%.%d+)"), "the newest release in CHANGELOG.md")
    -- every Lua module of the library, found on disk so a new one cannot be forgotten
    local p = assert(io.popen("unset LD_PRELOAD; cd lua && find . -name '*.lua' | sort"))
    local names = {}
    for file in p:lines() do
      names[#names + 1] = file:gsub("^%./", ""):gsub("%.lua$", ""):gsub("/", ".")
    end
    p:close()
    assert.is_true(#names >= 7, "found only " .. #names .. " modules")
    for _, name in ipairs(names) do
      local mod = require(name)
      if name == "clicktocall.version" then -- the pure Lua modules' copy
        assert.equal(v, mod, name)
      else
        assert.equal(v, mod._VERSION, name .. "._VERSION")
      end
    end
  end)

  it("is read by the pure Lua modules from clicktocall.version, without loading the C core", function()
    local pure = { "clicktocall.version", "clicktocall.json", "clicktocall.http1", "clicktocall.errors",
                   "clicktocall.redis", "clicktocall.dial_guard", "clicktocall.cli.output", "clicktocall.cli.progress",
                   "clicktocall.cli.config", "clicktocall.transport.ngx" }
    local lua = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
    local script = [[package.path = "./lua/?.lua;" .. package.path
package.preload["clicktocall.core"] = function() error("the C core was loaded") end
for name in ("NAMES"):gmatch("%S+") do
  local ok, m = pcall(require, name)
  io.write(name, " ", ok and tostring(type(m) == "table" and m._VERSION or m) or m, "\n")
end]]
    script = script:gsub("NAMES", table.concat(pure, " "))
    local out = require("spec.helpers.util").sh(("%s -e '%s'"):format(lua, script))
    local v = require("clicktocall.core")._VERSION
    for _, name in ipairs(pure) do
      assert.truthy(out:find(name .. " " .. v .. "\n", 1, true), out)
    end
  end)
end)

describe("a call's table", function()
  local WINDOW = { start_time = "2019-03-25 00:00:00", end_time = "2019-03-26 00:00:00" }
  local function with(t, k, v)
    local c = {}
    for a, b in pairs(t) do c[a] = b end
    c[k] = v
    return c
  end
  local calls = {
    bind_seat = { seat = "PP1", phone = "13500000002" },
    dial = { caller = "13500000002", callee = "13500000003", seat = "PP1" },
    balance = {},
    records_page = WINDOW,
  }

  for name, args in pairs(calls) do
    it(name .. " refuses an unknown field, naming it, and sends nothing", function()
      local client, provider = mc.new(nil, { seats = { PP1 = AGENT } })
      local v, err = client[name](client, with(args, "limt", 5))
      assert.is_nil(v)
      assert.equal("argument", err.kind)
      assert.matches("unknown field 'limt'", err.message, 1, true)
      assert.equal(0, provider:count())
    end)
  end

  it("dial takes force; records_page does not take limit", function()
    local client, provider = mc.new(nil, { seats = { PP1 = AGENT } })
    local sid = client:dial(with(calls.dial, "force", true))
    assert.equal(1, provider.dials)
    assert.equal(provider:records()[1].sessionId, sid)
    local _, err = client:records_page(with(WINDOW, "limit", 5))
    assert.matches("unknown field 'limit'", err.message, 1, true)
    assert.equal(1, provider:count())
  end)

  for _, field in ipairs { "limt" } do
    it("records raises on an unknown field (" .. field .. "), sending nothing", function()
      local client, provider = mc.new()
      provider:seed_records(3, { start_time = "2019-03-25 10:00:00", end_time = "2019-03-25 11:00:00" })
      local ok, err = pcall(function()
        for _ in client:records(with(WINDOW, field, 5)) do end
      end)
      assert.is_false(ok)
      assert.equal("argument", err.kind)
      assert.matches("unknown field '" .. field .. "'", err.message, 1, true)
      assert.equal(0, provider:count())
    end)
  end

  it("records takes user_data, max_id and limit", function()
    local client, provider = mc.new()
    local recs = provider:seed_records(3, { user_data = "other", start_time = "2019-03-25 10:00:00",
                                            end_time = "2019-03-25 11:00:00" })
    local got = {}
    for rec in client:records(with(with(with(WINDOW, "limit", 2), "max_id", 0), "user_data", "other")) do
      got[#got + 1] = rec.id
    end
    assert.same({ recs[1].id, recs[2].id }, got)
    assert.equal(1, provider:count())
    local asked = provider:last_request("records_page").body
    assert.equal("other", asked.userData)
    assert.equal(0, asked.maxId)
  end)
end)

describe("transport \"ngx\" options", function()
  it("refuses proxy: cosockets cannot go through one", function()
    local client, err = clicktocall.new(base { transport = "ngx", proxy = "http://proxy:3128" })
    assert.is_nil(client)
    assert.equal("argument", err.kind)
    assert.matches("clicktocall.new: proxy cannot be used with transport \"ngx\"", err.message, 1, true)
    assert.equal("proxy", err.field)
  end)

  it("refuses ca_file, naming lua_ssl_trusted_certificate", function()
    local f = os.tmpname()
    local client, err = clicktocall.new(base { transport = "ngx", ca_file = f })
    os.remove(f)
    assert.is_nil(client)
    assert.equal("argument", err.kind)
    assert.matches("lua_ssl_trusted_certificate", err.message, 1, true)
  end)

  it("takes keepalive_timeout = 0 (no pooling)", function()
    assert.truthy(clicktocall.new(base { keepalive_timeout = 0 }))
    -- outside nginx the ngx transport cannot start, but not because of keepalive_timeout
    local _, err = clicktocall.new(base { transport = "ngx", keepalive_timeout = 0 })
    assert.is_nil(err.message:find("keepalive_timeout", 1, true))
    local _, neg = clicktocall.new(base { keepalive_timeout = -1 })
    assert.matches("keepalive_timeout", neg.message, 1, true)
  end)
end)
