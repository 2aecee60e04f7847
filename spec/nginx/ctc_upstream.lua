-- Upstream behaviours for spec/ngx_transport_spec.lua: one handler, dispatched on the URI.
local cjson = require "cjson.safe"

local _M = {}

local function pattern_bytes(n)
  -- deterministic content: "0123456789abcdef" repeated, cut to n bytes
  local unit = "0123456789abcdef"
  return string.rep(unit, math.floor(n / 16) + 1):sub(1, n)
end
_M.pattern_bytes = pattern_bytes

local MIB = string.rep("x", 1024 * 1024)

local handlers = {}

handlers["/echo"] = function()
  ngx.req.read_body()
  local body = ngx.req.get_body_data() or ""
  local out = cjson.encode({
    method = ngx.req.get_method(),
    uri = ngx.var.request_uri,
    raw_header = ngx.req.raw_header(),
    body = body,
    connection = tonumber(ngx.var.connection),
    connection_requests = tonumber(ngx.var.connection_requests),
    https = ngx.var.https,
  })
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #out
  ngx.print(out)
end

handlers["/json"] = function()
  local out = '{"meta":{"success":true,"message":"ok"},"data":"session-123"}'
  ngx.header["Content-Type"] = "application/json;charset=UTF-8"
  ngx.header["X-Mixed-Case"] = "Value-Kept"
  ngx.header["X-Multi"] = { "a", "b" }
  ngx.header["X-Conn"] = ngx.var.connection
  ngx.header["X-Conn-Requests"] = ngx.var.connection_requests
  ngx.header["Content-Length"] = #out
  ngx.print(out)
end

handlers["/heads"] = function()
  -- k headers of b bytes each: past clicktocall.limits' header limits or within them
  local k, b = tonumber(ngx.var.arg_k) or 1, tonumber(ngx.var.arg_b) or 10
  for i = 1, k do
    ngx.header["X-H" .. i] = string.rep("h", b)
  end
  ngx.header["Content-Length"] = 2
  ngx.print("ok")
end

handlers["/close"] = function()
  ngx.header["X-Conn"] = ngx.var.connection
  ngx.header["Content-Length"] = 6
  ngx.print("closed")
end

handlers["/chunked"] = function()
  ngx.header["Content-Type"] = "text/plain"
  ngx.header["X-Conn"] = ngx.var.connection
  for i = 1, 5 do
    ngx.print("part" .. i .. ";")
    ngx.flush(true)
  end
end

handlers["/slow"] = function()
  local d = tonumber(ngx.var.arg_d) or 2
  ngx.sleep(d)
  ngx.header["Content-Length"] = 4
  ngx.print("slow")
end

handlers["/trickle"] = function()
  -- headers at once, then one byte every d seconds (each read is quick, the whole is slow)
  local n, d = tonumber(ngx.var.arg_n) or 20, tonumber(ngx.var.arg_d) or 0.2
  ngx.header["Content-Length"] = n
  ngx.send_headers()
  ngx.flush(true)
  for _ = 1, n do
    ngx.sleep(d)
    local ok = ngx.print("t")
    if not ok then return end
    ngx.flush(true)
  end
end

handlers["/huge"] = function()
  -- chunked, mb MiB
  local mb = tonumber(ngx.var.arg_mb) or 50
  ngx.header["Content-Type"] = "application/octet-stream"
  for _ = 1, mb do
    local ok = ngx.print(MIB)
    if not ok then return end
    ok = ngx.flush(true)
    if not ok then return end
  end
end

handlers["/huge_cl"] = function()
  local mb = tonumber(ngx.var.arg_mb) or 50
  ngx.header["Content-Length"] = mb * 1024 * 1024
  for _ = 1, mb do
    local ok = ngx.print(MIB)
    if not ok then return end
    ok = ngx.flush(true)
    if not ok then return end
  end
end

handlers["/big"] = function()
  local n = tonumber(ngx.var.arg_bytes) or 1000000
  ngx.header["Content-Length"] = n
  ngx.print(pattern_bytes(n))
end

handlers["/status204"] = function()
  ngx.header["X-Conn"] = ngx.var.connection
  ngx.exit(204)
end

handlers["/redirect"] = function()
  ngx.header["Location"] = "/json"
  ngx.header["Content-Length"] = 5
  ngx.status = 302
  ngx.print("moved")
end

-- Raw answers through the request socket: exactly these bytes, then the connection closes.
local function raw(bytes)
  local sock = assert(ngx.req.socket(true))
  sock:send(bytes)
end

handlers["/cut"] = function()
  raw("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" .. pattern_bytes(100))
end

handlers["/cut_chunked"] = function()
  raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" .. pattern_bytes(50))
end

handlers["/http10"] = function()
  raw("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nX-Old: yes\r\n\r\nold-style body without a length")
end

handlers["/garbage"] = function()
  raw("SPDY/9 what\r\n\r\n")
end

handlers["/folded"] = function()
  raw("HTTP/1.1 200 OK\r\nX-Folded: one\r\n two\r\nSet-Cookie: a=1\r\nSET-COOKIE: b=2\r\n" ..
      "Content-Length: 2\r\nConnection: close\r\n\r\nok")
end

handlers["/continue"] = function()
  raw("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 7\r\nConnection: close\r\n\r\ncreated")
end

-- A server that poisons its keep-alive connection: it takes the connection over and serves requests on it
-- itself; each gets its answer ("answer <n>", n from the request's ?n=) and then a second, stray complete
-- answer ("stray <n>"): 150 ms later (mode=later) or in the same write (mode=same). The shared dict counts the
-- requests that arrived (ctc_results "seen:<tag>") and marks each stray sent ("stray:<tag>:<n>").
local function http_answer(body)
  return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #body ..
         "\r\nConnection: keep-alive\r\n\r\n" .. body
end

handlers["/stray"] = function()
  local dict = ngx.shared.ctc_results
  local tag, mode = ngx.var.arg_tag or "t", ngx.var.arg_mode or "later"
  local sock = assert(ngx.req.socket(true))
  local uri = ngx.var.request_uri
  while true do
    dict:incr("seen:" .. tag, 1, 0)
    local n = uri:match("[?&]n=(%d+)") or "?"
    local conn = "conn " .. ngx.var.connection .. ": "
    if mode == "same" then
      sock:send(http_answer(conn .. "answer " .. n) .. http_answer(conn .. "stray " .. n))
    else
      sock:send(http_answer(conn .. "answer " .. n))
      ngx.sleep(0.15)
      sock:send(http_answer(conn .. "stray " .. n))
    end
    dict:set("stray:" .. tag .. ":" .. n, true)
    -- the next request on this connection, if the client sends one
    sock:settimeout(30000)
    local line = sock:receive("*l")
    if not line then
      return
    end
    uri = line:match("^%u+ (%S+) HTTP/") or ""
    repeat
      local h = sock:receive("*l")
    until not h or h == ""
  end
end

function _M.handle()
  ngx.shared.ctc_conns:set("c" .. ngx.var.server_port .. ":" .. ngx.var.connection, true)
  local h = handlers[ngx.var.uri]
  if not h then
    ngx.status = 404
    ngx.header["Content-Length"] = 9
    ngx.print("not found")
    return
  end
  h()
end

return _M
