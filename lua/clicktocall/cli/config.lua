--- Where the command's settings come from: flags, then the environment
-- (CLICKTOCALL_BASE_URL, CLICKTOCALL_APP_SECRET, CLICKTOCALL_USER_DATA), then a
-- config file of `key = value` lines. The secret is never a flag: flags show
-- in `ps` and in shell history.
local tonumber = tonumber
local format = string.format
local match = string.match
local gsub = string.gsub

local M = { _VERSION = require("clicktocall.core")._VERSION }

-- key -> kind; the global options' names with "_" for "-", plus the two that
-- are never flags
M.KEYS = {
  base_url = "string", app_secret = "string", user_data = "string", timeout = "number",
  ca_file = "string", insecure = "boolean", proxy = "string",
  -- config file only: the dial guard ("local", "off" or "redis://host:port[/db]"), its hold in seconds,
  -- and the jobs' lock ("redis://host:port[/db]")
  dial_guard = "string", dial_guard_hold = "number", lock = "string",
}
M.ORDER = { "base_url", "app_secret", "user_data", "timeout", "ca_file", "insecure", "proxy",
            "dial_guard", "dial_guard_hold", "lock" }

M.ENV = {
  base_url = "CLICKTOCALL_BASE_URL",
  app_secret = "CLICKTOCALL_APP_SECRET",
  user_data = "CLICKTOCALL_USER_DATA",
}

local BOOL = { ["true"] = true, yes = true, on = true, ["1"] = true,
               ["false"] = false, no = false, off = false, ["0"] = false }

--- default_path(getenv) -> "$XDG_CONFIG_HOME/clicktocall/config" or "~/.config/clicktocall/config"
function M.default_path(getenv)
  local xdg = getenv("XDG_CONFIG_HOME")
  if xdg and xdg:sub(1, 1) == "/" then
    return xdg .. "/clicktocall/config"
  end
  local home = getenv("HOME")
  if not home or home == "" then
    return nil
  end
  return home .. "/.config/clicktocall/config"
end

local function shell_quote(s)
  return "'" .. gsub(s, "'", "'\\''") .. "'"
end
M.shell_quote = shell_quote

--- permissions(path) -> "rw-r--r--" (owner, group, others) | nil, message
-- Lua has no stat(); `ls -ldL` prints the mode the same way on every POSIX
-- system (GNU, BSD, macOS, busybox), unlike `stat -c` / `stat -f`.
function M.permissions(path)
  local p = io.popen("LC_ALL=C ls -ldL -- " .. shell_quote(path) .. " 2>/dev/null")
  if not p then
    return nil, "could not run ls"
  end
  local line = p:read("*l") or ""
  p:close()
  local perms = match(line, "^[%-dlcbps]([rwxsStTl%-][rwxsStTl%-][rwxsStTl%-][rwxsStTl%-][rwxsStTl%-]" ..
                                  "[rwxsStTl%-][rwxsStTl%-][rwxsStTl%-][rwxsStTl%-])")
  if not perms then
    return nil, "could not read its permissions"
  end
  return perms
end

--- check_private(path) -> true | nil, sentence
function M.check_private(path)
  local perms, err = M.permissions(path)
  if not perms then
    return nil, format("Could not check who can read the config file %s (%s).", path, err)
  end
  local rest = perms:sub(4)
  local readable = rest:sub(1, 1) == "r" or rest:sub(4, 4) == "r"
  local writable = rest:sub(2, 2) == "w" or rest:sub(5, 5) == "w"
  if readable or writable then
    return nil, format("The config file %s can be %s by group or others (mode %s), so it is not used: " ..
                       "run `chmod 600 %s` and try again.", path,
                       readable and "read" or "changed", perms, shell_quote(path))
  end
  return true
end

--- parse(text, name) -> { key = value }, { key = line } | nil, sentence
function M.parse(text, name)
  local values, lines = {}, {}
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = gsub(line, "\r$", "")
    if not match(line, "^%s*$") and not match(line, "^%s*[#;]") then
      local key, value = match(line, "^%s*([%w_%-]+)%s*=%s*(.-)%s*$")
      if not key then
        return nil, format("Line %d of the config file %s is not `key = value`.", n, name)
      end
      key = gsub(key, "%-", "_")
      local kind = M.KEYS[key]
      if not kind then
        return nil, format("Line %d of the config file %s has the unknown key '%s' (known: %s).",
                           n, name, key, table.concat(M.ORDER, ", "))
      end
      local q = match(value, '^"(.*)"$') or match(value, "^'(.*)'$")
      if q then
        value = q
      end
      if kind == "number" then
        local v = tonumber(value)
        if not v or v <= 0 then
          return nil, format("Line %d of the config file %s: %s must be a positive number.", n, name, key)
        end
        value = v
      elseif kind == "boolean" then
        local v = BOOL[value:lower()]
        if v == nil then
          return nil, format("Line %d of the config file %s: %s must be true or false.", n, name, key)
        end
        value = v
      end
      values[key], lines[key] = value, n
    end
  end
  return values, lines
end

--- read(path) -> values | nil, sentence
function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then
    return nil, format("Could not open the config file %s (%s).", path, err)
  end
  local text = f:read("*a") or ""
  f:close()
  return M.parse(text, path)
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end

--- resolve(flags, getenv) -> settings, sources | nil, sentence
-- flags: the parsed global options (config, base_url, user_data, timeout,
-- ca_file, insecure, proxy); sources[key] says where each value came from.
function M.resolve(flags, getenv)
  local settings, sources = {}, {}
  local path, explicit = flags.config, flags.config ~= nil
  if not path then
    path = M.default_path(getenv)
  end
  local file = {}
  if path and (explicit or exists(path)) then
    if explicit and not exists(path) then
      return nil, format("The config file %s does not exist or cannot be read.", path)
    end
    local ok, err = M.check_private(path)
    if not ok then
      return nil, err
    end
    local values, perr = M.read(path)
    if not values then
      return nil, perr
    end
    file = values
  end
  for _, key in ipairs(M.ORDER) do
    local env = M.ENV[key] and getenv(M.ENV[key])
    if env == "" then
      env = nil
    end
    if key ~= "app_secret" and flags[key] ~= nil and flags[key] ~= false then
      settings[key], sources[key] = flags[key], "the --" .. gsub(key, "_", "-") .. " flag"
    elseif env then
      settings[key], sources[key] = env, M.ENV[key]
    elseif file[key] ~= nil then
      settings[key], sources[key] = file[key], path
    end
  end
  settings.config_path = path
  settings.config_used = next(file) ~= nil or (path ~= nil and exists(path))
  return settings, sources
end

return M
