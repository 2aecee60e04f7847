--- clicktocall.redis: the few Redis commands the dial guard and the jobs' lease need, over one socket.
--
--   local redis = require "clicktocall.redis"
--   local r, err = redis.new("redis://127.0.0.1:6379/0", 3)    -- URL, timeout in seconds (no I/O yet)
--   -- "redis://[user:]password@host:port[/db]", "rediss://...[?ca_file=/path/ca.pem]" (TLS)
--   r:set_nx(key, value, ms)        -> true (claimed) | false (held by someone) | nil, sentence
--   r:delete_if(key, value)         -> true (deleted ours) | false (not ours, or gone) | nil, sentence
--   r:pexpire_if(key, value, ms)    -> true (renewed ours) | false (not ours, or gone) | nil, sentence
--   r:pttl(key)                     -> milliseconds left (negative: no key / no expiry) | nil, sentence
--   r:command(name, ...)            -> the reply | nil, sentence, "redis" | "io" | "protocol"
--   redis.parse_url(url), redis.encode(args), redis.read_reply(sock), redis.token(), redis.null
--
-- Why not a Redis client library: Debian's lua-nginx-redis (lua-resty-redis) pulls in another nginx flavour,
-- and we need four commands. Inside nginx the socket is an ngx_lua cosocket (never blocks the worker) and
-- goes back to a per-worker pool after a clean exchange; outside nginx it is LuaSocket (Debian lua-socket, an
-- optional dependency: only a redis:// URL needs it), one connection per command; rediss:// is LuaSec there
-- (Debian lua-sec: the chain checked against ?ca_file= or the system's CAs, then the name), sslhandshake with
-- verification inside nginx (the CA from lua_ssl_trusted_certificate). A new connection sends AUTH (with the
-- ACL user when the URL names one) and SELECT; the nginx pool is per address, database, user and password
-- (hashed), so a pooled connection is already authenticated as the same user. The password is in no sentence,
-- nor in `where` or the pool's name. Each command (connect, TLS, AUTH, SELECT, the reply) has one deadline:
-- the timeout.
--
-- Compare-and-delete (and compare-and-renew) is one EVAL of a three-line script: Redis runs a script
-- atomically, so "the value is ours, delete it" cannot interleave with another host's SET, in one round trip.
-- WATCH/GET/MULTI/DEL would need four round trips and leave WATCH/MULTI state on a connection that goes back
-- to a shared pool if the exchange is cut half-way; EVAL leaves none.
--
-- Replies are read by type (+ - : $ *) with every length bounded; a reply that is not RESP, too large or cut
-- short is nil + a sentence, never an error raised, and the connection is closed rather than pooled.

local type = type
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local pcall = pcall
local require = require
local concat = table.concat
local sub = string.sub
local byte = string.byte
local match = string.match
local find = string.find
local format = string.format
local floor = math.floor

local ngx = rawget(_G, "ngx") -- nil outside nginx

local _M = { _VERSION = require "clicktocall.version" } -- pure Lua: a bare nginx may use the guard alone
local http1 = require "clicktocall.http1"

local MAX_BULK = 1024 * 1024 -- our values are short tokens; a larger bulk is not an answer of ours
local MAX_ITEMS = 1024
local MAX_DEPTH = 4
local MAX_LINE = 64 * 1024
_M.MAX_BULK, _M.MAX_ITEMS, _M.MAX_DEPTH, _M.MAX_LINE = MAX_BULK, MAX_ITEMS, MAX_DEPTH, MAX_LINE

-- A nil bulk string or array ("$-1", "*-1"): SET NX answers it when the key is held.
local null = setmetatable({}, { __tostring = function() return "null" end })
_M.null = null

local POOL_SIZE = 32
local KEEPALIVE_MS = 60000

--------------------------------------------------------------------------
-- URL
--------------------------------------------------------------------------

local URL_FORM = "a URL such as \"redis://127.0.0.1:6379\", \"redis://:password@10.0.0.5:6379/2\" or " ..
                 "\"rediss://user:password@redis.example:6380/0?ca_file=/etc/ssl/redis-ca.pem\""

local REDIS_URL = { ports = { redis = false, rediss = false }, userinfo = true } -- the port is not optional

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- parse_url(url) -> { host =, port =, db =, user =, password =, tls =, ca_file = } | nil, sentence
-- "redis://[user[:password]@]host:port[/db]" or "rediss://..." (TLS) with an optional "?ca_file=/path" (the
-- CA that signed the server's certificate; outside nginx, without it the system's CAs). User and password
-- are percent-decoded; no other query, no IPv6 literal, port 1-65535. The password never appears in a sentence.
function _M.parse_url(url)
  if type(url) ~= "string" then
    return nil, "the Redis address must be " .. URL_FORM .. ", not a " .. type(url)
  end
  local scheme, userinfo, rest = match(url, "^(%a[%w+.-]*://)([^/?#@]*)@(.*)$")
  local user, password
  if scheme then
    url = scheme .. rest -- no credentials in what follows, nor in any sentence made from it
    local u, p = match(userinfo, "^([^:]*):(.*)$")
    if u then
      user, password = unescape(u), unescape(p)
    else
      user, password = nil, unescape(userinfo) -- "redis://secret@host": a password alone, as Redis clients read it
    end
    if user == "" then
      user = nil
    end
    if password == "" then
      return nil, "the Redis address has a user but no password (redis://user:password@host:port)"
    end
  end
  local u, why = http1.parse_url(url, REDIS_URL)
  if not u or sub(u.host, 1, 1) == "[" then
    return nil, "the Redis address must be " .. URL_FORM .. " (" .. (why or "no IPv6 literal") .. ")"
  end
  local tls = u.scheme == "rediss"
  local path = match(url, "^%a+://[^/?#]*(.*)$")
  local dbpart, query = match(path, "^([^?]*)%??(.*)$")
  local db = 0
  if dbpart ~= "" then
    local d = match(dbpart, "^/(%d+)$")
    if not d or #d > 5 then
      return nil, "the Redis address must be " .. URL_FORM .. "; after the port only /<database number>"
    end
    db = tonumber(d)
  end
  local ca_file
  if query ~= "" then
    ca_file = match(query, "^ca_file=([^&]+)$")
    if not tls or not ca_file then
      return nil, "the Redis address must be " .. URL_FORM .. "; the only query is ?ca_file=/path, with rediss://"
    end
    ca_file = unescape(ca_file)
  end
  return { host = u.connect_host, port = u.port, db = db, user = user, password = password, tls = tls,
           ca_file = ca_file }
end

--------------------------------------------------------------------------
-- RESP codec
--------------------------------------------------------------------------

--- encode(args) -> the command as a RESP array of bulk strings. Numbers are written as whole numbers.
function _M.encode(args)
  local out = { "*" .. #args .. "\r\n" }
  for i = 1, #args do
    local a = args[i]
    if type(a) == "number" then
      a = format("%.0f", a)
    else
      a = tostring(a)
    end
    out[#out + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  return concat(out)
end

local function whole(s)
  if #s == 0 or #s > 20 or not match(s, "^%-?%d+$") then
    return nil
  end
  return tonumber(s)
end

local function protocol(what)
  return nil, "Redis answered something that is not RESP (" .. what .. ")", "protocol"
end

-- One reply from sock (anything with receive("*l") and receive(n)): value | nil, message, class.
-- class: "redis" (an error reply; the connection is fine), "io" (the socket failed), "protocol" (not RESP).
-- Inside an array an error reply becomes { error = message }; nil bulks and arrays are _M.null.
local function read_reply(sock, depth)
  local line, err = sock:receive("*l")
  if not line then
    return nil, "Redis connection: " .. tostring(err), "io"
  end
  if #line > MAX_LINE then
    return protocol("a line of " .. #line .. " bytes")
  end
  local t, rest = byte(line, 1), sub(line, 2)
  if t == 43 then -- +
    return rest
  elseif t == 45 then -- -
    return nil, "Redis: " .. rest, "redis"
  elseif t == 58 then -- :
    local n = whole(rest)
    if not n then
      return protocol("a bad integer")
    end
    return n
  elseif t == 36 then -- $
    local n = whole(rest)
    if n == -1 then
      return null
    end
    if not n or n < 0 then
      return protocol("a bad bulk length")
    end
    if n > MAX_BULK then
      return protocol("a bulk of " .. n .. " bytes")
    end
    local data, rerr = sock:receive(n + 2)
    if not data then
      return nil, "Redis connection: " .. tostring(rerr), "io"
    end
    if sub(data, -2) ~= "\r\n" or #data ~= n + 2 then
      return protocol("a bulk without its CRLF")
    end
    return sub(data, 1, n)
  elseif t == 42 then -- *
    local n = whole(rest)
    if n == -1 then
      return null
    end
    if not n or n < 0 then
      return protocol("a bad array length")
    end
    if n > MAX_ITEMS then
      return protocol("an array of " .. n .. " items")
    end
    if depth >= MAX_DEPTH then
      return protocol("arrays nested too deep")
    end
    local items = {}
    for i = 1, n do
      local v, verr, class = read_reply(sock, depth + 1)
      if v == nil then
        if class ~= "redis" then
          return nil, verr, class
        end
        v = { error = verr }
      end
      items[i] = v
    end
    return items
  end
  return protocol(t and format("a reply starting with byte %d", t) or "an empty line")
end

--- read_reply(sock) -> value | nil, message, "redis" | "io" | "protocol"
function _M.read_reply(sock)
  return read_reply(sock, 0)
end

--------------------------------------------------------------------------
-- tokens: a value no other claim holds
--------------------------------------------------------------------------

-- 16 bytes of /dev/urandom per process, then a counter: unique per claim across hosts and workers, without
-- reading the device on every dial. Inside nginx the worker's pid is checked, so a seed made before the
-- workers forked is not shared by them.
local seed, seed_pid, counter = nil, nil, 0

local function make_seed()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(16)
  if f then
    f:close()
  end
  if not bytes or #bytes ~= 16 then
    -- no /dev/urandom: the time, the clock and a fresh table's address make a weaker but distinct seed
    bytes = tostring(os.time()) .. tostring(os.clock()) .. tostring({}) .. tostring(math.random())
  end
  return (bytes:gsub(".", function(c) return format("%02x", byte(c)) end))
end

function _M.token()
  local pid = ngx and ngx.worker and ngx.worker.pid and ngx.worker.pid() or nil
  if not seed or pid ~= seed_pid then
    seed, seed_pid, counter = make_seed(), pid, 0
  end
  counter = counter + 1
  return seed .. "-" .. counter
end

--------------------------------------------------------------------------
-- connections
--------------------------------------------------------------------------

local function in_nginx()
  return type(ngx) == "table" and type(ngx.socket) == "table" and ngx.socket.tcp ~= nil
end

-- The whole command (connect, TLS, AUTH, SELECT, send, the reply) shares one deadline: each socket call gets
-- what is left of it, and reads go through a small buffer, so a Redis that answers one byte a second, or
-- stalls half-way, costs the caller at most the timeout (a per-call timeout would restart on every byte).
local function clock()
  if ngx then
    ngx.update_time()
    return ngx.now()
  end
  local okreq, socket = pcall(require, "socket")
  return okreq and socket.gettime() or os.time()
end

local Wire = {} -- a socket and a deadline: receive("*l") / receive(n) / send(s) like a socket
Wire.__index = Wire

function Wire:left()
  local left = self.deadline - clock()
  if left <= 0 then
    return nil
  end
  if self.nginx then
    self.sock:settimeout(math.max(1, floor(left * 1000)))
  else
    self.sock:settimeout(left, "t") -- "t": a bound on the whole call, not on each wait
  end
  return left
end

function Wire:send(data)
  if not self:left() then
    return nil, "timeout"
  end
  return self.sock:send(data)
end

function Wire:receive(pattern)
  if not self.nginx then
    if not self:left() then
      return nil, "timeout"
    end
    return self.sock:receive(pattern)
  end
  -- cosocket: receiveany into a buffer, the deadline checked between reads
  while true do
    local buf = self.buf
    if pattern == "*l" then
      local i = find(buf, "\n", 1, true)
      if i then
        self.buf = sub(buf, i + 1)
        local line = sub(buf, 1, i - 1)
        if byte(line, -1) == 13 then
          line = sub(line, 1, -2)
        end
        return line
      end
      if #buf > MAX_LINE + 2 then
        return buf -- read_reply refuses a line this long
      end
    elseif #buf >= pattern then
      self.buf = sub(buf, pattern + 1)
      return sub(buf, 1, pattern)
    end
    if not self:left() then
      return nil, "timeout"
    end
    local data, err = self.sock:receiveany(65536)
    if not data then
      return nil, err
    end
    self.buf = buf .. data
  end
end

function Wire:close()
  return self.sock:close()
end

-- AUTH (with the user when there is one) and SELECT on a new connection; closes it when Redis says no.
-- The sentences name the command and Redis' answer, never the password.
local function handshake(self, wire)
  local cfg = self.cfg
  local steps = {}
  if cfg.password then
    steps[#steps + 1] = cfg.user and { "AUTH", cfg.user, cfg.password } or { "AUTH", cfg.password }
  end
  if cfg.db ~= 0 then
    steps[#steps + 1] = { "SELECT", cfg.db }
  end
  for i = 1, #steps do
    local cmd = steps[i]
    local bytes, serr = wire:send(_M.encode(cmd))
    local v, rerr, class = nil, serr, "io"
    if bytes then
      v, rerr, class = read_reply(wire, 0)
    end
    if v ~= "OK" then
      wire:close()
      local what = cmd[1] == "AUTH" and ("AUTH" .. (cfg.user and " as user " .. cfg.user or "")) or
                   ("SELECT " .. cfg.db)
      return nil, "Redis at " .. self.where .. " refused " .. what .. ": " .. tostring(rerr), class
    end
  end
  return true
end

--- cert_names_match(names, host) -> boolean: host is one of the certificate's names ("*.example.com" stands
-- for one left-most label, never for a bare IP address)
function _M.cert_names_match(names, host)
  host = host:lower()
  local ip = match(host, "^[%d.]+$") ~= nil
  for i = 1, #names do
    local n = tostring(names[i]):lower()
    if n == host then
      return true
    end
    if not ip and sub(n, 1, 2) == "*." then
      local rest = match(host, "^[^.]+(%..+)$")
      if rest and rest == sub(n, 2) then
        return true
      end
    end
  end
  return false
end

-- The names a LuaSec connection's peer certificate holds: its subjectAltName DNS names and IP addresses, or,
-- without those, its subject's common names
local function cert_names(tsock)
  local cert = tsock:getpeercertificate()
  local names = {}
  if not cert then
    return names
  end
  local ok, ext = pcall(cert.extensions, cert)
  local san = ok and type(ext) == "table" and ext["2.5.29.17"]
  if type(san) == "table" then
    for _, field in ipairs { "dNSName", "iPAddress" } do
      for _, n in ipairs(san[field] or {}) do
        names[#names + 1] = n
      end
    end
  end
  if #names == 0 then
    for _, e in ipairs(cert:subject() or {}) do
      if e.name == "commonName" or e.short_name == "CN" then
        names[#names + 1] = e.value
      end
    end
  end
  return names
end

-- A connected socket wrapped with the deadline (authenticated, its database selected): wire, pooled |
-- nil, sentence, class
local function open(self, deadline)
  local cfg = self.cfg
  if in_nginx() then
    -- in a phase without cosockets (header_filter, log, ...) creating or connecting one raises: a sentence
    local made, sock = pcall(ngx.socket.tcp)
    if not made then
      return nil, "cannot reach Redis at " .. self.where .. ": " .. tostring(sock), "io"
    end
    local wire = setmetatable({ sock = sock, deadline = deadline, nginx = true, buf = "" }, Wire)
    if not wire:left() then
      return nil, "cannot reach Redis at " .. self.where .. ": timeout", "io"
    end
    -- one pool per address, database and credentials: a pooled connection is already authenticated as the
    -- right user, in the right database, over TLS when asked
    local ok, ok2, err = pcall(sock.connect, sock, cfg.host, cfg.port, { pool = self.pool })
    if not ok or not ok2 then
      return nil, "cannot reach Redis at " .. self.where .. ": " .. tostring(ok and err or ok2), "io"
    end
    if (sock:getreusedtimes() or 0) == 0 then
      if cfg.tls then
        if not wire:left() then
          sock:close()
          return nil, "cannot reach Redis at " .. self.where .. ": timeout", "io"
        end
        -- Debian's lua-resty-core: a handshake that finishes at once is reported done even when the
        -- certificate failed verification; only the session read that follows sees the failure, and it asserts.
        -- So a session is asked for (nil, not false), the assert is caught as a refusal, and a nil session
        -- without an error is a success (none to reuse). Nothing is sent before this says the peer is trusted.
        local pok, hs, herr = pcall(sock.sslhandshake, sock, nil, cfg.host, true)
        if not pok then
          hs, herr = nil, "certificate verification failed"
        elseif hs == nil and herr == nil then
          hs = true
        end
        if not hs then
          sock:close()
          return nil, "TLS with Redis at " .. self.where .. " failed: " .. tostring(herr), "io"
        end
      end
      local done, why, class = handshake(self, wire)
      if not done then
        return nil, why, class
      end
    end
    return wire, true
  end
  local okreq, socket = pcall(require, "socket")
  if not okreq then
    return nil, "a redis:// address outside nginx needs LuaSocket (Debian: lua-socket)", "io"
  end
  local sock = socket.tcp()
  local wire = setmetatable({ sock = sock, deadline = deadline }, Wire)
  if not wire:left() then
    sock:close()
    return nil, "cannot reach Redis at " .. self.where .. ": timeout", "io"
  end
  local ok, err = sock:connect(cfg.host, cfg.port)
  if not ok then
    sock:close()
    return nil, "cannot reach Redis at " .. self.where .. ": " .. tostring(err), "io"
  end
  if cfg.tls then
    local okssl, ssl = pcall(require, "ssl")
    if not okssl then
      sock:close()
      return nil, "a rediss:// address outside nginx needs LuaSec (Debian: lua-sec)", "io"
    end
    local params = { mode = "client", protocol = "any", verify = "peer", options = { "all", "no_sslv2", "no_sslv3" } }
    if cfg.ca_file then
      params.cafile = cfg.ca_file
    else
      params.capath = "/etc/ssl/certs"
    end
    local tsock, werr = ssl.wrap(sock, params)
    if not tsock then
      sock:close()
      return nil, "TLS with Redis at " .. self.where .. " failed: " .. tostring(werr), "io"
    end
    if tsock.sni then
      tsock:sni(cfg.host)
    end
    wire.sock = tsock
    local hs, herr
    repeat
      if not wire:left() then
        hs, herr = nil, "timeout"
        break
      end
      hs, herr = tsock:dohandshake()
    until hs or (herr ~= "wantread" and herr ~= "wantwrite")
    if hs and not _M.cert_names_match(cert_names(tsock), cfg.host) then
      -- LuaSec checks the chain, not the name: without this, any certificate the CA signed would do
      hs, herr = nil, "the certificate does not name " .. cfg.host
    end
    if not hs then
      tsock:close()
      return nil, "TLS with Redis at " .. self.where .. " failed: " .. tostring(herr), "io"
    end
  end
  local done, why, class = handshake(self, wire)
  if not done then
    return nil, why, class
  end
  return wire, false
end

-- a pool name's stand-in for the password (pools exist only inside nginx, where ngx.md5 is)
local function pool_secret(password)
  return ngx and ngx.md5 and ngx.md5("ctc-redis:" .. password) or "-"
end

local Conn = {} -- one Redis connection (dial_guard.lua's RedisGuard is the guard over it)
Conn.__index = Conn

--- new(url, timeout_seconds) -> r | nil, sentence (no I/O)
function _M.new(url, timeout)
  local cfg, err = _M.parse_url(url)
  if not cfg then
    return nil, err
  end
  if type(timeout) ~= "number" or not (timeout > 0 and timeout <= 86400) then
    return nil, "the Redis timeout must be a positive number of seconds"
  end
  local where = (cfg.tls and "rediss://" or "") .. cfg.host .. ":" .. cfg.port .. (cfg.db ~= 0 and "/" .. cfg.db or "")
  -- the pool's name tells credentials apart without holding the password in clear (a name may be logged)
  local pool = "ctc-redis:" .. where .. ":" .. (cfg.ca_file or "") .. ":" .. (cfg.user or "") .. ":" ..
               (cfg.password and pool_secret(cfg.password) or "")
  return setmetatable({ cfg = cfg, timeout = timeout, where = where, pool = pool }, Conn)
end

--- r:command(name, ...) -> reply | nil, sentence, class ("redis", "io", "protocol")
-- One command on its own connection (a pooled one inside nginx). The connection goes back to the pool only
-- after a whole reply was read; after a failure it is closed, so no half-read reply is left for the next user.
local function exchange(self, payload, deadline)
  local sock, pooled, oclass = open(self, deadline)
  if not sock then
    return nil, pooled, oclass
  end
  local reused = pooled and (sock.sock:getreusedtimes() or 0) > 0
  local bytes, serr = sock:send(payload)
  if not bytes then
    sock:close()
    return nil, "Redis connection: " .. tostring(serr), "io", reused
  end
  local v, err, class = read_reply(sock, 0)
  if v == nil and class ~= "redis" then
    sock:close()
    return nil, err, class, reused and class == "io" and (find(err, "closed", 1, true) or find(err, "reset", 1, true))
  end
  if pooled and sock.buf == "" then -- bytes past the reply would be read as the next user's answer
    sock.sock:setkeepalive(KEEPALIVE_MS, POOL_SIZE)
  else
    sock:close()
  end
  return v, err, class
end

function Conn:command(...)
  local payload = _M.encode { ... }
  local deadline = clock() + self.timeout
  local v, err, class, stale = exchange(self, payload, deadline)
  if v == nil and stale then
    -- a pooled connection that Redis closed while it sat idle (a restart, Redis' own idle timeout): the
    -- command never reached a live server, so it is sent once more on a new connection
    v, err, class = exchange(self, payload, deadline)
  end
  return v, err, class
end

local function expect(v, err, what)
  if v == nil then
    return nil, err
  end
  return nil, "Redis answered " .. what .. " with an unexpected " .. type(v)
end

--- r:set_nx(key, value, ms) -> true | false | nil, sentence
function Conn:set_nx(key, value, ms)
  local v, err = self:command("SET", key, value, "NX", "PX", ms)
  if v == "OK" then
    return true
  end
  if v == null then
    return false
  end
  return expect(v, err, "SET")
end

local DELETE_IF = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
local PEXPIRE_IF = "if redis.call('get', KEYS[1]) == ARGV[1] then " ..
                   "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"

--- r:delete_if(key, value) -> true | false | nil, sentence: deletes the key only while it holds value
function Conn:delete_if(key, value)
  local v, err = self:command("EVAL", DELETE_IF, 1, key, value)
  if type(v) == "number" then
    return v == 1
  end
  return expect(v, err, "EVAL")
end

--- r:pexpire_if(key, value, ms) -> true | false | nil, sentence: renews the key only while it holds value
function Conn:pexpire_if(key, value, ms)
  local v, err = self:command("EVAL", PEXPIRE_IF, 1, key, value, ms)
  if type(v) == "number" then
    return v == 1
  end
  return expect(v, err, "EVAL")
end

--- r:pttl(key) -> milliseconds | nil, sentence
function Conn:pttl(key)
  local v, err = self:command("PTTL", key)
  if type(v) == "number" then
    return v
  end
  return expect(v, err, "PTTL")
end

return _M
