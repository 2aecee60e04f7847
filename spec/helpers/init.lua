--- Spec helpers: the C core's build path, a mocked transport, canned responses.
-- Loaded by busted as the helper (see .busted) and required by specs as
-- `local h = require "spec.helpers"`.

local cjson = require("cjson").new()

-- the core built for this interpreter: build/5.4, build/luajit, ... unless the
-- command line named a build already (--cpath=./build/asan/?.so must win)
local build = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
if not package.cpath:find("./build/", 1, true) then
  package.cpath = "./build/" .. build .. "/?.so;" .. package.cpath
end

local M = {}

M.SECRET = "s3cr3t-TEST"
M.SECRET_B64 = "czNjcjN0LVRFU1Q="
M.USER_DATA = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"
M.null = cjson.null

function M.json(v)
  return cjson.encode(v)
end

function M.decode(s)
  return cjson.decode(s)
end

--- A provider answer: HTTP 200 with { meta = { success = true, message = "ok" }, data = data }.
function M.ok(data)
  return { status = 200, headers = { ["content-type"] = "application/json" },
           body = cjson.encode { meta = { success = true, message = "ok" }, data = data } }
end

function M.refused(message)
  return { status = 200, headers = {},
           body = cjson.encode { meta = { success = false, message = message }, data = "" } }
end

function M.raw(status, body, headers)
  return { status = status, body = body, headers = headers or {} }
end

--- A page of records with ids first_id, first_id + 1, ... (n of them), as JSON text.
function M.page_body(first_id, n)
  local recs = {}
  for i = 1, n do
    local id = first_id + i - 1
    recs[i] = string.format('{"id":%d,"sessionId":"s-%d","direction":"0","callerNum":"+8613500000002",'
      .. '"calleeNum":"+8613918000010","callEndTime":"2019-03-25 10:30:00","recordFlag":"1",'
      .. '"recordFileDownloadUrl":"http://rec.example.com/%d.wav","duration":"42","callmin":1}', id, id, id)
  end
  return '{"meta":{"success":true,"message":"ok"},"data":[' .. table.concat(recs, ",") .. "]}"
end

function M.page(first_id, n)
  return M.raw(200, M.page_body(first_id, n))
end

-- Sink mode, as the transports do it: the body goes to request.sink in chunks of
-- at most `chunk` bytes (7 by default, so a body crosses several writes) and the
-- response's body is "". A sink that fails ends the request with its error, as
-- transport/ngx.lua does: an error table { kind =, message = } keeps its kind.
local function to_sink(req, res, chunk)
  local body = res.body or ""
  chunk = res.chunk or chunk or 7
  for i = 1, #body, chunk do
    local ok, e = req.sink(body:sub(i, i + chunk - 1))
    if not ok then
      if type(e) == "table" then
        return nil, { kind = e.kind, message = e.message, sent = true }
      end
      return nil, { kind = "protocol", message = "the response body sink failed: " .. tostring(e), sent = true }
    end
  end
  if res.raise_after_body then
    error(res.raise_after_body, 0)
  end
  local out = {}
  for k, v in pairs(res) do
    out[k] = v
  end
  out.body = ""
  return out
end

--- A transport that records each request and answers from a queue.
-- Each queued item is a response table, { err = <transport error> }, or a
-- function(request) returning either. When the queue is empty it answers `default`.
-- With request.sink, the body of a response table is handed to the sink
-- (see to_sink); a response may carry `chunk` (bytes per write) and
-- `raise_after_body` (the transport raises once the body is written).
function M.mock(queue, default)
  local m = { requests = {}, queue = queue or {} }
  m.transport = function(req)
    local copy = {}
    for k, v in pairs(req) do
      copy[k] = v
    end
    m.requests[#m.requests + 1] = copy
    local item = table.remove(m.queue, 1) or default
    if type(item) == "function" then
      return item(req)
    end
    if item == nil then
      return nil, { kind = "network", message = "mock: no answer queued", sent = false }
    end
    if item.err then
      return nil, item.err
    end
    if req.sink and type(item) == "table" and type(item.status) == "number" then
      return to_sink(req, item)
    end
    return item
  end
  return m
end

--- A client over a mock, with sleeps recorded instead of slept.
function M.client(queue, opts, default)
  local clicktocall = require "clicktocall"
  local m = M.mock(queue, default)
  m.sleeps = {}
  m.events = {}
  local o = {
    base_url = "https://api.example.com", app_secret = M.SECRET, user_data = M.USER_DATA,
    transport = m.transport,
    sleep = function(s) m.sleeps[#m.sleeps + 1] = s end,
    on_event = function(e) m.events[#m.events + 1] = e end,
  }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  local client = assert(clicktocall.new(o))
  return client, m
end

--- Every string reachable from v (keys and values), for secret checks.
function M.strings(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "string" then
    out[#out + 1] = v
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do
      M.strings(k, out, seen)
      M.strings(x, out, seen)
    end
  end
  return out
end

return M
