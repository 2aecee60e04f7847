--- clicktocall.transport.func: the caller's transport function (docs/API.md, Transports). It may yield for
-- a scheduler of its own, so nothing here runs it inside ours: no scheduler, requests go one at a time, and
-- downloads go through clicktocall.download's file sink.

local core = require "clicktocall.core"

local setmetatable = setmetatable

local T = { name = "the transport function", now = core.now }
T.__index = T

local _M = { _VERSION = core._VERSION }

--- new(fn, sleep) -> transport
function _M.new(fn, sleep)
  return setmetatable({ fn = fn, sleep_fn = sleep or core.sleep }, T)
end

function T:send(request)
  return self.fn(request)
end

--- upload(request): the function gets the request as it is, with body_file and body_size and no body,
-- and streams the file itself (docs/API.md, Transports)
function T:upload(request)
  return self.fn(request)
end

function T:sleep(seconds)
  return self.sleep_fn(seconds)
end

function T.scheduler()
  return nil
end

function T.close()
end

return _M
