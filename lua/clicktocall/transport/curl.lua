--- clicktocall.transport.curl: the built-in transport, one libcurl easy handle per client (keep-alive),
-- its downloads done in C (redirects, length, fsync), and a coroutine scheduler over a libcurl multi
-- (clicktocall.batch) for the requests a job or records{ concurrency } keeps in flight at once.

local core = require "clicktocall.core"

local setmetatable = setmetatable

-- shares_headers: send only reads a request (in C), so a client's calls may share one headers table
local T = { name = "the libcurl transport", shares_headers = true }
T.__index = T

local _M = { _VERSION = core._VERSION }

-- Plain Lua 5.1 cannot yield across pcall, which a scheduler's tasks need: there, no scheduler.
local CAN_YIELD = _VERSION ~= "Lua 5.1" or type(jit) == "table" -- luacheck: ignore 113

--- new(o) -> transport | nil, sentence; o: the client's options (ca_file, insecure, proxy, sleep)
function _M.new(o)
  local tls = { ca_file = o.ca_file, insecure = o.insecure, proxy = o.proxy }
  local handle, err = core.curl_transport(tls)
  if not handle then
    return nil, err
  end
  -- a caller's sleep (a test clock) is called as is, also inside a scheduler
  return setmetatable({ handle = handle, tls = tls, user_sleep = o.sleep, sleep_fn = o.sleep or core.sleep }, T)
end

function T:send(request)
  return self.handle:perform(request)
end

-- dial(cfg, args, timeout, connect_timeout, max_body) -> session id | false (nothing sent: the arguments
-- or the config need core.request first) | true, what send returns: a whole plain dial in C
function T:dial(cfg, args, timeout, connect_timeout, max_body)
  return self.handle:dial(cfg, args, timeout, connect_timeout, max_body)
end

function T:download(request, tmp)
  return self.handle:download(request, tmp)
end

--- upload(request) -> res | nil, err: a PUT streaming request.body_size bytes of request.body_file (C)
function T:upload(request)
  return self.handle:upload(request)
end

function T:sleep(seconds)
  return self.sleep_fn(seconds)
end

T.now = core.now

--- scheduler(n) -> at most n requests in flight on a multi of their own (same TLS and proxy settings)
function T:scheduler(n)
  if not CAN_YIELD then
    return nil
  end
  return require("clicktocall.batch").curl_scheduler(self, n)
end

function T:close()
  self.handle:close()
end

return _M
