--- A client over clicktocall.mock, built the way a user's own test builds one (README, "Testing your
-- code"), so the project's unit specs test with what users get.
--
--   local mc = require "spec.helpers.client"
--   local client, provider, events = mc.new({ retries = 0 }, { balance = 42 })
--
-- opts: clicktocall.new fields over the defaults below; provider_opts: mock.new options over
-- { user_data = h.USER_DATA, secret = h.SECRET }. The client's sleep is provider.sleep (backoffs land
-- in provider.slept and move the provider's clock, nothing waits) and every event goes to `events`.

local clicktocall = require "clicktocall"
local mock = require "clicktocall.mock"
local h = require "spec.helpers"

local M = {}

function M.new(opts, provider_opts)
  local po = { user_data = h.USER_DATA, secret = h.SECRET }
  for k, v in pairs(provider_opts or {}) do
    po[k] = v
  end
  local provider = mock.new(po)
  local events = {}
  local o = {
    base_url = "https://api.example.com", app_secret = h.SECRET, user_data = h.USER_DATA,
    transport = provider.transport, sleep = provider.sleep,
    on_event = function(e) events[#events + 1] = e end,
  }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  local client = assert(clicktocall.new(o))
  return client, provider, events
end

--- A client on the real libcurl transport at base_url (a test server), backoffs not waited for.
function M.at(base_url, opts)
  local o = { base_url = base_url, app_secret = h.SECRET, user_data = h.USER_DATA, sleep = function() end }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  return assert(clicktocall.new(o))
end

--- A test server's JSON answer to a GET, through a libcurl transport of its own (no client's connection).
function M.get_json(url)
  local t = require("clicktocall.core").curl_transport()
  local res = assert(t:perform { method = "GET", url = url })
  t:close()
  return h.decode(res.body)
end

--- The provider's requests of one op (all of them when op is nil), oldest first.
function M.requests(provider, op)
  local out = {}
  for _, r in ipairs(provider.requests) do
    if op == nil or r.op == op then
      out[#out + 1] = r
    end
  end
  return out
end

return M
