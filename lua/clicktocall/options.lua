--- clicktocall.options: the options of clicktocall.new{}, their defaults and
-- checks, and the client state they make (its configuration, one transport object, the guard).
--
--   base_url, app_secret (required); user_data; timeout = 10; connect_timeout = 3;
--   retries = 2; max_body = 8 MiB; transport = nil | "curl" | "ngx" | function;
--   country_code = "86"; ca_file; insecure = false; proxy; user_agent;
--   dial_guard (a lua_shared_dict name, "redis://host:port[/db]" or "file:/dir"), dial_guard_window = 10,
--   dial_guard_hold = 300 (a dial that may have rung stays guarded that long; never below the window),
--   dial_guard_fail_open = false (Redis unreachable: dial unguarded instead of refusing); on_event;
--   sleep (function(seconds), for backoff), backoff_base = 0.2, backoff_max = 5,
--   retry_after_max = 30, download_timeout = 300; pool_size, keepalive_timeout ("ngx");
--   rate_limit (clicktocall.rate_limit: at most so many requests of a call in any window, shared by a store).
--
-- A value that cannot be honoured is refused with a sentence, never clamped.

local core = require "clicktocall.core"
local exchange = require "clicktocall.exchange"
local http1 = require "clicktocall.http1"

local type = type
local pairs = pairs
local pcall = pcall
local require = require
local tostring = tostring
local floor = math.floor
local huge = math.huge
local find = string.find
local gsub = string.gsub
local match = string.match
local format = string.format

local _M = { _VERSION = core._VERSION }

-- The transport defaults are the core's (csrc/ctc.h), so C and Lua cannot disagree.
local DEFAULTS = {
  timeout = core.DEFAULTS.timeout,
  connect_timeout = core.DEFAULTS.connect_timeout,
  max_body = core.DEFAULTS.max_body,
  retries = 2,
  country_code = "86",
  dial_guard_window = 10,
  -- five minutes: the agent's phone rings, then the customer's, and a short call ends, before a repeat
  -- may go; the call's record (the only proof it was placed) appears when the call ends
  dial_guard_hold = 300,
  backoff_base = 0.2,
  backoff_max = 5,
  retry_after_max = 30,
  download_timeout = 300,
}
_M.DEFAULTS = DEFAULTS

local KNOWN = {
  base_url = true, app_secret = true, user_data = true, timeout = true,
  connect_timeout = true, retries = true, max_body = true, transport = true,
  country_code = true, ca_file = true, insecure = true, proxy = true,
  user_agent = true, dial_guard = true, dial_guard_window = true, dial_guard_hold = true,
  dial_guard_fail_open = true, on_event = true,
  sleep = true, backoff_base = true, backoff_max = true, retry_after_max = true,
  download_timeout = true, pool_size = true, keepalive_timeout = true, rate_limit = true,
}

local DAY = 86400

-- Seconds: the largest value each may take, and why. libcurl takes a timeout as
-- a long of milliseconds and nginx as a 32-bit one (24.8 days); past these
-- maxima a value is a mistake, not a wish we could honour.
local SECONDS = {
  { "timeout", DAY, "one day: an API call that may take longer has failed" },
  { "connect_timeout", DAY, "one day" },
  { "download_timeout", 7 * DAY, "seven days" },
  { "dial_guard_window", DAY, "one day: the guard stops a double click, not a daily limit" },
  { "dial_guard_hold", DAY, "one day: the guard stops a double click, not a daily limit" },
  { "backoff_base", 3600, "one hour" },
  { "backoff_max", 3600, "one hour" },
}

local function is_number(v)
  return type(v) == "number" and v == v and v > -huge and v < huge
end

local function is_whole(v, min)
  return is_number(v) and v >= min and floor(v) == v
end

local function check_seconds(o)
  for i = 1, #SECONDS do
    local k, max, why = SECONDS[i][1], SECONDS[i][2], SECONDS[i][3]
    local v = o[k]
    if v ~= nil then
      if not (is_number(v) and v > 0) then
        return k .. " must be a positive number of seconds", k
      end
      if v > max then
        return format("%s must be at most %d seconds (%s); %.14g cannot be honoured", k, max, why, v), k
      end
    end
  end
  local window = o.dial_guard_window or DEFAULTS.dial_guard_window
  if o.dial_guard_hold ~= nil and o.dial_guard_hold < window then
    return format("dial_guard_hold (%.14g s) must be at least dial_guard_window (%.14g s): a dial that " ..
                  "may have rung is guarded at least as long as one that was placed", o.dial_guard_hold, window),
      "dial_guard_hold"
  end
  if o.retry_after_max ~= nil and not (is_whole(o.retry_after_max, 0) and o.retry_after_max <= DAY) then
    return "retry_after_max must be a whole number of seconds from 0 to 86400", "retry_after_max"
  end
  local ka = o.keepalive_timeout
  if ka ~= nil and not (is_number(ka) and ka >= 0 and ka <= DAY) then
    return "keepalive_timeout must be a number of seconds from 0 (no pooling) to 86400", "keepalive_timeout"
  end
  return nil
end

-- What nginx cannot do, said with what to do instead.
local function check_ngx(o)
  if o.transport ~= "ngx" then
    return nil
  end
  if o.proxy ~= nil then
    return "proxy cannot be used with transport \"ngx\": nginx cosockets cannot go through a proxy; "
      .. "reach the API directly, or use the default libcurl transport outside nginx", "proxy"
  end
  if o.ca_file ~= nil then
    return "ca_file cannot be used with transport \"ngx\": cosockets take their CAs only from the "
      .. "nginx directive lua_ssl_trusted_certificate; set it there instead", "ca_file"
  end
  return nil
end

--- check(o) -> nil | a sentence saying what is wrong, the option it is about
local function check(o)
  for k in pairs(o) do
    if not KNOWN[k] then
      return "unknown option '" .. tostring(k) .. "'", tostring(k)
    end
  end
  local url = o.base_url
  if type(url) ~= "string" then
    return "base_url must be a string such as \"https://api.example.com\"", "base_url"
  end
  if not http1.web_url(url) or find(url, "[?#]") then
    return "base_url must be an http:// or https:// URL without spaces, query or fragment", "base_url"
  end
  if type(o.app_secret) ~= "string" or o.app_secret == "" or find(o.app_secret, "%c") then
    return "app_secret must be a non-empty string without control characters", "app_secret"
  end
  if o.user_data ~= nil and (type(o.user_data) ~= "string" or not find(o.user_data, "%S")) then
    return "user_data must be a non-empty string", "user_data"
  end
  local why, field = check_seconds(o)
  if why then
    return why, field
  end
  if o.retries ~= nil and not (is_whole(o.retries, 0) and o.retries <= 10) then
    return "retries must be an integer from 0 to 10", "retries"
  end
  if o.max_body ~= nil and not (is_whole(o.max_body, 1) and o.max_body <= 2 ^ 31 - 1) then
    return "max_body must be a positive integer of bytes, at most 2147483647", "max_body"
  end
  if o.pool_size ~= nil and not (is_whole(o.pool_size, 1) and o.pool_size <= 10000) then
    return "pool_size must be an integer from 1 to 10000", "pool_size"
  end
  if o.country_code ~= nil and (type(o.country_code) ~= "string" or not match(o.country_code, "^%+?%d%d?%d?$")) then
    return "country_code must be a string of 1 to 3 digits such as \"86\"", "country_code"
  end
  if o.ca_file ~= nil then
    if type(o.ca_file) ~= "string" or core.file_kind(o.ca_file) ~= "file" then
      return "ca_file must name a readable CA bundle file", "ca_file"
    end
  end
  if o.insecure ~= nil and type(o.insecure) ~= "boolean" then
    return "insecure must be a boolean", "insecure"
  end
  if o.proxy ~= nil and (type(o.proxy) ~= "string" or find(o.proxy, "[%c%s]")) then
    return "proxy must be a URL string such as \"http://proxy:3128\"", "proxy"
  end
  if o.user_agent ~= nil and (type(o.user_agent) ~= "string" or find(o.user_agent, "%c")) then
    return "user_agent must be a string without control characters", "user_agent"
  end
  local t = o.transport
  if t ~= nil and t ~= "curl" and t ~= "ngx" and type(t) ~= "function" then
    return "transport must be nil, \"curl\", \"ngx\" or a function", "transport"
  end
  if o.dial_guard ~= nil and type(o.dial_guard) ~= "string" then
    return "dial_guard must be the name of a lua_shared_dict, a \"redis://host:port[/db]\" address " ..
           "or \"file:/a/directory\"", "dial_guard"
  end
  if o.dial_guard_fail_open ~= nil and type(o.dial_guard_fail_open) ~= "boolean" then
    return "dial_guard_fail_open must be a boolean", "dial_guard_fail_open"
  end
  for _, k in pairs { "on_event", "sleep" } do
    if o[k] ~= nil and type(o[k]) ~= "function" then
      return k .. " must be a function", k
    end
  end
  return check_ngx(o)
end
_M.check = check

-- st.transport: one object per client (transport/curl.lua, transport/ngx.lua, transport/func.lua)
local function setup_transport(st, o)
  local t = o.transport
  if type(t) == "function" then
    st.transport = require("clicktocall.transport.func").new(t, o.sleep)
    return nil
  end
  local name = t == "ngx" and "ngx" or "curl"
  local ok, mod = pcall(require, "clicktocall.transport." .. name)
  if not ok then
    return "transport \"ngx\" needs OpenResty/ngx_lua: " .. tostring(mod), "transport"
  end
  local err
  st.transport, err = mod.new(name == "ngx" and { pool_size = o.pool_size, keepalive_timeout = o.keepalive_timeout,
                                                  ssl_verify = not o.insecure, sleep = o.sleep } or o)
  if not st.transport then
    -- the core's constructor fails with an error table, the ngx transport with a sentence
    return type(err) == "table" and err.message or err, name == "ngx" and "transport" or nil
  end
  return nil
end

local function setup_guard(st, o)
  if o.dial_guard then
    local ok, guard_mod = pcall(require, "clicktocall.dial_guard")
    if not ok then
      return "dial_guard could not be loaded: " .. tostring(guard_mod), "dial_guard"
    end
    -- a redis:// guard asks Redis with the connect timeout: a guard that waits longer than a connection
    -- to the provider would delay every dial
    -- the default hold follows a window set longer than it
    local hold = o.dial_guard_hold or math.max(DEFAULTS.dial_guard_hold, st.dial_guard_window)
    st.dial_guard_hold = hold
    local guard, gerr = guard_mod.new(o.dial_guard, st.dial_guard_window,
                                      { fail_open = o.dial_guard_fail_open, timeout = st.connect_timeout,
                                        hold = hold })
    if not guard then
      return "dial_guard: " .. tostring(gerr), "dial_guard"
    end
    st.guard = guard
  end
  return nil
end

-- st.limiter: only with a rate_limit option (exchange.with_retries does nothing more without one). Its
-- Redis is asked with the connect timeout, as the guard's is.
local function setup_limiter(st, o)
  if o.rate_limit ~= nil then
    local limiter, why = require("clicktocall.rate_limit").new(o.rate_limit, o.app_secret, st.connect_timeout)
    if not limiter then
      return why, "rate_limit"
    end
    st.limiter = limiter
  end
  return nil
end

--- state(o, version) -> st | nil, sentence (redacted), the option it is about (or nil)
-- The client's private state: cfg (what core.request reads), the secrets to
-- redact, the retry and timeout settings, the transport and the guard.
function _M.state(o, version)
  local why, field = check(o)
  if why then
    return nil, why, field
  end
  local ua = "clicktocall/" .. version
  if o.user_agent and o.user_agent ~= "" then
    ua = ua .. " " .. o.user_agent
  end
  local st = {
    cfg = {
      base_url = (gsub(o.base_url, "/+$", "")),
      authorization = core.base64(o.app_secret),
      user_agent = ua,
      country_code = o.country_code and (gsub(o.country_code, "^%+", "")) or DEFAULTS.country_code,
      user_data = o.user_data,
    },
    secrets = exchange.secret_forms(o.app_secret),
    on_event = o.on_event,
    closed = false,
  }
  for k, v in pairs(DEFAULTS) do
    if k ~= "country_code" then
      st[k] = o[k] == nil and v or o[k]
    end
  end
  local err
  err, field = setup_transport(st, o)
  -- a transport that never changes nor keeps a request may get one headers table for all (core.request)
  st.cfg.share_headers = st.transport and st.transport.shares_headers or nil
  if not err then
    err, field = setup_guard(st, o)
  end
  if not err then
    err, field = setup_limiter(st, o)
  end
  -- a dial with nothing to do around it (no events, guard or limit) is the transport's alone, if it can
  st.quick_dial = not (err or st.on_event or st.guard or st.limiter) and st.transport.dial or nil
  if err then
    if st.transport then
      st.transport:close()
    end
    return nil, exchange.redact(st, err), field
  end
  return st
end

return _M
