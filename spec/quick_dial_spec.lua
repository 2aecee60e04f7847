-- A plain dial over libcurl, after a client's first, is the transport's alone (t:dial: no request
-- table, no Lua layers). Everything it leaves must come out as the long path's: the body on the
-- wire, every refusal, every answer it does not read itself, the retries of a dial never sent.
local h = require "spec.helpers"
local j = require "spec.helpers.jobs"
local mc = require "spec.helpers.client"
local nginx = require "spec.helpers.nginx"
local core = require "clicktocall.core"

local HTTP = [[
lua_shared_dict seen 1m;
server {
  listen 127.0.0.1:${port1};
  location = /rest/voiceCall/api {
    content_by_lua_block {
      ngx.req.read_body()
      local seen = ngx.shared.seen
      local n = seen:incr("dial", 1, 0)
      seen:set("body", ngx.req.get_body_data())
      local mode = seen:get("mode") or "ok"
      if mode == "drop" then
        return ngx.exit(444) -- the dial read, then the connection closed without a byte
      elseif mode == "refuse" then
        ngx.say('{"meta":{"success":false,"message":"seat busy"}}')
      elseif mode == "busy" then
        ngx.status = 503
        ngx.header["Retry-After"] = "0"
        ngx.say('{"meta":{"success":false,"message":"try later"}}')
      elseif mode == "odd" then
        ngx.say('{"data":"s\\u0069d-odd","meta":{"message":"ok","success":true},"extra":[1]}')
      else
        ngx.say('{"meta":{"success":true,"message":"ok"},"data":"sid-', n, '"}')
      end
    }
  }
  location = /seen {
    content_by_lua_block {
      local seen = ngx.shared.seen
      if ngx.var.arg_mode then
        seen:flush_all()
        seen:set("mode", ngx.var.arg_mode)
      end
      ngx.say(require("cjson").encode { dial = seen:get("dial") or 0, body = seen:get("body") })
    }
  }
}
]]

local ARGS = { caller = "13500000002", callee = "0755-28000123", seat = "PP1" }

describe("a client's plain dials after its first (t:dial)", function()
  local srv, real_request, requests

  -- the server's count and last body; with mode, everything forgotten and the next answers in that mode
  local function seen(mode)
    return mc.get_json(srv:url("/seen" .. (mode and "?mode=" .. mode or "")))
  end

  local function client(opts)
    return mc.at(srv:url(""), opts)
  end

  -- a client whose first dial went the long way (it keeps the URL and headers the quick one sends with)
  local function warm(opts)
    local c = client(opts)
    seen("ok")
    assert.equal("sid-1", c:dial(ARGS))
    seen("ok")
    requests = 0
    return c
  end

  setup(function()
    local err
    srv, err = nginx.start { http = HTTP }
    assert(srv, err)
    real_request = core.request
    core.request = function(...)
      requests = requests + 1
      return real_request(...)
    end
  end)

  teardown(function()
    core.request = real_request
    if srv then srv:stop() end
  end)

  before_each(function()
    requests = 0
  end)

  it("build no request in Lua, and send the body core.request builds", function()
    local c = warm()
    local odd = { caller = "+86 135-0000-0003", callee = "13500000004", seat = ' "P\\1" 座席 ',
                  user_data = "other \"ud\"" }
    for i, args in ipairs { ARGS, odd, ARGS } do
      assert.equal("sid-" .. i, c:dial(args))
      assert.equal(real_request("dial", { base_url = "", user_data = h.USER_DATA }, args).body, seen().body)
    end
    assert.equal(0, requests) -- the long path builds one a dial
    c:close()
  end)

  it("refuse what the long path refuses, with its sentences, and send nothing", function()
    local cases = {
      { caller = "13500000002", callee = "13500000003", seat = "PP1", speed = 2 },
      { caller = "135", callee = "13500000003", seat = "PP1" },
      { caller = 13500000002, callee = "13500000003", seat = "PP1" },
      { caller = "13500000002", callee = "13500000003" },
      { caller = "13500000002", callee = "13500000003", seat = "P\1" },
      { caller = "13500000002", callee = "13500000003", seat = "PP1", user_data = "" },
      { [1] = "13500000002", caller = "13500000002", callee = "13500000003", seat = "PP1" },
    }
    local c = warm()
    for i, args in ipairs(cases) do
      local sid, err = c:dial(args)
      local sid2, err2 = client():dial(args) -- a first dial: the long path
      assert.is_nil(sid, i)
      assert.is_nil(sid2, i)
      assert.same({ err2.kind, err2.message, err2.field, err2.sent, err2.may_have_rung },
                  { err.kind, err.message, err.field, err.sent, err.may_have_rung })
      assert.equal("argument", err.kind)
    end
    assert.equal(0, seen().dial)
    c:close()
  end)

  it("leave arguments with a metatable to the long path, which reads them as Lua does", function()
    local c = warm()
    local proxied = setmetatable({}, { __index = ARGS })
    assert.equal("sid-1", c:dial(proxied))
    assert.equal(1, requests)
    if _VERSION == "Lua 5.4" then
      local listed = setmetatable({}, { __index = ARGS, __pairs = function()
        return next, { caller = 1, speed = 2 }, nil
      end })
      local sid, err = c:dial(listed)
      assert.is_nil(sid)
      assert.equal("dial: unknown field 'speed'", err.message)
    end
    c:close()
  end)

  it("leave force to the long path, which dials (no guard to skip)", function()
    local c = warm()
    assert.equal("sid-1", c:dial { caller = "13500000002", callee = "13500000003", seat = "PP1", force = true })
    assert.equal(1, requests)
    c:close()
  end)

  it("leave an answer they do not read to the long path's reader, never sending twice", function()
    local c = warm { retries = 3 }
    seen("refuse")
    local sid, err = c:dial(ARGS)
    assert.is_nil(sid)
    -- the provider's own refusal: it rang nobody
    assert.same({ "api", "seat busy", true, false }, { err.kind, err.message, err.sent, err.may_have_rung })
    seen("busy")
    sid, err = c:dial(ARGS)
    assert.is_nil(sid)
    assert.same({ "http", 503, true, true }, { err.kind, err.status, err.sent, err.may_have_rung })
    assert.equal(1, seen().dial) -- a dial that reached the server is never retried
    seen("drop")
    sid, err = c:dial(ARGS)
    assert.is_nil(sid)
    assert.same({ "network", true, true }, { err.kind, err.sent, err.may_have_rung })
    assert.equal(1, seen().dial)
    seen("odd")
    assert.equal("sid-odd", c:dial(ARGS))
    seen("ok")
    assert.equal("sid-1", c:dial(ARGS))
    c:close()
  end)

  it("retry a dial that never left as the long path does, with its sleeps", function()
    local slept = {}
    local c = client { base_url = "http://127.0.0.1:" .. nginx.refused_port(), retries = 2, backoff_base = 0.01,
                       sleep = function(s) slept[#slept + 1] = s end }
    local sid, err = c:dial(ARGS) -- the first: the long way
    assert.is_nil(sid)
    assert.equal(2, #slept)
    requests = 0
    local sid2, err2 = c:dial(ARGS)
    assert.is_nil(sid2)
    assert.equal(4, #slept)
    assert.equal(1, requests) -- the quick attempt, then the request for the retries
    assert.same({ err.kind, err.sent, err.may_have_rung }, { err2.kind, err2.sent, err2.may_have_rung })
    assert.same({ "network", false, false }, { err2.kind, err2.sent, err2.may_have_rung })
    c:close()
  end)

  it("are not the transport's alone with on_event, a dial guard or a rate limit", function()
    local dir = j.mkdtemp()
    local other = { caller = "13500000002", callee = "13500000009", seat = "PP1" } -- not a repeat for the guard
    for _, opts in ipairs { { on_event = function() end }, { rate_limit = { dial = { rate = 100 } } },
                            { dial_guard = "file:" .. dir .. "/guard" } } do
      local c = warm(opts)
      assert.equal("sid-1", c:dial(other))
      assert.equal(1, requests, next(opts))
      c:close()
    end
    j.rmtree(dir)
  end)

  it("refuse a closed client as the long path does", function()
    local c = warm()
    c:close()
    local sid, err = c:dial(ARGS)
    assert.is_nil(sid)
    assert.equal("argument", err.kind)
    assert.matches("closed", err.message)
    assert.equal(0, seen().dial)
  end)
end)
