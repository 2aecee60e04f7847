--- clicktocall.redis: the few Redis commands the dial guard and the jobs' lease need, over one socket.
--
--   local redis = require "clicktocall.redis"
--   local r, err = redis.new("redis://127.0.0.1:6379/0", 3)    -- URL, timeout in seconds (no I/O yet)
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
-- optional dependency: only a redis:// URL needs it), one connection per command.
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

local URL_FORM = "a URL such as \"redis://127.0.0.1:6379\" or \"redis://10.0.0.5:6379/2\""

local REDIS_URL = { ports = { redis = false } } -- the port is not optional

--- parse_url(url) -> { host =, port =, db = } | nil, sentence
-- Strictly "redis://host:port[/db]": no user or password, no query, no IPv6 literal, port 1-65535.
function _M.parse_url(url)
  local u, why = http1.parse_url(url, REDIS_URL)
  if not u or sub(u.host, 1, 1) == "[" then
    return nil, "the Redis address must be " .. URL_FORM .. " (" .. (why or "no IPv6 literal") .. ")"
  end
  local rest = match(url, "^%a+://[^/?#]*(.*)$")
  local db = 0
  if rest ~= "" then
    local d = match(rest, "^/(%d+)$")
    if not d or #d > 5 then
      return nil, "the Redis address must be " .. URL_FORM .. "; after the port only /<database number>"
    end
    db = tonumber(d)
  end
  return { host = u.connect_host, port = u.port, db = db }
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

-- A connected socket (with the database selected): sock, pooled | nil, sentence
-- SELECT the address's database on a new connection; closes it when Redis says no
local function select_db(self, sock)
  local db = self.cfg.db
  local bytes, serr = sock:send(_M.encode { "SELECT", db })
  local v, rerr = nil, serr
  if bytes then
    v, rerr = read_reply(sock, 0)
  end
  if v ~= "OK" then
    sock:close()
    return nil, "Redis at " .. self.where .. " refused SELECT " .. db .. ": " .. tostring(rerr)
  end
  return true
end

local function open(self)
  local cfg = self.cfg
  if in_nginx() then
    -- in a phase without cosockets (header_filter, log, ...) creating or connecting one raises: a sentence
    local made, sock = pcall(ngx.socket.tcp)
    if not made then
      return nil, "cannot reach Redis at " .. self.where .. ": " .. tostring(sock)
    end
    sock:settimeout(floor(self.timeout * 1000))
    -- one pool per address and database, so a pooled connection already has the right database
    local ok, ok2, err = pcall(sock.connect, sock, cfg.host, cfg.port, { pool = self.pool })
    if not ok or not ok2 then
      return nil, "cannot reach Redis at " .. self.where .. ": " .. tostring(ok and err or ok2)
    end
    if cfg.db ~= 0 and (sock:getreusedtimes() or 0) == 0 then
      local selected, why = select_db(self, sock)
      if not selected then
        return nil, why
      end
    end
    return sock, true
  end
  local okreq, socket = pcall(require, "socket")
  if not okreq then
    return nil, "a redis:// address outside nginx needs LuaSocket (Debian: lua-socket)"
  end
  local sock = socket.tcp()
  sock:settimeout(self.timeout)
  local ok, err = sock:connect(cfg.host, cfg.port)
  if not ok then
    sock:close()
    return nil, "cannot reach Redis at " .. self.where .. ": " .. tostring(err)
  end
  if cfg.db ~= 0 then
    local selected, why = select_db(self, sock)
    if not selected then
      return nil, why
    end
  end
  return sock, false
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
  local where = cfg.host .. ":" .. cfg.port .. (cfg.db ~= 0 and "/" .. cfg.db or "")
  return setmetatable({ cfg = cfg, timeout = timeout, where = where, pool = "ctc-redis:" .. where }, Conn)
end

--- r:command(name, ...) -> reply | nil, sentence, class ("redis", "io", "protocol")
-- One command on its own connection (a pooled one inside nginx). The connection goes back to the pool only
-- after a whole reply was read; after a failure it is closed, so no half-read reply is left for the next user.
local function exchange(self, payload)
  local sock, pooled = open(self)
  if not sock then
    return nil, pooled, "io"
  end
  local reused = pooled and (sock:getreusedtimes() or 0) > 0
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
  if pooled then
    sock:setkeepalive(KEEPALIVE_MS, POOL_SIZE)
  else
    sock:close()
  end
  return v, err, class
end

function Conn:command(...)
  local payload = _M.encode { ... }
  local v, err, class, stale = exchange(self, payload)
  if v == nil and stale then
    -- a pooled connection that Redis closed while it sat idle (a restart, Redis' own idle timeout): the
    -- command never reached a live server, so it is sent once more on a new connection
    v, err, class = exchange(self, payload)
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
