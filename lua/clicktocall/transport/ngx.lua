-- clicktocall.transport.ngx: a non-blocking HTTP/1.1 transport on ngx_lua cosockets.
--
-- Inside OpenResty/nginx a blocking libcurl call stalls the whole worker, so this transport speaks
-- HTTP/1.1 itself over ngx.socket.tcp: it builds the request, parses the status line, the headers and
-- the body (Content-Length, chunked, or read until close), keeps an overall deadline for the whole
-- request, and pools a connection only after a complete, clean exchange (the lua-resty-http rule:
-- a connection with unread bytes, an error or a timeout behind it is closed, never pooled).
--
--   local transport, err = require("clicktocall.transport.ngx").new{
--     pool_size         = 30,    -- connections kept per pool (per worker), default 30
--     keepalive_timeout = 60,    -- seconds a pooled connection may stay idle; 0 turns pooling off
--     ssl_verify        = true,  -- verify the server's certificate (false only for the client's `insecure`)
--     ca_file           = nil,   -- informational: cosockets trust what lua_ssl_trusted_certificate names
--   }
--   local res, err = transport{ method = "POST", url = "https://host/path", headers = {...}, body = "...",
--                               timeout = 10, connect_timeout = 3, max_body = 8388608, sink = nil }
--
-- res = { status = 200, headers = { ["content-type"] = "..." }, body = "..." }
-- err = { kind = "network"|"timeout"|"protocol"|"argument", message = "...", sent = boolean }
--
-- `sent` is false only when provably no byte of the request was written (bad argument, a phase without
-- cosockets, DNS failure, connection refused or timed out, TLS handshake failure). The client retries a
-- dial only then, so a dial is never placed twice.
--
-- Sink mode (`request.sink = function(chunk) -> true | nil, err`): the body is handed over chunk by
-- chunk (at most 64 KiB each) and not kept, response.body is "", and max_body does not apply. When the
-- sink returns nil, err (or raises), the request fails with kind "protocol" and the sink's message; a
-- sink may return an error table { kind =, message = } to choose the kind itself.
--
-- Pool names are scheme:host:port:v|nv, so a connection verified for one purpose is never handed to a
-- request that asked for something else. Redirects are never followed (the client handles 3xx).
-- TLS: cosockets trust only lua_ssl_trusted_certificate; for a host name the certificate must name it (SNI is
-- sent); for an IP-literal host ngx_lua can verify the chain only (it matches names, never IP addresses).
-- A pooled connection the server closed between requests fails the next request with sent = true (bytes
-- were written): the client retries idempotent calls, never a dial.

local ngx = ngx
local type = type
local pairs = pairs
local pcall = pcall
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local concat = table.concat
local sort = table.sort
local str_find = string.find
local str_sub = string.sub
local str_byte = string.byte
local str_lower = string.lower
local str_match = string.match
local str_format = string.format
local str_gsub = string.gsub
local math_floor = math.floor
local math_max = math.max
local math_min = math.min

local _M = { _VERSION = "0.1.0" }

local DEFAULT_POOL_SIZE = 30
local DEFAULT_KEEPALIVE_TIMEOUT = 60   -- seconds
local DEFAULT_TIMEOUT = 10             -- seconds, whole request
local DEFAULT_CONNECT_TIMEOUT = 3      -- seconds
local CHUNK_SIZE = 65536               -- bytes read at a time
local MAX_HEADER_LINES = 200
local MAX_HEADER_BYTES = 65536
local MIN_OP_MS = 1

-- Phases in which ngx.socket.tcp may be used (ngx_lua 0.10.x).
local COSOCKET_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}

local ERR_MT = {
  __tostring = function(e)
    return "[" .. tostring(e.kind) .. "] " .. tostring(e.message)
  end,
}

local function _err(kind, sent, message)
  return setmetatable({ kind = kind, message = message, sent = sent }, ERR_MT)
end

local function _now()
  ngx.update_time()
  return ngx.now()
end

--- Helpers the client uses for backoff and elapsed time inside nginx.
function _M.sleep(seconds)
  return ngx.sleep(seconds)
end

function _M.now()
  return _now()
end

-- Split "http(s)://host[:port]/path?query#frag" into its parts; nil, message when it is not one.
local function _parse_url(url)
  local scheme, rest = str_match(url, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then
    return nil, "the URL " .. url .. " has no scheme://host part"
  end
  scheme = str_lower(scheme)
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "only http and https URLs are allowed, not " .. scheme .. "://"
  end
  local authority, path = str_match(rest, "^([^/?#]*)(.*)$")
  if str_find(authority, "@", 1, true) then
    return nil, "the URL must not carry user information (user@host)"
  end
  local host, port
  if str_sub(authority, 1, 1) == "[" then
    host, port = str_match(authority, "^(%[[%x:.]+%])(.*)$")
  else
    host, port = str_match(authority, "^([^:]*)(.*)$")
  end
  if not host or host == "" then
    return nil, "the URL " .. url .. " has no host"
  end
  local default_port = scheme == "https" and 443 or 80
  local port_num = default_port
  if port ~= "" then
    local digits = str_match(port, "^:(%d+)$")
    port_num = digits and tonumber(digits)
    if not port_num or port_num < 1 or port_num > 65535 then
      return nil, "the URL " .. url .. " has a bad port"
    end
  end
  path = str_gsub(path, "#.*$", "")
  if path == "" then
    path = "/"
  elseif str_sub(path, 1, 1) == "?" then
    path = "/" .. path
  end
  if str_find(path, "[%z\1-\32\127]") then
    return nil, "the URL path holds spaces or control characters"
  end
  local host_header = host
  if port_num ~= default_port then
    host_header = host .. ":" .. port_num
  end
  local connect_host = host
  if str_sub(host, 1, 1) == "[" then
    connect_host = str_sub(host, 2, -2)
  end
  return {
    scheme = scheme, host = str_lower(host), connect_host = connect_host, port = port_num,
    path = path, host_header = host_header,
  }
end

-- A per-request clock: the whole request must finish by `deadline`; each operation gets the time left.
local function _remaining_ms(deadline)
  local left = (deadline - _now()) * 1000
  if left < MIN_OP_MS then
    return nil
  end
  return math_floor(left)
end

local function _set_timeouts(sock, deadline, connect_ms, op_ms)
  local left = _remaining_ms(deadline)
  if not left then
    return nil
  end
  sock:settimeouts(math_max(MIN_OP_MS, math_min(connect_ms, left)),
                   math_max(MIN_OP_MS, math_min(op_ms, left)),
                   math_max(MIN_OP_MS, math_min(op_ms, left)))
  return true
end

local function _timeout_err(timeout, sent, what)
  return _err("timeout", sent, str_format("the request timed out after %g s (%s)", timeout, what))
end

-- Turn a cosocket connect error into a sentence that says how to fix it.
local function _connect_error(u, e, connect_timeout)
  if e == "timeout" then
    return _err("timeout", false, str_format("connecting to %s:%d timed out after %g s",
                                             u.host, u.port, connect_timeout))
  end
  if str_find(e, "no resolver defined", 1, true) then
    return _err("network", false, "cannot resolve " .. u.host .. ": no resolver is defined; add a `resolver` " ..
                "directive to nginx.conf (e.g. \"resolver 127.0.0.53 ipv6=off;\", see /etc/resolv.conf)")
  end
  if str_find(e, "could not be resolved", 1, true) then
    local kind = str_find(e, "timed out", 1, true) and "timeout" or "network"
    return _err(kind, false, "cannot resolve " .. u.host .. " (" .. e .. "); check the `resolver` directive")
  end
  return _err("network", false, str_format("cannot connect to %s:%d: %s", u.host, u.port, e))
end

local function _tls_error(u, e, verify)
  local msg = str_format("TLS handshake with %s:%d failed: %s", u.host, u.port, tostring(e))
  if verify and (str_find(e, "unable to get local issuer certificate", 1, true)
                 or str_find(e, "unable to get issuer certificate", 1, true)
                 or str_find(e, "self signed certificate", 1, true)
                 or str_find(e, "self-signed certificate", 1, true)) then
    msg = msg .. "; nginx does not trust the server's certificate authority: set " ..
          "`lua_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;` (and `lua_ssl_verify_depth 5;`) " ..
          "in the http block (cosockets ignore the system store and ca_file)"
  elseif str_find(e, "host mismatch", 1, true) then
    msg = msg .. "; the certificate does not name " .. u.host
  end
  return _err("network", false, msg)
end

local function _validate_header(name, value)
  if type(name) ~= "string" or not str_find(name, "^[!#$%%&'*+%-.^_`|~%w]+$") then
    return nil, "bad request header name " .. tostring(name)
  end
  local tv = type(value)
  if tv == "number" then
    value = tostring(value)
  elseif tv ~= "string" then
    return nil, "the request header " .. name .. " must be a string, not a " .. tv
  end
  if str_find(value, "[\r\n%z]") then
    return nil, "the request header " .. name .. " holds a line break or NUL"
  end
  return value
end

-- Build the request as a table of strings (cosockets send tables without concatenating them).
local function _build_request(req, u)
  local method = req.method
  local body = req.body
  local out = { method, " ", u.path, " HTTP/1.1\r\n" }
  local n = #out
  local names = {}
  local seen_host, connection = false, nil
  local headers = req.headers or {}
  for name in pairs(headers) do
    names[#names + 1] = name
  end
  sort(names, function(a, b) return tostring(a) < tostring(b) end)
  local lines = {}
  for i = 1, #names do
    local name = names[i]
    local value, verr = _validate_header(name, headers[name])
    if not value then
      return nil, verr
    end
    local lname = str_lower(name)
    if lname == "content-length" or lname == "transfer-encoding" then -- luacheck: ignore 542
      -- framing is ours: the body below decides it
    else
      if lname == "host" then
        seen_host = true
      elseif lname == "connection" then
        connection = value
      end
      lines[#lines + 1] = name
      lines[#lines + 1] = ": "
      lines[#lines + 1] = value
      lines[#lines + 1] = "\r\n"
    end
  end
  if not seen_host then
    out[n + 1], out[n + 2], out[n + 3] = "Host: ", u.host_header, "\r\n"
    n = n + 3
  end
  for i = 1, #lines do
    out[n + i] = lines[i]
  end
  n = n + #lines
  if not connection then
    out[n + 1] = "Connection: keep-alive\r\n"
    n = n + 1
  end
  if body ~= nil or method == "POST" or method == "PUT" or method == "PATCH" then
    out[n + 1], out[n + 2], out[n + 3] = "Content-Length: ", tostring(body and #body or 0), "\r\n"
    n = n + 3
  end
  out[n + 1] = "\r\n"
  if body and #body > 0 then
    out[n + 2] = body
  end
  local wants_close = connection and str_find(str_lower(connection), "close", 1, true) ~= nil
  return out, wants_close
end

local function _has_token(value, token)
  if not value then
    return false
  end
  value = str_lower(value)
  for item in value:gmatch("[^,%s]+") do
    if item == token then
      return true
    end
  end
  return false
end

-- The exchange itself. Returns res | nil, err, plus `reusable` (true only after a complete, clean exchange).
-- `state.sent` records whether a byte may have left, for the pcall wrapper.
local function _exchange(self, sock, req, u, state)
  local timeout = state.timeout
  local deadline = state.deadline
  local connect_ms = state.connect_ms
  local op_ms = state.op_ms
  local verify = self.ssl_verify

  local ok, e = sock:connect(u.connect_host, u.port, { pool = state.pool, pool_size = self.pool_size })
  if not ok then
    return nil, _connect_error(u, e, math_min(state.connect_timeout, timeout))
  end

  if u.scheme == "https" and (sock:getreusedtimes() or 0) == 0 then
    if not _set_timeouts(sock, deadline, connect_ms, op_ms) then
      return nil, _timeout_err(timeout, false, "before the TLS handshake")
    end
    local sess
    sess, e = sock:sslhandshake(nil, u.host_name, verify)
    if not sess then
      if e == "timeout" then
        return nil, _err("timeout", false, str_format("the TLS handshake with %s:%d timed out", u.host, u.port))
      end
      return nil, _tls_error(u, e, verify)
    end
  end

  local request_bytes, wants_close = state.request_bytes, state.wants_close

  if not _set_timeouts(sock, deadline, connect_ms, op_ms) then
    return nil, _timeout_err(timeout, false, "before sending")
  end
  state.sent = true
  local bytes
  bytes, e = sock:send(request_bytes)
  if not bytes then
    if e == "timeout" then
      return nil, _timeout_err(timeout, true, "sending the request")
    end
    return nil, _err("network", true, "sending the request to " .. u.host .. " failed: " .. tostring(e))
  end

  -- All reads go through receiveany() into this buffer: a cosocket's receive(n) or receive("*l") restarts
  -- its read timeout at every byte, so a server trickling bytes could hold a request past its deadline.
  -- receiveany returns as soon as anything arrives, and the deadline is checked before every read.
  local buf, pos = "", 1   -- bytes read and not yet consumed: buf:sub(pos)

  local function fill(what)
    if not _set_timeouts(sock, deadline, connect_ms, op_ms) then
      return nil, _timeout_err(timeout, true, what)
    end
    local data, rerr = sock:receiveany(CHUNK_SIZE)
    if not data then
      if rerr == "timeout" then
        return nil, _timeout_err(timeout, true, what)
      end
      if rerr == "closed" then
        return nil, _err("network", true, str_format("the connection closed while reading %s", what)),
               "closed"
      end
      return nil, _err("network", true, str_format("reading %s from %s failed: %s", what, u.host, tostring(rerr)))
    end
    return data
  end

  local function read_line(what)
    while true do
      local nl = str_find(buf, "\n", pos, true)
      if nl then
        local line = str_sub(buf, pos, nl - 1)
        pos = nl + 1
        if str_byte(line, -1) == 13 then
          line = str_sub(line, 1, -2)
        end
        return line
      end
      if #buf - pos + 1 > MAX_HEADER_BYTES then
        return nil, _err("protocol", true, str_format("a line of the response (%s) is longer than %d bytes",
                                                      what, MAX_HEADER_BYTES))
      end
      local data, ferr = fill(what)
      if not data then
        return nil, ferr
      end
      buf = str_sub(buf, pos) .. data
      pos = 1
    end
  end

  -- Up to `max` bytes of body: what is buffered, else one read. nil, err, "closed" at the end of the stream.
  local function read_some(max, what)
    local avail = #buf - pos + 1
    if avail > 0 then
      local n = math_min(avail, max)
      local data = str_sub(buf, pos, pos + n - 1)
      pos = pos + n
      if pos > #buf then
        buf, pos = "", 1
      end
      return data
    end
    local data, ferr, cause = fill(what)
    if not data then
      return nil, ferr, cause
    end
    if #data > max then
      buf, pos = data, max + 1
      return str_sub(data, 1, max)
    end
    return data
  end

  -- Status line (skipping interim 1xx answers) and headers.
  local status, version, headers
  local header_bytes, header_lines = 0, 0
  while true do
    local line, rerr = read_line("the status line")
    if not line then
      return nil, rerr
    end
    local v, code = str_match(line, "^HTTP/(%d%.%d) (%d%d%d)")
    if not v then
      return nil, _err("protocol", true, "the server did not answer with an HTTP status line")
    end
    version, status = v, tonumber(code)
    headers = {}
    local last
    while true do
      local hline
      hline, rerr = read_line("the response headers")
      if not hline then
        return nil, rerr
      end
      if hline == "" then
        break
      end
      header_lines = header_lines + 1
      header_bytes = header_bytes + #hline
      if header_lines > MAX_HEADER_LINES or header_bytes > MAX_HEADER_BYTES then
        return nil, _err("protocol", true, str_format("the response headers exceed %d lines or %d bytes",
                                                      MAX_HEADER_LINES, MAX_HEADER_BYTES))
      end
      local first = str_sub(hline, 1, 1)
      if (first == " " or first == "\t") and last then
        headers[last] = headers[last] .. " " .. str_match(hline, "^%s*(.-)%s*$")
      else
        local name, value = str_match(hline, "^([^:%s]+)%s*:%s*(.-)%s*$")
        if not name then
          return nil, _err("protocol", true, "the response holds a malformed header line")
        end
        name = str_lower(name)
        if headers[name] then
          headers[name] = headers[name] .. ", " .. value
        else
          headers[name] = value
        end
        last = name
      end
    end
    if status >= 200 or status < 100 then
      break
    end
    if status == 101 then
      return nil, _err("protocol", true, "the server switched protocols (101), which this transport does not speak")
    end
  end

  local res = { status = status, headers = headers, body = "" }
  local reusable = version == "1.1" and not wants_close and not _has_token(headers["connection"], "close")

  if req.method == "HEAD" or status == 204 or status == 304 then
    return res, nil, reusable and pos > #buf
  end

  local sink = req.sink
  local max_body = (not sink) and req.max_body or nil
  local parts, nparts, total = {}, 0, 0

  local function too_large()
    return _err("protocol", true, str_format("the response body is larger than max_body (%d bytes)", max_body))
  end

  local function take(chunk)
    total = total + #chunk
    if sink then
      local sok, r1, r2 = pcall(sink, chunk)
      if not sok then
        return nil, _err("protocol", true, "the response body sink raised an error: " .. tostring(r1))
      end
      if not r1 then
        if type(r2) == "table" and r2.kind then
          return nil, _err(r2.kind, true, tostring(r2.message))
        end
        return nil, _err("protocol", true, "the response body sink failed: " .. tostring(r2))
      end
      return true
    end
    if max_body and total > max_body then
      return nil, too_large()
    end
    nparts = nparts + 1
    parts[nparts] = chunk
    return true
  end

  local te = headers["transfer-encoding"]
  local cl = headers["content-length"]
  if te and not _has_token(te, "identity") then
    if not _has_token(te, "chunked") then
      return nil, _err("protocol", true, "the response uses an unsupported Transfer-Encoding: " .. te)
    end
    while true do
      local line, rerr = read_line("a chunk size")
      if not line then
        return nil, rerr
      end
      local hex = str_match(line, "^%s*(%x+)%s*[;]?")
      local size = hex and #hex <= 12 and tonumber(hex, 16)
      if not size then
        return nil, _err("protocol", true, "the response holds a malformed chunk size line")
      end
      if size == 0 then
        -- trailers, up to the empty line
        repeat
          line, rerr = read_line("the chunked trailer")
          if not line then
            return nil, rerr
          end
        until line == ""
        break
      end
      if max_body and total + size > max_body then
        return nil, too_large()
      end
      local left = size
      while left > 0 do
        local data, derr, cause = read_some(math_min(left, CHUNK_SIZE), "the response body")
        if not data then
          if cause == "closed" then
            derr.message = str_format("the connection closed in the middle of a chunk (got %d bytes of the body)",
                                      total)
          end
          return nil, derr
        end
        local tok, terr = take(data)
        if not tok then
          return nil, terr
        end
        left = left - #data
      end
      local crlf, cerr = read_line("a chunk end")
      if not crlf then
        return nil, cerr
      end
      if crlf ~= "" then
        return nil, _err("protocol", true, "a chunk of the response is longer than its size line says")
      end
    end
  elseif cl then
    local length = str_match(cl, "^%d+$") and tonumber(cl)
    if not length then
      return nil, _err("protocol", true, "the response has a bad Content-Length: " .. cl)
    end
    if max_body and length > max_body then
      return nil, _err("protocol", true, str_format(
        "the response body (Content-Length %d) is larger than max_body (%d bytes)", length, max_body))
    end
    local left = length
    while left > 0 do
      local data, derr, cause = read_some(math_min(left, CHUNK_SIZE), "the response body")
      if not data then
        if cause == "closed" then
          derr.message = str_format("the connection closed before the whole body arrived: got %d of %d bytes",
                                    total, length)
        else
          derr.message = derr.message .. str_format(" (got %d of %d bytes)", total, length)
        end
        return nil, derr
      end
      local tok, terr = take(data)
      if not tok then
        return nil, terr
      end
      left = left - #data
    end
  else
    -- No framing: the body runs until the server closes; such a connection cannot be reused.
    reusable = false
    while true do
      local data, derr, cause = read_some(CHUNK_SIZE, "the response body")
      if not data then
        if cause == "closed" then
          break
        end
        return nil, derr
      end
      local tok, terr = take(data)
      if not tok then
        return nil, terr
      end
    end
  end

  -- Bytes beyond the framed body (a misbehaving server): the connection is not clean, do not pool it.
  if pos <= #buf then
    reusable = false
  end

  if not sink and nparts > 0 then
    res.body = nparts == 1 and parts[1] or concat(parts, "", 1, nparts)
  end
  return res, nil, reusable
end

local function _request(self, req)
  local phase = ngx.get_phase()
  if not COSOCKET_PHASES[phase] then
    return nil, _err("argument", false, "cosockets are not available in the " .. tostring(phase) ..
                     " phase; run clicktocall from a content/access/rewrite/timer context, e.g. ngx.timer.at(0, fn)")
  end
  if type(req) ~= "table" then
    return nil, _err("argument", false, "the request must be a table, not a " .. type(req))
  end
  local method = req.method
  if type(method) ~= "string" or not str_find(method, "^%u+$") then
    return nil, _err("argument", false, "the request method must be an upper-case word such as POST or GET")
  end
  if type(req.url) ~= "string" then
    return nil, _err("argument", false, "the request url must be a string")
  end
  if req.body ~= nil and type(req.body) ~= "string" then
    return nil, _err("argument", false, "the request body must be a string or nil")
  end
  if req.headers ~= nil and type(req.headers) ~= "table" then
    return nil, _err("argument", false, "the request headers must be a table")
  end
  if req.sink ~= nil and type(req.sink) ~= "function" then
    return nil, _err("argument", false, "the request sink must be a function")
  end
  local max_body = req.max_body
  if max_body ~= nil and (type(max_body) ~= "number" or max_body < 0) then
    return nil, _err("argument", false, "max_body must be a non-negative number of bytes")
  end
  local timeout = tonumber(req.timeout) or DEFAULT_TIMEOUT
  local connect_timeout = tonumber(req.connect_timeout) or DEFAULT_CONNECT_TIMEOUT
  if timeout <= 0 or connect_timeout <= 0 then
    return nil, _err("argument", false, "timeout and connect_timeout must be positive numbers of seconds")
  end

  local u, uerr = _parse_url(req.url)
  if not u then
    return nil, _err("argument", false, uerr)
  end
  -- SNI and the certificate's name check use the host name; ngx_lua matches names with X509_check_host,
  -- which never matches an IP address, so for an IP literal only the chain is verified (no SNI either).
  if not (str_find(u.connect_host, "^%d+%.%d+%.%d+%.%d+$") or str_find(u.connect_host, ":", 1, true)) then
    u.host_name = u.connect_host
  end
  local request_bytes, wants_close = _build_request(req, u)
  if not request_bytes then
    return nil, _err("argument", false, wants_close)
  end

  local verify = self.ssl_verify
  local state = {
    timeout = timeout,
    connect_timeout = connect_timeout,
    deadline = _now() + timeout,
    connect_ms = math_max(MIN_OP_MS, math_floor(connect_timeout * 1000)),
    op_ms = math_max(MIN_OP_MS, math_floor(timeout * 1000)),
    pool = u.scheme .. ":" .. u.host .. ":" .. u.port .. ":" .. (verify and "v" or "nv"),
    request_bytes = request_bytes,
    wants_close = wants_close,
    sent = false,
  }

  local sock, serr = ngx.socket.tcp()
  if not sock then
    return nil, _err("network", false, "cannot create a cosocket: " .. tostring(serr))
  end
  local connect_left = math_min(state.connect_ms, math_floor(timeout * 1000))
  sock:settimeouts(math_max(MIN_OP_MS, connect_left), state.op_ms, state.op_ms)

  local ok, res, err, reusable = pcall(_exchange, self, sock, req, u, state)
  if not ok then
    sock:close()
    return nil, _err("protocol", state.sent, "internal error in the ngx transport: " .. tostring(res))
  end
  if not res then
    sock:close()
    return nil, err
  end
  if reusable and self.keepalive_ms > 0 then
    local kok = sock:setkeepalive(self.keepalive_ms, self.pool_size)
    if not kok then
      sock:close()
    end
  else
    sock:close()
  end
  return res
end

--- Create a transport: a function(request) -> response | nil, err. Returns nil, err_string on bad options.
function _M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    return nil, "ngx transport options must be a table"
  end
  opts = opts or {}
  if type(ngx) ~= "table" or type(ngx.socket) ~= "table" or type(ngx.get_phase) ~= "function" then
    return nil, "the ngx transport needs OpenResty/ngx_lua (there is no ngx.socket here)"
  end
  local pool_size = opts.pool_size
  if pool_size == nil then
    pool_size = DEFAULT_POOL_SIZE
  elseif type(pool_size) ~= "number" or pool_size < 1 or pool_size ~= math_floor(pool_size) then
    return nil, "pool_size must be a positive integer"
  end
  local keepalive_timeout = opts.keepalive_timeout
  if keepalive_timeout == nil then
    keepalive_timeout = DEFAULT_KEEPALIVE_TIMEOUT
  elseif type(keepalive_timeout) ~= "number" or keepalive_timeout < 0 then
    return nil, "keepalive_timeout must be a non-negative number of seconds (0 turns pooling off)"
  end
  local ssl_verify = opts.ssl_verify
  if ssl_verify == nil then
    ssl_verify = true
  elseif type(ssl_verify) ~= "boolean" then
    return nil, "ssl_verify must be a boolean"
  end
  if opts.ca_file ~= nil and type(opts.ca_file) ~= "string" then
    return nil, "ca_file must be a string"
  end
  local self = {
    pool_size = pool_size,
    keepalive_ms = math_floor(keepalive_timeout * 1000),
    ssl_verify = ssl_verify,
    ca_file = opts.ca_file,
  }
  return function(req)
    return _request(self, req)
  end
end

return _M
