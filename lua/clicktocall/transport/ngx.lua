-- clicktocall.transport.ngx: a non-blocking HTTP/1.1 transport on ngx_lua cosockets.
--
-- Inside OpenResty/nginx a blocking libcurl call stalls the whole worker, so this transport speaks HTTP/1.1
-- itself over ngx.socket.tcp. The wire format (URL parsing, the request head and its cache, status, header
-- and chunk-size lines) is clicktocall.http1, plain functions over strings; this file is the driver: the
-- deadline, connect/TLS/pool, buffered reads, framing (Content-Length, chunked, until close) and `sent`.
--
-- Why not lua-resty-http: Debian 12 ships no lua-resty-http package (the project installs from Debian only),
-- and its reads are per operation: each receive gets a fresh timeout, so a server that trickles one byte a
-- second holds a request forever. A whole-request deadline needs every read to be given only the time left,
-- which means owning the read loop (every read here goes through receiveany with the remaining time).
--
-- A connection is pooled only after a complete, clean exchange (a connection with unread bytes, an error or
-- a timeout behind it is closed, never pooled).
--
--   local transport, err = require("clicktocall.transport.ngx").new{
--     pool_size         = 30,    -- connections kept per pool (per worker), default 30
--     keepalive_timeout = 60,    -- seconds a pooled connection may stay idle; 0 turns pooling off
--     ssl_verify        = true,  -- verify the server's certificate (false only for the client's `insecure`)
--     sleep             = nil,   -- the client's `sleep` option (else ngx.sleep)
--   }                             -- (cosockets trust only lua_ssl_trusted_certificate: no ca_file, no proxy)
--   local res, err = transport:send{ method = "POST", url = "https://host/path", headers = {...}, body = "...",
--                                    timeout = 10, connect_timeout = 3, max_body = 8388608, sink = nil }
--   transport:sleep(s), transport:now(), transport:scheduler(n) (ngx.thread, clicktocall.batch), transport:close()
--
-- res = { status = 200, headers = { ["content-type"] = "..." }, body = "..." }
-- err = an error value of clicktocall.errors: kind = "network"|"timeout"|"protocol"|"argument", message,
--       sent, retryable
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
-- request that asked for something else. keepalive_timeout = 0 pools nothing: each request opens its own
-- connection (from a pool name nothing is ever put into), sends Connection: close and closes it.
-- A connection with bytes beyond the framed answer is never pooled; a pooled one that becomes readable while
-- idle (a stray answer) is closed by ngx_lua's pool when the worker sees the event (proved by
-- spec/ngx_transport_spec.lua, "stray answer"). Redirects are never followed (the client handles 3xx).
-- TLS: cosockets trust only lua_ssl_trusted_certificate; for a host name the certificate must name it (SNI is
-- sent); for an IP-literal host ngx_lua can verify the chain only (it matches names, never IP addresses).
-- A pooled connection the server closed between requests fails the next request with sent = true (bytes
-- were written): the client retries idempotent calls, never a dial.
-- An upload the server answers before taking the whole body (a store refusing a large PUT, then closing):
-- its answer (3xx and up) is the result, not the broken pipe; a 2xx or no answer leaves the send's error.

local http1 = require "clicktocall.http1"
local errors = require "clicktocall.errors"

local ngx = ngx
local type = type
local pcall = pcall
local tostring = tostring
local setmetatable = setmetatable
local tonumber = tonumber
local concat = table.concat
local str_find = string.find
local str_sub = string.sub
local str_byte = string.byte
local str_match = string.match
local str_format = string.format
local math_floor = math.floor
local math_max = math.max
local math_min = math.min

local _M = { _VERSION = require "clicktocall.version" }

local DEFAULT_POOL_SIZE = 30
local DEFAULT_KEEPALIVE_TIMEOUT = 60   -- seconds
local DEFAULT_TIMEOUT = 10             -- seconds, whole request
local DEFAULT_CONNECT_TIMEOUT = 3      -- seconds
local CHUNK_SIZE = 65536               -- bytes read at a time
local LIMITS = require "clicktocall.limits"
local MAX_HEADER_LINES = LIMITS.header_lines     -- the libcurl transport's limits too
local MAX_HEADER_BYTES = LIMITS.header_bytes
local HEADERS_TOO_LARGE = str_format("the response headers exceed %d lines or %d bytes", MAX_HEADER_LINES,
                                     MAX_HEADER_BYTES)
local MIN_OP_MS = 1

-- Phases in which ngx.socket.tcp may be used (ngx_lua 0.10.x).
local COSOCKET_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}

local new_error = errors.new
local KINDS = errors.KINDS

local function _err(kind, sent, message)
  return new_error(kind, message, { sent = sent })
end

local parse_url = http1.parse_url
local header_block = http1.header_block
local build_request = http1.request
local status_line = http1.status_line
local header_line = http1.header_line
local chunk_size = http1.chunk_size
local has_token = http1.has_token

local function _now()
  ngx.update_time()
  return ngx.now()
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

local EMPTY = {}

-- All reads go through receiveany() into st.buf (bytes not yet consumed: st.buf:sub(st.pos)): a cosocket's
-- receive(n) or receive("*l") restarts its read timeout at every byte, so a server trickling bytes could hold a
-- request past its deadline. receiveany returns as soon as anything arrives, and the deadline is checked before
-- every read. The helpers below take the per-exchange state table `st` (no closures: the JIT cannot compile
-- their creation).
local function _fill(st, what)
  local sock = st.sock
  if not _set_timeouts(sock, st.deadline, st.connect_ms, st.op_ms) then
    return nil, _timeout_err(st.timeout, true, what)
  end
  local data, rerr = sock:receiveany(CHUNK_SIZE)
  if not data then
    if rerr == "timeout" then
      return nil, _timeout_err(st.timeout, true, what)
    end
    if rerr == "closed" then
      return nil, _err("network", true, str_format("the connection closed while reading %s", what)),
             "closed"
    end
    return nil, _err("network", true, str_format("reading %s from %s failed: %s", what, st.u.host, tostring(rerr)))
  end
  return data
end

-- The next line as bounds in st.buf: first, last (a trailing CR excluded; last < first for an empty line).
local function _next_line(st, what, too_long)
  while true do
    local buf, pos = st.buf, st.pos
    local nl = str_find(buf, "\n", pos, true)
    if nl then
      st.pos = nl + 1
      local last = nl - 1
      if last >= pos and str_byte(buf, last) == 13 then
        last = last - 1
      end
      return pos, last
    end
    if #buf - pos + 1 > MAX_HEADER_BYTES then
      return nil, _err("protocol", true, too_long or str_format("a line of the response (%s) is longer than %d bytes",
                                                                what, MAX_HEADER_BYTES))
    end
    local data, ferr = _fill(st, what)
    if not data then
      return nil, ferr
    end
    if pos > #buf then
      st.buf = data
    else
      st.buf = str_sub(buf, pos) .. data
    end
    st.pos = 1
  end
end

-- Up to `max` bytes of body: what is buffered, else one read. nil, err, "closed" at the end of the stream.
local function _read_some(st, max, what)
  local buf, pos = st.buf, st.pos
  local avail = #buf - pos + 1
  if avail > 0 then
    local n = math_min(avail, max)
    local data = str_sub(buf, pos, pos + n - 1)
    pos = pos + n
    if pos > #buf then
      st.buf, st.pos = "", 1
    else
      st.pos = pos
    end
    return data
  end
  local data, ferr, cause = _fill(st, what)
  if not data then
    return nil, ferr, cause
  end
  if #data > max then
    st.buf, st.pos = data, max + 1
    return str_sub(data, 1, max)
  end
  return data
end

local function _too_large(st)
  return _err("protocol", true, str_format("the response body is larger than max_body (%d bytes)", st.max_body))
end

-- Hand a piece of body to the sink or keep it.
local function _take(st, chunk)
  local total = st.total + #chunk
  st.total = total
  local sink = st.sink
  if sink then
    local sok, r1, r2 = pcall(sink, chunk)
    if not sok then
      return nil, _err("protocol", true, "the response body sink raised an error: " .. tostring(r1))
    end
    if not r1 then
      if type(r2) == "table" and r2.kind then
        return nil, _err(KINDS[r2.kind] and r2.kind or "protocol", true, tostring(r2.message))
      end
      return nil, _err("protocol", true, "the response body sink failed: " .. tostring(r2))
    end
    return true
  end
  local max_body = st.max_body
  if max_body and total > max_body then
    return nil, _too_large(st)
  end
  local nparts = st.nparts + 1
  st.nparts = nparts
  if nparts == 1 then
    st.first = chunk
  else
    local parts = st.parts
    if not parts then
      parts = { st.first }
      st.parts = parts
    end
    parts[nparts] = chunk
  end
  return true
end

-- Status line (skipping interim 1xx answers) and headers: status, headers, http11 | nil, err.
local function _read_head(st)
  local status, headers, http11
  while true do
    local header_bytes, header_lines = 0, 0 -- each answer's own, an interim 1xx too
    local s, e = _next_line(st, "the status line")
    if not s then
      return nil, e
    end
    status, http11 = status_line(st.buf, s, e)
    if not status then
      return nil, _err("protocol", true, "the server did not answer with an HTTP status line")
    end
    headers = {}
    local last
    while true do
      s, e = _next_line(st, "the response headers", HEADERS_TOO_LARGE)
      if not s then
        return nil, e
      end
      if e < s then
        break
      end
      header_lines = header_lines + 1
      header_bytes = header_bytes + (e - s + 1)
      if header_lines > MAX_HEADER_LINES or header_bytes > MAX_HEADER_BYTES then
        return nil, _err("protocol", true, HEADERS_TOO_LARGE)
      end
      last = header_line(st.buf, s, e, headers, last)
      if not last then
        return nil, _err("protocol", true, "the response holds a malformed header line")
      end
    end
    if status >= 200 or status < 100 then
      break
    end
    if status == 101 then
      return nil, _err("protocol", true, "the server switched protocols (101), which this transport does not speak")
    end
  end
  return status, headers, http11
end

-- Reads exactly n more body bytes into the body (or the sink). On failure: nil, err, and the read's
-- cause ("closed", ...) when the connection failed, or no cause when the body itself was refused.
local function _read_body_bytes(st, left)
  while left > 0 do
    local data, derr, cause = _read_some(st, math_min(left, CHUNK_SIZE), "the response body")
    if not data then
      return nil, derr, cause or false
    end
    local tok, terr = _take(st, data)
    if not tok then
      return nil, terr
    end
    left = left - #data
  end
  return true
end

local function _read_chunked(st)
  while true do
    local s, e = _next_line(st, "a chunk size")
    if not s then
      return nil, e
    end
    local size = chunk_size(st.buf, s, e)
    if not size then
      return nil, _err("protocol", true, "the response holds a malformed chunk size line")
    end
    if size == 0 then
      -- trailers, up to the empty line
      repeat
        s, e = _next_line(st, "the chunked trailer")
        if not s then
          return nil, e
        end
      until e < s
      return true
    end
    if st.max_body and st.total + size > st.max_body then
      return nil, _too_large(st)
    end
    local ok, derr, cause = _read_body_bytes(st, size)
    if not ok then
      if cause == "closed" then
        derr.message = str_format("the connection closed in the middle of a chunk (got %d bytes of the body)",
                                  st.total)
      end
      return nil, derr
    end
    s, e = _next_line(st, "a chunk end")
    if not s then
      return nil, e
    end
    if e >= s then
      return nil, _err("protocol", true, "a chunk of the response is longer than its size line says")
    end
  end
end

local function _read_length(st, cl)
  local length = str_match(cl, "^%d+$") and tonumber(cl)
  if not length then
    return nil, _err("protocol", true, "the response has a bad Content-Length: " .. cl)
  end
  local max_body = st.max_body
  if max_body and length > max_body then
    return nil, _err("protocol", true, str_format(
      "the response body (Content-Length %d) is larger than max_body (%d bytes)", length, max_body))
  end
  -- the usual case: the whole body is already buffered (no loop: it would keep the path out of the JIT)
  if length <= CHUNK_SIZE and #st.buf - st.pos + 1 >= length then
    if length > 0 then
      return _take(st, _read_some(st, length, "the response body"))
    end
    return true
  end
  local ok, derr, cause = _read_body_bytes(st, length)
  if not ok and derr.message and cause ~= nil then
    if cause == "closed" then
      derr.message = str_format("the connection closed before the whole body arrived: got %d of %d bytes",
                                st.total, length)
    else
      derr.message = derr.message .. str_format(" (got %d of %d bytes)", st.total, length)
    end
  end
  return ok, derr
end

-- No framing: the body runs until the server closes.
local function _read_until_close(st)
  while true do
    local data, derr, cause = _read_some(st, CHUNK_SIZE, "the response body")
    if not data then
      if cause == "closed" then
        return true
      end
      return nil, derr
    end
    local tok, terr = _take(st, data)
    if not tok then
      return nil, terr
    end
  end
end

-- An upload's body after its head: st.file_size bytes of st.file, CHUNK_SIZE at a time (never whole in
-- memory), each send given what is left of the deadline.
local function _send_file(st, sock)
  local left = st.file_size
  while left > 0 do
    local chunk = st.file:read(math_min(CHUNK_SIZE, left))
    if not chunk or #chunk == 0 then
      return nil, new_error("io", "could not read the file to upload: it ended before body_size bytes "
                            .. "(changed while sent)", { sent = true, retryable = false })
    end
    if not _set_timeouts(sock, st.deadline, st.connect_ms, st.op_ms) then
      return nil, _timeout_err(st.timeout, true, "sending the file")
    end
    local bytes, e = sock:send(chunk)
    if not bytes then
      if e == "timeout" then
        return nil, _timeout_err(st.timeout, true, "sending the file")
      end
      return nil, _err("network", true, "sending the file to " .. st.u.host .. " failed: " .. tostring(e))
    end
    left = left - #chunk
  end
  return true
end

-- The exchange itself. Returns res | nil, err, plus `reusable` (true only after a complete, clean exchange).
-- `st.sent` records whether a byte may have left, for the pcall wrapper.
local function _exchange(self, sock, req, u, st)
  local timeout = st.timeout
  local verify = self.ssl_verify

  local ok, e = sock:connect(u.connect_host, u.port, { pool = u.pool, pool_size = self.pool_size })
  if not ok then
    return nil, _connect_error(u, e, math_min(st.connect_timeout, timeout))
  end

  if u.https and (sock:getreusedtimes() or 0) == 0 then
    if not _set_timeouts(sock, st.deadline, st.connect_ms, st.op_ms) then
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

  if not _set_timeouts(sock, st.deadline, st.connect_ms, st.op_ms) then
    return nil, _timeout_err(timeout, false, "before sending")
  end
  st.sent = true
  local bytes
  bytes, e = sock:send(st.request_bytes)
  if not bytes then
    if e == "timeout" then
      return nil, _timeout_err(timeout, true, "sending the request")
    end
    return nil, _err("network", true, "sending the request to " .. u.host .. " failed: " .. tostring(e))
  end

  local send_err
  if st.file then
    local sok, serr = _send_file(st, sock)
    if not sok then
      if serr.kind ~= "network" then
        return nil, serr
      end
      -- a store may refuse before it read the whole body (403, 503, ...) and close: the broken pipe is only the
      -- consequence, its answer (already received) is the reason, as libcurl reports it too
      send_err = serr
    end
  end

  local status, headers, http11 = _read_head(st)
  if send_err and (not status or status < 300) then
    return nil, send_err -- no answer, or a success for a body the store cannot have had whole
  end
  if not status then
    return nil, headers
  end

  local res = { status = status, headers = headers, body = "" }
  local reusable = not send_err and http11 and not st.wants_close and not has_token(headers["connection"], "close")

  if req.method == "HEAD" or status == 204 or status == 304 then
    return res, nil, reusable and st.pos > #st.buf
  end

  local sink = req.sink
  st.sink = sink
  st.max_body = (not sink) and req.max_body or nil

  local te = headers["transfer-encoding"]
  local cl = headers["content-length"]
  local bok, berr
  if te and not has_token(te, "identity") then
    if not has_token(te, "chunked") then
      return nil, _err("protocol", true, "the response uses an unsupported Transfer-Encoding: " .. te)
    end
    bok, berr = _read_chunked(st)
  elseif cl then
    bok, berr = _read_length(st, cl)
  else
    -- such a connection cannot be reused
    reusable = false
    bok, berr = _read_until_close(st)
  end
  if not bok then
    return nil, send_err or berr
  end

  -- Bytes beyond the framed body (a misbehaving server): the connection is not clean, do not pool it.
  if st.pos <= #st.buf then
    reusable = false
  end

  if not sink then
    local nparts = st.nparts
    if nparts == 1 then
      res.body = st.first
    elseif nparts > 1 then
      res.body = concat(st.parts, "", 1, nparts)
    end
  end
  return res, nil, reusable
end

local METHODS = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true, HEAD = true, OPTIONS = true }

local MAX_CACHED_URLS = 64

-- Parsed URLs are kept per transport (a client calls a handful of URLs): the parts, the pool name, the Host line.
local function _url(self, url)
  local cache = self.url_cache
  local u = cache[url]
  if u then
    return u
  end
  local uerr
  u, uerr = parse_url(url)
  if not u then
    return nil, uerr
  end
  -- SNI and the certificate's name check use the host name; ngx_lua matches names with X509_check_host,
  -- which never matches an IP address, so for an IP literal only the chain is verified (no SNI either).
  if not (str_find(u.connect_host, "^%d+%.%d+%.%d+%.%d+$") or str_find(u.connect_host, ":", 1, true)) then
    u.host_name = u.connect_host
  end
  u.https = u.scheme == "https"
  -- a transport that pools nothing (keepalive_timeout = 0) names a pool no connection is ever put into, so
  -- it never takes one another transport pooled either
  u.pool = u.scheme .. ":" .. u.host .. ":" .. u.port .. ":" .. (self.ssl_verify and "v" or "nv") ..
           (self.keepalive_ms > 0 and "" or ":np")
  u.host_line = "Host: " .. u.host_header .. "\r\n"
  if self.url_count >= MAX_CACHED_URLS then
    cache = {}
    self.url_cache = cache
    self.url_count = 0
  end
  cache[url] = u
  self.url_count = self.url_count + 1
  return u
end

local function _request(self, req, upload)
  local phase = ngx.get_phase()
  if not COSOCKET_PHASES[phase] then
    return nil, _err("argument", false, "cosockets are not available in the " .. tostring(phase) ..
                     " phase; run clicktocall from a content/access/rewrite/timer context, e.g. ngx.timer.at(0, fn)")
  end
  if type(req) ~= "table" then
    return nil, _err("argument", false, "the request must be a table, not a " .. type(req))
  end
  local method = req.method
  if not METHODS[method] and (type(method) ~= "string" or not str_find(method, "^%u+$")) then
    return nil, _err("argument", false, "the request method must be an upper-case word such as POST or GET")
  end
  local url = req.url
  if type(url) ~= "string" then
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

  local file, file_size
  if upload then
    if method ~= "PUT" or req.body ~= nil then
      return nil, _err("argument", false, "an upload is a PUT whose body is request.body_file (no body)")
    end
    file_size = req.body_size
    if type(req.body_file) ~= "string" or type(file_size) ~= "number" or file_size < 0
        or file_size ~= math_floor(file_size) then
      return nil, _err("argument", false, "an upload needs request.body_file (a path) and body_size (bytes)")
    end
  end

  local u, uerr = _url(self, url)
  if not u then
    return nil, _err("argument", false, uerr)
  end
  local h, herr = header_block(self, req.headers or EMPTY)
  if not h then
    return nil, _err("argument", false, herr)
  end
  local request_bytes, wants_close = build_request(method, u.path, u.host_line, h, req.body,
                                                   self.keepalive_ms > 0, file_size)
  if upload then
    local ferr
    file, ferr = io.open(req.body_file, "rb")
    if not file then
      return nil, new_error("io", "could not read the file to upload, " .. tostring(ferr),
                            { sent = false, retryable = false })
    end
  end

  local op_ms = math_max(MIN_OP_MS, math_floor(timeout * 1000))
  local st = {
    timeout = timeout,
    connect_timeout = connect_timeout,
    deadline = _now() + timeout,
    connect_ms = math_max(MIN_OP_MS, math_floor(connect_timeout * 1000)),
    op_ms = op_ms,
    request_bytes = request_bytes,
    wants_close = wants_close,
    sent = false,
    u = u,
    sock = nil,
    buf = "",
    pos = 1,
    total = 0,
    nparts = 0,
    first = nil,
    parts = nil,
    sink = nil,
    max_body = nil,
    file = file,
    file_size = file_size,
  }

  local sock, serr = ngx.socket.tcp()
  if not sock then
    if file then
      file:close()
    end
    return nil, _err("network", false, "cannot create a cosocket: " .. tostring(serr))
  end
  st.sock = sock
  local connect_left = math_min(st.connect_ms, math_floor(timeout * 1000))
  sock:settimeouts(math_max(MIN_OP_MS, connect_left), op_ms, op_ms)

  local ok, res, err, reusable = pcall(_exchange, self, sock, req, u, st)
  if file then
    file:close() -- whatever happened: the file is ours alone
  end
  if not ok then
    sock:close()
    return nil, _err("protocol", st.sent, "internal error in the ngx transport: " .. tostring(res))
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

local T = { name = "the ngx transport" }
T.__index = T

T.send = _request

--- upload(request) -> res | nil, err: a PUT of request.body_size bytes of request.body_file, sent in chunks
function T:upload(req)
  return _request(self, req, true)
end

function T:sleep(seconds)
  return (self.user_sleep or ngx.sleep)(seconds)
end

T.now = _now

--- scheduler(n) -> n ngx.threads at most (cosockets yield by themselves: a task sends through this object);
-- nil in a phase without cosockets, where send says so itself
function T:scheduler(n)
  if not COSOCKET_PHASES[ngx.get_phase()] then
    return nil
  end
  return require("clicktocall.batch").ngx_scheduler(self, n)
end

function T.close()
end

--- new(opts) -> transport | nil, sentence (bad options, or no ngx_lua here)
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
  if opts.sleep ~= nil and type(opts.sleep) ~= "function" then
    return nil, "sleep must be a function"
  end
  return setmetatable({
    pool_size = pool_size,
    keepalive_ms = math_floor(keepalive_timeout * 1000),
    ssl_verify = ssl_verify,
    user_sleep = opts.sleep,
    url_cache = {},   -- url -> parsed parts (see _url)
    url_count = 0,
    hdr_cache = nil,  -- the last request's header block (see http1.header_block)
  }, T)
end

return _M
