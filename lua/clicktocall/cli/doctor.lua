--- `clicktocall doctor`: each thing a call needs, checked in the order a call
-- needs it, one line each: "ok" with what was found, or "FAIL" with the fix.
-- DNS and TCP go through LuaSocket (socket.dns.toip, socket.tcp), so a failure
-- is named exactly; TLS, the CA bundle and the server's Date header go through
-- libcurl (the core's transport), the very code that the calls use. The
-- proxy is the one libcurl takes: the `proxy` setting, else the environment's
-- http_proxy / https_proxy / all_proxy, and none for a host no_proxy names.
local core = require "clicktocall.core"
local http1 = require "clicktocall.http1"
local config = require "clicktocall.cli.config"
local times = require "clicktocall.cli.times"
local DEFAULTS = require("clicktocall.options").DEFAULTS

local format = string.format
local match = string.match
local lower = string.lower
local gsub = string.gsub

local M = { _VERSION = require "clicktocall.version" }

M.CLOCK_TOLERANCE = 60 -- seconds the machine may differ from the server

-- where libcurl looks when no ca_file is given, by system
local DEFAULT_BUNDLES = {
  "/etc/ssl/certs/ca-certificates.crt", -- Debian, Ubuntu, Alpine
  "/etc/pki/tls/certs/ca-bundle.crt",   -- Fedora, RHEL
  "/etc/ssl/ca-bundle.pem",             -- openSUSE
  "/etc/ssl/cert.pem",                  -- macOS, BSD
}

local readable = config.readable

-- http1's reading -> { scheme, host, port }, the host as it is connected to (an IPv6 literal without brackets)
local function parse(s, opts)
  local u, why = http1.parse_url(s, opts)
  if not u then
    return nil, why
  end
  return { scheme = u.scheme, host = u.connect_host, port = u.port }
end

--- parse_url(s) -> { scheme, host, port } | nil, why: the base URL
function M.parse_url(s)
  return parse(s)
end

local function is_address(host)
  return match(host, "^%d+%.%d+%.%d+%.%d+$") ~= nil or host:find(":", 1, true) ~= nil
end

------------------------------------------------------------------------
-- the proxy libcurl uses (curl's lib/url.c and lib/noproxy.c, 7.x and 8.x)
------------------------------------------------------------------------

local function ipv4(s)
  local a, b, c, d = match(s, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then
    return nil
  end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then
    return nil
  end
  return ((a * 256 + b) * 256 + c) * 256 + d
end

--- no_proxy_matches(host, list) -> true when the no_proxy list names the host:
-- "*" alone, the host itself, a domain it is under ("example.com" and
-- ".example.com" both cover "api.example.com"), or for an IPv4 address a CIDR
-- range ("10.0.0.0/8"); entries apart by commas or spaces, case ignored
function M.no_proxy_matches(host, list)
  if type(list) ~= "string" then
    return false
  end
  list = match(list, "^%s*(.-)%s*$")
  if list == "*" then
    return true
  end
  host = lower(gsub(gsub(host, "^%[(.*)%]$", "%1"), "%.$", ""))
  local addr = ipv4(host)
  for entry in list:gmatch("[^,%s]+") do
    entry = lower(gsub(entry, "%.$", ""))
    local net, bits = match(entry, "^([%d.]+)/(%d+)$")
    if addr and net then
      local n, b = ipv4(net), tonumber(bits)
      if n and b <= 32 then
        local size = 2 ^ (32 - b)
        if math.floor(addr / size) == math.floor(n / size) then
          return true
        end
      end
    elseif entry == "*" then
      return true
    else
      entry = gsub(entry, "^%.", "")
      if host == entry or (not addr and #host > #entry and host:sub(-#entry - 1) == "." .. entry) then
        return true
      end
    end
  end
  return false
end

local function env_first(getenv, ...)
  for i = 1, select("#", ...) do
    local name = select(i, ...)
    local v = getenv(name)
    if v ~= nil then
      return v, name
    end
  end
  return nil
end

--- proxy_for(url, setting, setting_source, getenv) -> { url =, from = } | nil, why none
-- url: the base URL as parse_url gives it. Like libcurl: no_proxy (or NO_PROXY)
-- naming the host wins even over the setting; then the setting; then
-- <scheme>_proxy (for http only the lower-case http_proxy, as libcurl refuses
-- HTTP_PROXY), its upper-case form, all_proxy, ALL_PROXY. An empty one: none.
function M.proxy_for(url, setting, setting_source, getenv)
  local no, no_name = env_first(getenv, "no_proxy", "NO_PROXY")
  if no and M.no_proxy_matches(url.host, no) then
    return nil, format("%s (the environment) names %s, so calls go straight to it", no_name, url.host)
  end
  if setting ~= nil and setting ~= "" then
    return { url = setting, from = setting_source }
  end
  local v, name
  if url.scheme == "http" then
    v, name = env_first(getenv, "http_proxy")
  else
    v, name = env_first(getenv, url.scheme .. "_proxy", string.upper(url.scheme) .. "_PROXY")
  end
  if v == nil then
    v, name = env_first(getenv, "all_proxy", "ALL_PROXY")
  end
  if v == nil or v == "" then
    return nil, format("no proxy setting, and no %s or all_proxy in the environment: calls go straight to %s",
      url.scheme == "http" and "http_proxy" or (url.scheme .. "_proxy"), url.host)
  end
  return { url = v, from = name .. " (the environment, which libcurl reads)" }
end

local PROXY_URL = { userinfo = true,
  ports = { http = 1080, https = 443, socks4 = 1080, socks4a = 1080, socks5 = 1080, socks5h = 1080 } }

--- parse_proxy(s) -> { scheme, host, port } | nil, why: as libcurl reads a proxy
-- (no scheme means http; no port means 1080, or 443 for https; a user:password is not ours to check)
function M.parse_proxy(s)
  if type(s) == "string" and not match(s, "^%a[%w+.-]*://") then
    s = "http://" .. s
  end
  return parse(s, PROXY_URL)
end

-- a proxy URL as shown: any user:password hidden
local function shown(u)
  return (gsub(u, "//[^/@]*@", "//***@"))
end

-- the provider's checks, in order -> exit code
local function provider_checks(o)
  local out = o.out
  local getenv = o.getenv or os.getenv
  -- a setting as the user gave it ("--ca-file", "CLICKTOCALL_CA_FILE", "ca_file in /path:3")
  local function named(key)
    return o.name_of and o.name_of(key) or key
  end
  local failed_code
  local function line(status, name, detail)
    if o.report then
      o.report(status, name, detail)
    else
      out:write(format("%-5s %-12s %s\n", status == "fail" and "FAIL" or status, name, detail))
    end
  end
  local function ok(name, detail)
    line("ok", name, detail)
  end
  local function fail(name, detail, code)
    line("fail", name, detail)
    failed_code = failed_code or code
  end
  local function skip(name, why)
    line("skip", name, why)
    failed_code = failed_code or 1
  end
  local names = { "config", "base URL", "proxy", "DNS", "TCP", "TLS", "clock", "credentials" }
  local function skip_rest(from, why)
    for i = from, #names do
      skip(names[i], why)
    end
    return failed_code
  end

  -- 1. configuration
  if not o.settings then
    fail("config", o.resolve_err, 2)
    return skip_rest(2, "needs the configuration")
  end
  local s, src = o.settings, o.sources
  local parts = {}
  local missing = {}
  for _, key in ipairs({ "base_url", "app_secret", "user_data" }) do
    if s[key] then
      parts[#parts + 1] = key .. " from " .. src[key]
    else
      missing[#missing + 1] = key
    end
  end
  local file = s.config_path and (readable(s.config_path) and s.config_path or s.config_path .. " (none)") or
               "none"
  if s.system_path then
    file = file .. "; system config " .. (s.system_used and s.system_path or
      (s.system_note or (s.system_path .. " (none)")))
  end
  if s.profile and s.profile ~= config.DEFAULT_PROFILE then
    file = file .. "; profile [" .. s.profile .. "]"
  end
  if #missing > 0 then
    local m = missing[1]
    local where = config.ENV[m] and ("set " .. config.ENV[m] .. " or ") or "set "
    local profile = s.profile and s.profile ~= config.DEFAULT_PROFILE and (" under [" .. s.profile .. "]") or ""
    fail("config", format("%s %s not set: %s%s = ... in %s%s (chmod 600)%s", table.concat(missing, ", "),
      #missing == 1 and "is" or "are", where,
      m, s.config_path or "~/.config/clicktocall/config", profile,
      m ~= "app_secret" and (", or --" .. m:gsub("_", "-")) or ""), 2)
    if not s.base_url then
      return skip_rest(2, "needs base_url")
    end
  else
    ok("config", table.concat(parts, "; ") .. "; config file " .. file)
  end

  -- 2. base URL
  local url, why = M.parse_url(s.base_url)
  if not url then
    fail("base URL", format("'%s' (%s) cannot be used: %s; set it to the provider's " ..
      "Baseurl, such as https://api.example.com", s.base_url, named("base_url"), why), 2)
    return skip_rest(3, "needs a usable base URL")
  end
  ok("base URL", format("%s: %s, host %s, port %d", s.base_url, url.scheme, url.host, url.port))

  -- 3. the proxy libcurl will use; 4. DNS and 5. TCP go to it when there is one
  local target, via = url, ""
  local proxy, direct = M.proxy_for(url, s.proxy, src.proxy and ("proxy from " .. src.proxy), getenv)
  if proxy then
    local p, perr = M.parse_proxy(proxy.url)
    if not p then
      fail("proxy", format("'%s' from %s cannot be used: %s; fix it or unset it", shown(proxy.url), proxy.from,
        perr), 2)
      return skip_rest(4, "needs a usable proxy")
    end
    ok("proxy", format("%s (%s, host %s, port %d), %s", shown(proxy.url), p.scheme, p.host, p.port, proxy.from))
    target, via = p, " (the proxy)"
  else
    ok("proxy", "none: " .. direct)
  end
  local has_socket, socket = pcall(require, "socket")
  local ip
  if not has_socket then
    skip("DNS", "LuaSocket (Debian: lua-socket) is not installed")
    skip("TCP", "LuaSocket (Debian: lua-socket) is not installed")
  else
    if is_address(target.host) then
      ip = target.host
      ok("DNS", format("%s%s is an address, no lookup needed", target.host, via))
    else
      local addr, derr = socket.dns.toip(target.host)
      if not addr then
        fail("DNS", format("%s%s cannot be resolved (%s): check the host name and /etc/resolv.conf",
          target.host, via, tostring(derr)), 4)
        return skip_rest(5, "needs DNS")
      end
      ip = addr
      ok("DNS", format("%s%s -> %s", target.host, via, addr))
    end
    local tcp = socket.tcp()
    tcp:settimeout(math.min(o.timeout or DEFAULTS.timeout, 5))
    local t0 = socket.gettime()
    local cok, cerr = tcp:connect(ip, target.port)
    local ms = (socket.gettime() - t0) * 1000
    tcp:close()
    if not cok then
      fail("TCP", format("cannot connect to %s port %d%s (%s): %s", ip, target.port, via, tostring(cerr),
        via ~= "" and "check the proxy's address and that it runs, or unset it (or name the host in no_proxy)" or
        "check the port in the URL, the firewall, or set proxy"), 4)
      return skip_rest(6, "needs a TCP connection")
    end
    ok("TCP", format("connected to %s port %d%s in %.0f ms", ip, target.port, via, ms))
  end

  -- 6. TLS (and the Date header for 7.), through libcurl as the calls go
  local date
  do
    local bundle
    if s.ca_file then
      bundle = s.ca_file .. " (ca_file from " .. o.sources.ca_file .. ")"
      if not readable(s.ca_file) then
        fail("TLS", format("the CA bundle %s cannot be read: fix %s", s.ca_file, named("ca_file")), 2)
        return skip_rest(7, "needs a CA bundle")
      end
    else
      for _, b in ipairs(DEFAULT_BUNDLES) do
        if readable(b) then
          bundle = b .. " (the system's, libcurl's default)"
          break
        end
      end
      bundle = bundle or "libcurl's built-in default"
    end
    local t = core.curl_transport { ca_file = s.ca_file, insecure = s.insecure, proxy = s.proxy }
    local res, err = t:perform { method = "GET", url = s.base_url, want_headers = true,
                                 timeout = o.timeout or DEFAULTS.timeout, connect_timeout = DEFAULTS.connect_timeout,
                                 max_body = 1024 * 1024 }
    t:close()
    if not res then
      local msg = type(err) == "table" and err.message or tostring(err)
      local code = type(err) == "table" and err.code_name or ""
      if url.scheme == "https" and (code:find("PEER") or code:find("CACERT") or code:find("CERT")) then
        fail("TLS", format("the handshake failed (%s): the server's certificate is not trusted by %s; " ..
          "set ca_file to the bundle that signs it", msg, bundle), 4)
      elseif url.scheme == "https" and code:find("SSL") then
        fail("TLS", format("the handshake failed (%s; CA bundle %s): check that the port speaks https, " ..
          "or use an http:// base_url", msg, bundle), 4)
      else
        fail("TLS", format("no HTTP answer from %s (%s): check base_url and the network", s.base_url, msg), 4)
      end
      return skip_rest(7, "needs an HTTP answer")
    end
    date = res.headers and (res.headers.date or res.headers.Date)
    if url.scheme == "http" then
      ok("TLS", "not TLS (http): the secret crosses the network readable; use https outside a test")
    elseif s.insecure then
      ok("TLS", "handshake ok but NOT verified (insecure = true): anyone on the path can read the secret")
    else
      ok("TLS", "handshake ok, certificate verified with " .. bundle)
    end
  end

  -- 7. clock
  local server = times.http_date(date)
  if not server then
    skip("clock", "the server sent no Date header to compare with")
  else
    local diff = os.time() - server
    if math.abs(diff) > M.CLOCK_TOLERANCE then
      fail("clock", format("this machine's clock is %d s %s the server's: times like \"now\" and \"24h\" " ..
        "would be off; sync it (timedatectl set-ntp true, or chrony/ntpd)", math.abs(diff),
        diff > 0 and "ahead of" or "behind"), 1)
    else
      ok("clock", format("%+d s from the server's Date header", diff))
    end
  end

  -- 8. credentials: a balance call
  if not s.app_secret or not s.user_data then
    skip("credentials", "needs app_secret and user_data")
    return failed_code
  end
  local client, cerr = o.clicktocall.new { base_url = s.base_url, app_secret = s.app_secret,
    user_data = s.user_data, timeout = o.timeout, ca_file = s.ca_file, insecure = s.insecure,
    proxy = s.proxy, retries = 0 }
  if not client then
    fail("credentials", (o.explain and o.explain(cerr) or tostring(cerr.message)) .. ": fix the configuration", 2)
    return failed_code
  end
  local balance, berr = client:balance()
  client:close()
  if balance then
    ok("credentials", format("the provider accepted them: balance %s s of talk time", tostring(balance)))
  elseif berr.kind == "api" then
    fail("credentials", format("the provider refused them (%s): check app_secret and user_data",
      berr.message), 1)
  else
    fail("credentials", format("the balance call failed (%s, %s): see the lines above",
      berr.kind, berr.message), 4)
  end
  return failed_code or 0
end

local function report(o, status, name, detail)
  if o.report then
    o.report(status, name, detail)
  else
    o.out:write(format("%-5s %-12s %s\n", status == "fail" and "FAIL" or status, name, detail))
  end
end

--- store(o) -> exit code: archive --upload's object store answers a signed HEAD of its bucket (the keys, the
-- region, the clock and the bucket in one request), through libcurl with the same TLS and proxy settings
function M.store(o)
  local s3 = require "clicktocall.s3"
  local s = o.settings or {}
  local cfg, err = s3.config(o.upload)
  if not cfg then
    report(o, "fail", "store", (o.explain and o.explain(err) or tostring(err.message)) .. ": fix it", 2)
    return 2
  end
  local where = format("bucket %s at %s", cfg.bucket, cfg.endpoint)
  local req = assert(s3.head_bucket_request(cfg, os.time()))
  local t = core.curl_transport { ca_file = s.ca_file, insecure = s.insecure, proxy = s.proxy }
  local res, terr = t:perform { method = "HEAD", url = req.url, headers = req.headers,
                                timeout = o.timeout or DEFAULTS.timeout, connect_timeout = DEFAULTS.connect_timeout,
                                max_body = 65536 }
  t:close()
  local status = res and res.status
  if not res then
    report(o, "fail", "store", format("no answer from %s (%s): check --endpoint (or AWS_ENDPOINT_URL) and the "
      .. "network", cfg.endpoint, type(terr) == "table" and tostring(terr.message) or tostring(terr)))
    return 4
  elseif status >= 200 and status <= 299 then
    report(o, "ok", "store", format("%s answered a signed HEAD with %d: uploads go to s3://%s/%s", where, status,
      cfg.bucket, cfg.prefix))
    return 0
  elseif status == 403 then
    report(o, "fail", "store", format("%s refused the signed HEAD (HTTP 403): check AWS_ACCESS_KEY_ID and "
      .. "AWS_SECRET_ACCESS_KEY, the bucket's permissions, --region, and this machine's clock", where))
  elseif status == 404 then
    report(o, "fail", "store", format("%s: no such bucket (HTTP 404): create it, or fix --upload", where))
  elseif status == 301 or status == 400 then
    local region = res.headers and res.headers["x-amz-bucket-region"]
    report(o, "fail", "store", format("%s answered HTTP %d: the bucket is in %s; fix --region (or "
      .. "AWS_REGION) and --endpoint", where, status, region and ("region " .. region) or "another region"))
  else
    report(o, "fail", "store", format("%s answered the signed HEAD with HTTP %d", where, status))
  end
  return 4
end

--- run{ settings =, sources =, resolve_err =, clicktocall =, out =, timeout =, getenv =, upload =,
--       report = function(status, check, detail), explain = function(err), name_of = function(key) }
--    -> exit code
-- Each check is reported as it ends: by report() when given (status "ok",
-- "fail" or "skip"), else as a line on out. With upload (archive_recordings' upload table), the object store
-- is checked last, whatever the provider's checks found.
function M.run(o)
  local code = provider_checks(o)
  if o.upload then
    local scode = M.store(o)
    if code == 0 then
      code = scode
    end
  end
  return code
end

return M
