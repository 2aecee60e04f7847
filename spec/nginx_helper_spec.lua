-- spec/nginx_helper_spec.lua: the test helpers that start servers survive a port taken by someone else
-- between "found free" and "bound" (several test runs share one machine).
local nginx = require "spec.helpers.nginx"
local socket = require "socket"

describe("spec helpers under port contention #openresty", function()
  local real_free_port = nginx.free_port
  local taker

  before_each(function()
    -- another process's listener, on the port the helper is told first
    taker = assert(socket.bind("127.0.0.1", 0))
    local _, taken = taker:getsockname()
    local first = true
    nginx.free_port = function()
      if first then
        first = false
        return tonumber(taken)
      end
      return real_free_port()
    end
  end)

  after_each(function()
    nginx.free_port = real_free_port
    taker:close()
  end)

  it("nginx.start retries on new ports when one is in use", function()
    local srv, err = nginx.start{ http = [[
      server { listen 127.0.0.1:${port1}; location / { return 200 "up ${refused1}"; } }
    ]], refused = 1 }
    assert(srv, err)
    finally(function() srv:stop() end)
    local _, taken = taker:getsockname()
    assert.are_not.equal(tonumber(taken), srv.ports[1])
    local c = assert(socket.connect("127.0.0.1", srv.ports[1]))
    c:send("GET / HTTP/1.0\r\n\r\n")
    local answer = c:receive("*a")
    c:close()
    assert.matches("up " .. srv.refused[1], answer)
    -- the refusing port refuses
    local r, rerr = socket.connect("127.0.0.1", srv.refused[1])
    assert.is_nil(r)
    assert.matches("refused", rerr)
  end)

  it("sim.start retries on a new port when one is in use", function()
    local sim = require "spec.helpers.sim"
    local s, err = sim.start{ workers = 1 }
    assert(s, err)
    finally(function() s:stop() end)
    local _, taken = taker:getsockname()
    assert.is_nil(s.base_url:find(":" .. taken, 1, true))
    assert.is_true(s:get("/_sim/ping").ok)
  end)
end)
