--- `clicktocall doctor`: each thing a call needs, checked in the order a call
-- needs it, one line each: "ok" with what was found, or "FAIL" with the fix.
-- DNS and TCP go through LuaSocket (socket.dns.toip, socket.tcp), so a failure
-- is named exactly; TLS, the CA bundle and the server's Date header go through
-- libcurl (the core's transport), the very code that the calls use.
local config = require "clicktocall.cli.config"
local times = require "clicktocall.cli.times"

local format = string.format
local match = string.match
local lower = string.lower

local M = { _VERSION = require("clicktocall.core")._VERSION }

M.CLOCK_TOLERANCE = 60 -- seconds the machine may differ from the server

-- where libcurl looks when no ca_file is given, by system
local DEFAULT_BUNDLES = {
  "/etc/ssl/certs/ca-certificates.crt", -- Debian, Ubuntu, Alpine
  "/etc/pki/tls/certs/ca-bundle.crt",   -- Fedora, RHEL
  "/etc/ssl/ca-bundle.pem",             -- openSUSE
  "/etc/ssl/cert.pem",                  -- macOS, BSD
}

local function readable(path)
  local f = io.open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end

--- parse_url(s) -> { scheme, host, port } | nil, why
function M.parse_url(s)
  if type(s) ~= "string" or s == "" then
    return nil, "it is empty"
  end
  local scheme, rest = match(s, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then
    return nil, "it has no scheme (http:// or https://)"
  end
  scheme = lower(scheme)
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "its scheme is " .. scheme .. ", not http or https"
  end
  local authority = match(rest, "^([^/?#]*)")
  if authority:find("@", 1, true) then
    return nil, "it holds a user name or password"
  end
  local host, port = match(authority, "^%[([%x:.]+)%]:?(%d*)$")
  if not host then
    host, port = match(authority, "^([%w.-]+):?(%d*)$")
  end
  if not host or host == "" then
    return nil, "its host '" .. authority .. "' is not a host name or address"
  end
  port = port ~= "" and tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then
    return nil, "its port is out of range"
  end
  return { scheme = scheme, host = host, port = port }
end

local function is_address(host)
  return match(host, "^%d+%.%d+%.%d+%.%d+$") ~= nil or host:find(":", 1, true) ~= nil
end

--- run{ settings =, sources =, resolve_err =, clicktocall =, out =, timeout = } -> exit code
function M.run(o)
  local out = o.out
  local failed_code
  local function ok(name, detail)
    out:write(format("ok    %-12s %s\n", name, detail))
  end
  local function fail(name, detail, code)
    out:write(format("FAIL  %-12s %s\n", name, detail))
    failed_code = failed_code or code
  end
  local function skip(name, why)
    out:write(format("skip  %-12s %s\n", name, why))
    failed_code = failed_code or 1
  end
  local names = { "config", "base URL", "DNS", "TCP", "TLS", "clock", "credentials" }
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
  if #missing > 0 then
    local m = missing[1]
    local where = config.ENV[m] and ("set " .. config.ENV[m] .. " or ") or "set "
    fail("config", format("%s is not set: %s%s = ... in %s (chmod 600)%s", table.concat(missing, ", "), where,
      m, s.config_path or "~/.config/clicktocall/config",
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
    fail("base URL", format("'%s' cannot be used: %s; set base_url to the provider's " ..
      "Baseurl, such as https://api.example.com", s.base_url, why), 2)
    return skip_rest(3, "needs a usable base URL")
  end
  ok("base URL", format("%s: %s, host %s, port %d", s.base_url, url.scheme, url.host, url.port))

  -- 3. DNS and 4. TCP, of the proxy when there is one: that is what we connect to
  local target, via = url, ""
  if s.proxy then
    local p, perr = M.parse_url(s.proxy)
    if not p then
      fail("DNS", format("the proxy '%s' cannot be used: %s; fix proxy", s.proxy, perr), 2)
      return skip_rest(4, "needs a usable proxy")
    end
    target, via = p, " (the proxy)"
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
        return skip_rest(4, "needs DNS")
      end
      ip = addr
      ok("DNS", format("%s%s -> %s", target.host, via, addr))
    end
    local tcp = socket.tcp()
    tcp:settimeout(math.min(o.timeout or 10, 5))
    local t0 = socket.gettime()
    local cok, cerr = tcp:connect(ip, target.port)
    local ms = (socket.gettime() - t0) * 1000
    tcp:close()
    if not cok then
      fail("TCP", format("cannot connect to %s port %d%s (%s): check the port in the URL, the firewall, " ..
        "or set proxy", ip, target.port, via, tostring(cerr)), 4)
      return skip_rest(5, "needs a TCP connection")
    end
    ok("TCP", format("connected to %s port %d%s in %.0f ms", ip, target.port, via, ms))
  end

  -- 5. TLS (and the Date header for 6.), through libcurl as the calls go
  local has_core, core = pcall(require, "clicktocall.core")
  local date
  if not has_core or type(core.curl_transport) ~= "function" then
    skip("TLS", "the core's libcurl transport is not available")
  else
    local bundle
    if s.ca_file then
      bundle = s.ca_file .. " (ca_file from " .. o.sources.ca_file .. ")"
      if not readable(s.ca_file) then
        fail("TLS", format("the CA bundle %s cannot be read: fix ca_file", s.ca_file), 2)
        return skip_rest(6, "needs a CA bundle")
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
                                 timeout = o.timeout or 10, connect_timeout = 3, max_body = 1024 * 1024 }
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
      return skip_rest(6, "needs an HTTP answer")
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

  -- 6. clock
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

  -- 7. credentials: a balance call
  if not s.app_secret or not s.user_data then
    skip("credentials", "needs app_secret and user_data")
    return failed_code
  end
  local client, cerr = o.clicktocall.new { base_url = s.base_url, app_secret = s.app_secret,
    user_data = s.user_data, timeout = o.timeout, ca_file = s.ca_file, insecure = s.insecure,
    proxy = s.proxy, retries = 0 }
  if not client then
    fail("credentials", tostring(cerr.message) .. ": fix the configuration", 2)
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

return M
