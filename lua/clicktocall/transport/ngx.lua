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
--                                 --   (clicktocall.new refuses ca_file and proxy with transport = "ngx")
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
-- request that asked for something else. keepalive_timeout = 0 pools nothing: each request opens its own
-- connection (from a pool name nothing is ever put into), sends Connection: close and closes it.
-- A connection with bytes beyond the framed answer is never pooled; a pooled one that becomes readable while
-- idle (a stray answer) is closed by ngx_lua's pool when the worker sees the event (proved by
-- spec/ngx_transport_spec.lua, "stray answer"). Redirects are never followed (the client handles 3xx).
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

-- Header names are sent in byte order (a module-level comparator: a closure per request would keep the
-- request path out of the JIT compiler).
local function _name_less(a, b)
  return tostring(a) < tostring(b)
end

local EMPTY = {}

-- Serialize the caller's headers: the header lines (without Host/Connection/framing added by us), whether
-- the caller set Host, its Connection value. nil, message for a bad header.
local function _serialize_headers(headers)
  local names = {}
  for name in pairs(headers) do
    names[#names + 1] = name
  end
  sort(names, _name_less)
  local lines, n = {}, 0
  local seen_host, connection = false, nil
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
      lines[n + 1], lines[n + 2], lines[n + 3], lines[n + 4] = name, ": ", value, "\r\n"
      n = n + 4
    end
  end
  return concat(lines, "", 1, n), seen_host, connection, #names
end

local MAX_CACHED_HEADERS = 32

-- The header block of the last request is kept per transport with a copy of the headers it was made from:
-- a request whose headers table holds the same names and values (compared with ==, no allocation) reuses it.
local function _header_block(self, headers)
  local c = self.hdr_cache
  if c then
    local vals, count = c.values, 0
    for name, value in pairs(headers) do
      if vals[name] ~= value then
        count = -1
        break
      end
      count = count + 1
    end
    if count == c.count then
      return c
    end
  end
  local block, seen_host, connection, count = _serialize_headers(headers)
  if not block then
    return nil, seen_host
  end
  local wants_close = connection ~= nil and str_find(str_lower(connection), "close", 1, true) ~= nil
  local entry = {
    block = block,
    host_line = not seen_host,
    connection_line = connection == nil,
    wants_close = wants_close,
    count = count,
    values = {},
  }
  if count <= MAX_CACHED_HEADERS then
    local vals = entry.values
    for name, value in pairs(headers) do
      vals[name] = value
    end
    self.hdr_cache = entry
  end
  return entry
end

-- The request head and body as one string (or head and body when the body is large): nil, message for a bad
-- header. Second value: whether the caller asked for Connection: close.
local BIG_BODY = 65536

local function _build_request(self, req, u)
  local method = req.method
  local body = req.body
  local h, herr = _header_block(self, req.headers or EMPTY)
  if not h then
    return nil, herr
  end
  local host_line = h.host_line and u.host_line or ""
  local connection_line = ""
  local wants_close = h.wants_close
  if h.connection_line then
    -- keepalive_timeout = 0: no pooling, and the server is told so
    if self.keepalive_ms > 0 then
      connection_line = "Connection: keep-alive\r\n"
    else
      connection_line, wants_close = "Connection: close\r\n", true
    end
  end
  local length_line = ""
  if body ~= nil or method == "POST" or method == "PUT" or method == "PATCH" then
    length_line = "Content-Length: " .. (body and #body or 0) .. "\r\n"
  end
  if body and #body > BIG_BODY then
    return { method .. " " .. u.path .. " HTTP/1.1\r\n" .. host_line .. h.block .. connection_line ..
             length_line .. "\r\n", body }, wants_close
  end
  return method .. " " .. u.path .. " HTTP/1.1\r\n" .. host_line .. h.block .. connection_line ..
         length_line .. "\r\n" .. (body or ""), wants_close
end

-- Separators of a comma-separated header value ("," and %s).
local function _is_space(b)
  return b == 32 or (b >= 9 and b <= 13)
end

-- Whether the comma/space-separated list `value` holds `token` (lower-case) as a whole item.
local function _has_token(value, token)
  if not value then
    return false
  end
  value = str_lower(value)
  if value == token then
    return true
  end
  local init = str_find(value, token, 1, true)
  if not init then
    return false
  end
  local n, tl = #value, #token
  while true do
    local s = str_find(value, token, init, true)
    if not s then
      return false
    end
    local e = s + tl - 1
    local b1 = s > 1 and str_byte(value, s - 1)
    local b2 = e < n and str_byte(value, e + 1)
    if (not b1 or b1 == 44 or _is_space(b1)) and (not b2 or b2 == 44 or _is_space(b2)) then
      return true
    end
    init = s + 1
  end
end

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
local function _next_line(st, what)
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
      return nil, _err("protocol", true, str_format("a line of the response (%s) is longer than %d bytes",
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

local function _read_line(st, what)
  local first, last = _next_line(st, what)
  if not first then
    return nil, last
  end
  return str_sub(st.buf, first, last)
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
        return nil, _err(r2.kind, true, tostring(r2.message))
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

local function _malformed_header()
  return _err("protocol", true, "the response holds a malformed header line")
end

-- Status line (skipping interim 1xx answers) and headers: status, headers, http11 | nil, err.
local function _read_head(st)
  local status, headers, http11
  local header_bytes, header_lines = 0, 0
  while true do
    local s, e = _next_line(st, "the status line")
    if not s then
      return nil, e
    end
    -- "HTTP/d.d ddd"
    local buf = st.buf
    local b1, b2, b3, b4, b5, v1, dot, v2, sp, c1, c2, c3 = str_byte(buf, s, s + 11)
    if e - s < 11 or b1 ~= 72 or b2 ~= 84 or b3 ~= 84 or b4 ~= 80 or b5 ~= 47 or dot ~= 46 or sp ~= 32
       or v1 < 48 or v1 > 57 or v2 < 48 or v2 > 57
       or c1 < 48 or c1 > 57 or c2 < 48 or c2 > 57 or c3 < 48 or c3 > 57 then
      return nil, _err("protocol", true, "the server did not answer with an HTTP status line")
    end
    http11 = v1 == 49 and v2 == 49
    status = (c1 - 48) * 100 + (c2 - 48) * 10 + (c3 - 48)
    headers = {}
    local last
    while true do
      local err
      s, e = _next_line(st, "the response headers")
      if not s then
        return nil, e
      end
      if e < s then
        break
      end
      buf = st.buf
      header_lines = header_lines + 1
      header_bytes = header_bytes + (e - s + 1)
      if header_lines > MAX_HEADER_LINES or header_bytes > MAX_HEADER_BYTES then
        return nil, _err("protocol", true, str_format("the response headers exceed %d lines or %d bytes",
                                                      MAX_HEADER_LINES, MAX_HEADER_BYTES))
      end
      local first = str_byte(buf, s)
      if (first == 32 or first == 9) and last then
        -- a folded continuation line: trimmed, joined with a space
        local i, j = s, e
        while i <= j and _is_space(str_byte(buf, i)) do
          i = i + 1
        end
        while j >= i and _is_space(str_byte(buf, j)) do
          j = j - 1
        end
        headers[last] = headers[last] .. " " .. str_sub(buf, i, j)
      else
        -- name [spaces] ":" [spaces] value [spaces]; the name holds neither ":" nor spaces
        local colon = str_find(buf, ":", s, true)
        if not colon or colon > e then
          return nil, _malformed_header()
        end
        local ne = colon - 1
        while ne >= s and _is_space(str_byte(buf, ne)) do
          ne = ne - 1
        end
        if ne < s then
          return nil, _malformed_header()
        end
        for k = s, ne do
          if _is_space(str_byte(buf, k)) then
            err = true
            break
          end
        end
        if err then
          return nil, _malformed_header()
        end
        local i, j = colon + 1, e
        while i <= j and _is_space(str_byte(buf, i)) do
          i = i + 1
        end
        while j >= i and _is_space(str_byte(buf, j)) do
          j = j - 1
        end
        local name = str_lower(str_sub(buf, s, ne))
        local value = str_sub(buf, i, j)
        local prev = headers[name]
        if prev then
          headers[name] = prev .. ", " .. value
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
    local line, rerr = _read_line(st, "a chunk size")
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
        line, rerr = _read_line(st, "the chunked trailer")
        if not line then
          return nil, rerr
        end
      until line == ""
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
    local crlf, cerr = _read_line(st, "a chunk end")
    if not crlf then
      return nil, cerr
    end
    if crlf ~= "" then
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

  local status, headers, http11 = _read_head(st)
  if not status then
    return nil, headers
  end

  local res = { status = status, headers = headers, body = "" }
  local reusable = http11 and not st.wants_close and not _has_token(headers["connection"], "close")

  if req.method == "HEAD" or status == 204 or status == 304 then
    return res, nil, reusable and st.pos > #st.buf
  end

  local sink = req.sink
  st.sink = sink
  st.max_body = (not sink) and req.max_body or nil

  local te = headers["transfer-encoding"]
  local cl = headers["content-length"]
  local bok, berr
  if te and not _has_token(te, "identity") then
    if not _has_token(te, "chunked") then
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
    return nil, berr
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
  u, uerr = _parse_url(url)
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

  local u, uerr = _url(self, url)
  if not u then
    return nil, _err("argument", false, uerr)
  end
  local request_bytes, wants_close = _build_request(self, req, u)
  if not request_bytes then
    return nil, _err("argument", false, wants_close)
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
  }

  local sock, serr = ngx.socket.tcp()
  if not sock then
    return nil, _err("network", false, "cannot create a cosocket: " .. tostring(serr))
  end
  st.sock = sock
  local connect_left = math_min(st.connect_ms, math_floor(timeout * 1000))
  sock:settimeouts(math_max(MIN_OP_MS, connect_left), op_ms, op_ms)

  local ok, res, err, reusable = pcall(_exchange, self, sock, req, u, st)
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
    url_cache = {},   -- url -> parsed parts (see _url)
    url_count = 0,
    hdr_cache = nil,  -- the last request's header block (see _header_block)
  }
  return function(req)
    return _request(self, req)
  end
end

return _M
