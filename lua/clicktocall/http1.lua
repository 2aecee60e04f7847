-- clicktocall.http1: the HTTP/1.1 wire format as plain functions over strings, for the ngx transport.
--
-- No I/O and no ngx here: it runs (and is specced, spec/http1_spec.lua) under plain Lua 5.1-5.4 and LuaJIT.
-- The driver (clicktocall.transport.ngx) owns the socket, the buffer and the deadline; it hands this module a
-- buffer and the bounds of one line (first, last: CR/LF excluded, last < first for an empty line), so reading
-- a response allocates no string per line.
--
--   parse_url(url [, opts])                 -> { scheme, host, connect_host, port, path, host_header } | nil, msg
--   web_url(url)                            -> parse_url's parts | nil, msg: an http(s) URL libcurl takes too
--   header_block(holder, headers)           -> entry | nil, msg   (serialized caller headers, cached in holder)
--   request(method, path, host_line, entry, body, keepalive)
--                                           -> bytes (or { head, body } for a large body), wants_close
--   status_line(buf, first, last)           -> status, http11 | nil
--   header_line(buf, first, last, headers, prev)
--                                           -> name (lower-case, the header the line added to) | nil (malformed)
--   chunk_size(buf, first, last)            -> size | nil
--   has_token(value, token)                 -> whether a comma-separated header value holds token (lower-case)
--   trim(buf, i, j)                         -> i, j without the spaces at both ends (j < i when nothing is left)

local type = type
local pairs = pairs
local tostring = tostring
local tonumber = tonumber
local concat = table.concat
local sort = table.sort
local str_find = string.find
local str_sub = string.sub
local str_byte = string.byte
local str_lower = string.lower
local str_match = string.match
local str_gsub = string.gsub

local _M = { _VERSION = require "clicktocall.version" }

-- HTTP's optional white space, and the rest of C's isspace (a header line may end in stray CR/VT/FF).
local function is_space(b)
  return b == 32 or (b >= 9 and b <= 13)
end
_M.is_space = is_space

local function trim(buf, i, j)
  while i <= j and is_space(str_byte(buf, i)) do
    i = i + 1
  end
  while j >= i and is_space(str_byte(buf, j)) do
    j = j - 1
  end
  return i, j
end
_M.trim = trim

local WEB = { http = 80, https = 443 }

local function scheme_list(ports)
  local names = {}
  for k in pairs(ports) do
    names[#names + 1] = k
  end
  sort(names)
  local last = names[#names]
  names[#names] = nil
  return #names > 0 and concat(names, ", ") .. " and " .. last or last
end

--- Split "http(s)://host[:port]/path?query#frag" into its parts; nil, message when it is not one.
-- The library's one URL reader (the ngx transport, doctor, Redis addresses). opts.ports: the schemes allowed,
-- each with its default port (false: the URL must give one), http and https when absent; opts.userinfo: a
-- "user:password@" is allowed (and left out of the parts), else refused.
function _M.parse_url(url, opts)
  if type(url) ~= "string" then
    return nil, "the URL must be a string, not " .. type(url)
  end
  local ports = opts and opts.ports or WEB
  local scheme, rest = str_match(url, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then
    return nil, "the URL " .. url .. " has no scheme://host part"
  end
  scheme = str_lower(scheme)
  if ports[scheme] == nil then
    return nil, "only " .. scheme_list(ports) .. " URLs are allowed, not " .. scheme .. "://"
  end
  local authority, path = str_match(rest, "^([^/?#]*)(.*)$")
  if str_find(authority, "@", 1, true) then
    if not (opts and opts.userinfo) then
      return nil, "the URL must not carry user information (user@host)"
    end
    authority = str_gsub(authority, "^.*@", "")
  end
  local host, port
  if str_sub(authority, 1, 1) == "[" then
    host, port = str_match(authority, "^(%[[%x:.]+%])(.*)$")
  else
    host, port = str_match(authority, "^([%w_][%w_.-]*)(.*)$")
  end
  if not host then
    return nil, "the URL " .. url .. " has no host name or address"
  end
  local default_port = ports[scheme]
  local port_num = default_port
  if port ~= "" or not default_port then
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

local WEB_USERINFO = { ports = WEB, userinfo = true }

--- web_url(url) -> parse_url's parts | nil, message: an http:// or https:// URL as the library takes one
-- (base_url, a recording's URL and its redirects): a "user:password@" allowed, as libcurl takes it, and no
-- space or control character anywhere (parse_url checks the path only).
function _M.web_url(url)
  if type(url) == "string" and str_find(url, "[%z\1-\32\127]") then
    return nil, "the URL holds spaces or control characters"
  end
  return _M.parse_url(url, WEB_USERINFO)
end

local function check_header(name, value)
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
local function name_less(a, b)
  return tostring(a) < tostring(b)
end

-- The caller's header lines (without the Host/Connection/framing lines the request adds), whether the caller
-- set Host, its Connection value, how many headers there were. nil, message for a bad header.
local function serialize_headers(headers)
  local names = {}
  for name in pairs(headers) do
    names[#names + 1] = name
  end
  sort(names, name_less)
  local lines, n = {}, 0
  local seen_host, connection = false, nil
  for i = 1, #names do
    local name = names[i]
    local value, verr = check_header(name, headers[name])
    if not value then
      return nil, verr
    end
    local lname = str_lower(name)
    if lname == "content-length" or lname == "transfer-encoding" then -- luacheck: ignore 542
      -- framing is ours: the body decides it
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

--- The serialized header block for `headers`, kept in holder.hdr_cache with a copy of the headers it was made
-- from: the next call with a table holding the same names and values (compared with ==, no allocation) reuses
-- it. entry = { block, host_line (add Host), connection_line (add Connection), wants_close, count, values }.
function _M.header_block(holder, headers)
  local c = holder.hdr_cache
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
  local block, seen_host, connection, count = serialize_headers(headers)
  if not block then
    return nil, seen_host
  end
  local entry = {
    block = block,
    host_line = not seen_host,
    connection_line = connection == nil,
    wants_close = connection ~= nil and _M.has_token(connection, "close"),
    count = count,
    values = {},
  }
  if count <= MAX_CACHED_HEADERS then
    local vals = entry.values
    for name, value in pairs(headers) do
      vals[name] = value
    end
    holder.hdr_cache = entry
  end
  return entry
end

local BIG_BODY = 65536

--- The request as bytes to send: one string, or { head, body } when the body is large (no copy of it).
-- host_line: "Host: ...\r\n" (used unless the caller set Host); keepalive false: "Connection: close" unless
-- the caller set Connection. Second value: whether the connection must close after this exchange.
-- length: the Content-Length of a body the caller sends itself after the head (an upload's file); body nil.
function _M.request(method, path, host_line, h, body, keepalive, length)
  if not h.host_line then
    host_line = ""
  end
  local connection_line = ""
  local wants_close = h.wants_close
  if h.connection_line then
    if keepalive then
      connection_line = "Connection: keep-alive\r\n"
    else
      connection_line, wants_close = "Connection: close\r\n", true
    end
  end
  local length_line = ""
  if length then
    length_line = "Content-Length: " .. string.format("%.0f", length) .. "\r\n"
  elseif body ~= nil or method == "POST" or method == "PUT" or method == "PATCH" then
    length_line = "Content-Length: " .. (body and #body or 0) .. "\r\n"
  end
  if body and #body > BIG_BODY then
    return { method .. " " .. path .. " HTTP/1.1\r\n" .. host_line .. h.block .. connection_line ..
             length_line .. "\r\n", body }, wants_close
  end
  return method .. " " .. path .. " HTTP/1.1\r\n" .. host_line .. h.block .. connection_line ..
         length_line .. "\r\n" .. (body or ""), wants_close
end

--- "HTTP/d.d ddd ..." in buf[first..last]: status, whether it is HTTP/1.1 | nil.
function _M.status_line(buf, first, last)
  if last - first < 11 then
    return nil
  end
  local b1, b2, b3, b4, b5, v1, dot, v2, sp, c1, c2, c3 = str_byte(buf, first, first + 11)
  if b1 ~= 72 or b2 ~= 84 or b3 ~= 84 or b4 ~= 80 or b5 ~= 47 or dot ~= 46 or sp ~= 32
     or v1 < 48 or v1 > 57 or v2 < 48 or v2 > 57
     or c1 < 48 or c1 > 57 or c2 < 48 or c2 > 57 or c3 < 48 or c3 > 57 then
    return nil
  end
  return (c1 - 48) * 100 + (c2 - 48) * 10 + (c3 - 48), v1 == 49 and v2 == 49
end

--- One header line buf[first..last] into `headers` (names lower-case; a repeated header joined with ", ";
-- a folded continuation line, which starts with a space, joined to `prev` with a space): the name the line
-- added to, or nil when the line is malformed.
function _M.header_line(buf, first, last, headers, prev)
  local b = str_byte(buf, first)
  if b == 32 or b == 9 then
    if not prev then
      return nil
    end
    local i, j = trim(buf, first, last)
    headers[prev] = headers[prev] .. " " .. str_sub(buf, i, j)
    return prev
  end
  -- name [spaces] ":" [spaces] value [spaces]; the name holds neither ":" nor spaces
  local colon = str_find(buf, ":", first, true)
  if not colon or colon > last then
    return nil
  end
  local ne = colon - 1
  while ne >= first and is_space(str_byte(buf, ne)) do
    ne = ne - 1
  end
  if ne < first then
    return nil
  end
  for k = first, ne do
    if is_space(str_byte(buf, k)) then
      return nil
    end
  end
  local i, j = trim(buf, colon + 1, last)
  local name = str_lower(str_sub(buf, first, ne))
  local value = str_sub(buf, i, j)
  local had = headers[name]
  if had then
    headers[name] = had .. ", " .. value
  else
    headers[name] = value
  end
  return name
end

--- The size of a chunk from its size line buf[first..last] ("1a", "1a;ext=1", " 1a "): a number | nil.
function _M.chunk_size(buf, first, last)
  local i, j = trim(buf, first, last)
  local size, k = 0, i
  while k <= j do
    local b = str_byte(buf, k)
    local d
    if b >= 48 and b <= 57 then
      d = b - 48
    elseif b >= 97 and b <= 102 then
      d = b - 87
    elseif b >= 65 and b <= 70 then
      d = b - 55
    else
      break
    end
    size = size * 16 + d
    k = k + 1
  end
  if k == i or k - i > 12 then -- no digits, or more than fit a double exactly
    return nil
  end
  -- after the digits: spaces and/or a chunk extension
  while k <= j and (str_byte(buf, k) == 32 or str_byte(buf, k) == 9) do
    k = k + 1
  end
  if k <= j and str_byte(buf, k) ~= 59 then
    return nil
  end
  return size
end

--- Whether the comma/space-separated list `value` holds `token` (lower-case) as a whole item.
function _M.has_token(value, token)
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
    if (not b1 or b1 == 44 or is_space(b1)) and (not b2 or b2 == 44 or is_space(b2)) then
      return true
    end
    init = s + 1
  end
end

return _M
