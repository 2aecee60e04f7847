--- Where the command's settings come from: flags, then the environment
-- (CLICKTOCALL_BASE_URL, CLICKTOCALL_APP_SECRET, CLICKTOCALL_USER_DATA,
-- CLICKTOCALL_TIMEOUT, CLICKTOCALL_CA_FILE, CLICKTOCALL_PROXY, CLICKTOCALL_RATE_LIMIT,
-- CLICKTOCALL_RATE_LIMIT_WAIT), then the user's
-- config file, then the system-wide one (/etc/clicktocall/config). A config file
-- holds `key = value` lines: those before any `[name]` line are the default
-- profile, those after it the profile `name` (--profile NAME). The secret is
-- never a flag: flags show in `ps` and in shell history.
local tonumber = tonumber
local format = string.format
local match = string.match
local gsub = string.gsub
local floor = math.floor
local RWX = { "r", "w", "x" }

local M = { _VERSION = require "clicktocall.version" }

-- key -> kind; the global options' names with "_" for "-", plus the two that
-- are never flags
M.KEYS = {
  base_url = "string", app_secret = "string", user_data = "string", timeout = "number",
  ca_file = "string", insecure = "boolean", proxy = "string",
  -- config file only: the dial guard ("local", "off" or "redis://host:port[/db]"), its hold in seconds,
  -- and the jobs' lock ("redis://host:port[/db]")
  dial_guard = "string", dial_guard_hold = "number", lock = "string",
  -- the client's rate_limit: "records_page=20/60, download=10" (CALL=RATE[/PER]), the longest wait for a turn
  -- (seconds, 0 refuses at once), the store shared with the nginx workers ("redis[s]://...": a flag only
  -- without a password) and the limit's name there (config file only)
  rate_limit = "string", rate_limit_wait = "seconds", rate_limit_store = "string", rate_limit_name = "string",
}
M.ORDER = { "base_url", "app_secret", "user_data", "timeout", "ca_file", "insecure", "proxy",
            "dial_guard", "dial_guard_hold", "lock", "rate_limit", "rate_limit_wait", "rate_limit_store",
            "rate_limit_name" }

M.ENV = {
  base_url = "CLICKTOCALL_BASE_URL",
  app_secret = "CLICKTOCALL_APP_SECRET",
  user_data = "CLICKTOCALL_USER_DATA",
  timeout = "CLICKTOCALL_TIMEOUT",
  ca_file = "CLICKTOCALL_CA_FILE",
  proxy = "CLICKTOCALL_PROXY",
  rate_limit = "CLICKTOCALL_RATE_LIMIT",
  rate_limit_wait = "CLICKTOCALL_RATE_LIMIT_WAIT",
}
-- the settings that have a flag (the secret never has one)
M.FLAG = {
  base_url = "--base-url", user_data = "--user-data", timeout = "--timeout", ca_file = "--ca-file",
  insecure = "--insecure", proxy = "--proxy", rate_limit = "--rate-limit", rate_limit_wait = "--rate-limit-wait",
  rate_limit_store = "--rate-limit-store",
}
M.ENV_CONFIG = "CLICKTOCALL_CONFIG"               -- the user's config file, as --config
M.ENV_PROFILE = "CLICKTOCALL_PROFILE"             -- the profile, as --profile
M.ENV_SYSTEM_CONFIG = "CLICKTOCALL_SYSTEM_CONFIG" -- the system-wide file; empty: none
M.SYSTEM_PATH = "/etc/clicktocall/config"

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
-- The mode as `ls -l` writes it (the special bits left out: only r and w are checked), from the core's
-- stat(); the core is loaded here, not at the top, so the module stays pure for the CLI's other users.
function M.permissions(path)
  local mode = require("clicktocall.core").file_mode(path)
  if not mode then
    return nil, "could not read its permissions"
  end
  local s = ""
  for i = 0, 8 do
    s = s .. (floor(mode / 2 ^ (8 - i)) % 2 == 1 and RWX[i % 3 + 1] or "-")
  end
  return s
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

-- one `key = value` line of a profile -> key, value | nil, sentence
local function parse_value(line, n, name)
  local key, value = match(line, "^%s*([%w_%-]+)%s*=%s*(.-)%s*$")
  if not key then
    return nil, format("Line %d of the config file %s is not `key = value` (nor a `[profile]` line).", n, name)
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
  if kind == "number" or kind == "seconds" then
    local v = M.number(value, kind)
    if not v then
      return nil, format("Line %d of the config file %s: %s must be %s.", n, name, key, M.WHAT[kind])
    end
    value = v
  elseif kind == "boolean" then
    local v = BOOL[value:lower()]
    if v == nil then
      return nil, format("Line %d of the config file %s: %s must be true or false.", n, name, key)
    end
    value = v
  end
  return key, value
end

M.DEFAULT_PROFILE = "default"

-- a number setting: "number" more than 0, "seconds" from 0 (rate_limit_wait: 0 refuses at once)
M.WHAT = { number = "a positive number", seconds = "a number of seconds from 0" }

--- number(text, kind) -> the value | nil
function M.number(text, kind)
  local v = tonumber(text)
  if not v or v ~= v or v == math.huge or v < 0 or (v == 0 and kind ~= "seconds") then
    return nil
  end
  return v
end

--- parse_profiles(text, name) -> { [profile] = { values =, lines = } }, { profile names in order } | nil, sentence
-- Lines before any `[name]` line are the profile "default"; `[default]` adds to it.
function M.parse_profiles(text, name)
  local profiles = { [M.DEFAULT_PROFILE] = { values = {}, lines = {} } }
  local order = { M.DEFAULT_PROFILE }
  local current = profiles[M.DEFAULT_PROFILE]
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = gsub(line, "\r$", "")
    if not match(line, "^%s*$") and not match(line, "^%s*[#;]") then
      local section = match(line, "^%s*%[%s*([%w_.%-]+)%s*%]%s*$")
      if section then
        if not profiles[section] then
          profiles[section] = { values = {}, lines = {}, header = n }
          order[#order + 1] = section
        end
        current = profiles[section]
      elseif match(line, "^%s*%[") then
        return nil, format("Line %d of the config file %s is not a `[profile]` line: a profile's name is " ..
                           "letters, digits, '.', '_' and '-'.", n, name)
      else
        local key, value = parse_value(line, n, name)
        if not key then
          return nil, value
        end
        current.values[key], current.lines[key] = value, n
      end
    end
  end
  return profiles, order
end

--- parse(text, name [, profile]) -> { key = value }, { key = line } | nil, sentence
-- (a profile that is not there gives two empty tables)
function M.parse(text, name, profile)
  local profiles, err = M.parse_profiles(text, name)
  if not profiles then
    return nil, err
  end
  local p = profiles[profile or M.DEFAULT_PROFILE] or { values = {}, lines = {} }
  return p.values, p.lines
end

--- read(path [, profile]) -> values, lines | nil, sentence
function M.read(path, profile)
  local f, err = io.open(path, "rb")
  if not f then
    return nil, format("Could not open the config file %s (%s).", path, err)
  end
  local text = f:read("*a") or ""
  f:close()
  return M.parse(text, path, profile)
end

--- readable(path) -> whether the file (or directory) can be opened
local function exists(path)
  local f = io.open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end
M.readable = exists

-- a file's text | nil, why, absent (true when there is no such file)
local function slurp(path)
  local f, err, errno = io.open(path, "rb")
  if not f then
    return nil, tostring(err):gsub("^.-: ", ""), errno == 2 -- ENOENT
  end
  local text = f:read("*a") or ""
  f:close()
  return text
end

local function holds_secret(profiles)
  for _, p in pairs(profiles) do
    if p.values.app_secret ~= nil then
      return true
    end
  end
  return false
end

--- check_system(path, profiles) -> true | nil, sentence
-- The system-wide file may be world-readable (base_url, ca_file, proxy for
-- every user) unless it holds a secret; nobody but its owner may change it.
function M.check_system(path, profiles)
  local perms, err = M.permissions(path)
  if not perms then
    return nil, format("Could not check who can read the system config file %s (%s).", path, err)
  end
  local rest = perms:sub(4)
  if rest:sub(2, 2) == "w" or rest:sub(5, 5) == "w" then
    return nil, format("The system config file %s can be changed by group or others (mode %s), so it is not " ..
                       "used: run `chmod go-w %s` and try again.", path, perms, shell_quote(path))
  end
  if (rest:sub(1, 1) == "r" or rest:sub(4, 4) == "r") and holds_secret(profiles) then
    return nil, format("The system config file %s holds app_secret and can be read by group or others (mode %s), " ..
                       "so it is not used: keep the secret in each user's config file or CLICKTOCALL_APP_SECRET, " ..
                       "or run `chmod 600 %s`.", path, perms, shell_quote(path))
  end
  return true
end

local function nonempty(getenv, name)
  local v = getenv(name)
  if v == nil or v == "" then
    return nil
  end
  return v
end

--- setting_name(origins, key) -> the setting as the user gave it: "--base-url",
-- "CLICKTOCALL_BASE_URL", "base_url in /home/u/.config/clicktocall/config:3"
function M.setting_name(origins, key)
  local o = origins and origins[key]
  if not o then
    return key
  elseif o.how == "file" then
    return format("%s in %s:%d", key, o.path, o.line)
  end
  return o.name
end

--- resolve(flags, getenv) -> settings, sources, origins | nil, sentence
-- flags: the parsed global options (config, profile, base_url, user_data,
-- timeout, ca_file, insecure, proxy). For each key, the first found wins: a
-- flag, the environment, the user's config file (its profile), the system's.
-- sources[key] says where the value came from in words ("the --proxy flag",
-- "CLICKTOCALL_PROXY", "/path:3"); origins[key] = { how = "flag"|"env"|"file",
-- name =, path =, line = } for setting_name().
function M.resolve(flags, getenv)
  local settings, sources, origins = {}, {}, {}
  local profile, profile_from = flags.profile, "--profile"
  if not profile then
    profile, profile_from = nonempty(getenv, M.ENV_PROFILE), M.ENV_PROFILE
  end
  profile = profile or M.DEFAULT_PROFILE

  -- the user's file
  local path, path_from = flags.config, "--config"
  if not path then
    path, path_from = nonempty(getenv, M.ENV_CONFIG), M.ENV_CONFIG
  end
  local explicit = path ~= nil
  path = path or M.default_path(getenv)
  local user
  if path and (explicit or exists(path)) then
    if explicit and not exists(path) then
      return nil, format("The config file %s does not exist or cannot be read (given by %s).", path, path_from)
    end
    local ok, err = M.check_private(path)
    if not ok then
      return nil, err
    end
    local text, rerr = slurp(path)
    if not text then
      return nil, format("Could not open the config file %s (%s).", path, rerr)
    end
    local perr
    user, perr = M.parse_profiles(text, path)
    if not user then
      return nil, perr
    end
  end

  -- the system's file: one that is there but that this user cannot read is
  -- passed over (a root-only file for root's cron jobs), and doctor says so
  local spath = getenv(M.ENV_SYSTEM_CONFIG)
  if spath == nil then
    spath = M.SYSTEM_PATH
  elseif spath == "" then
    spath = nil
  end
  local system
  if spath then
    local text, why, absent = slurp(spath)
    if text then
      local perr
      system, perr = M.parse_profiles(text, spath)
      if not system then
        return nil, perr
      end
      local ok, err = M.check_system(spath, system)
      if not ok then
        return nil, err
      end
    elseif not absent then
      settings.system_note = format("%s cannot be read (%s), so it is passed over", spath, why)
    end
  end

  local EMPTY = { values = {}, lines = {} }
  local up = user and user[profile]
  local sp = system and system[profile]
  if profile ~= M.DEFAULT_PROFILE and not up and not sp then
    local names = {}
    for _, f in ipairs({ user or {}, system or {} }) do
      for name, p in pairs(f) do
        if name ~= M.DEFAULT_PROFILE or next(p.values) then
          names[#names + 1] = name
        end
      end
    end
    table.sort(names)
    local files = {}
    files[#files + 1] = user and path or nil
    files[#files + 1] = system and spath or nil
    if #files == 0 then
      return nil, format("There is no profile [%s] (%s %s): there is no config file (%s is not there); " ..
        "`clicktocall --profile %s config init` writes one.", profile, profile_from, profile, tostring(path), profile)
    end
    return nil, format("There is no profile [%s] (%s %s) in %s%s.", profile, profile_from, profile,
      table.concat(files, " or "), #names > 0 and ("; the profiles there: " .. table.concat(names, ", ")) or "")
  end
  up, sp = up or EMPTY, sp or EMPTY

  for _, key in ipairs(M.ORDER) do
    local env = M.ENV[key] and nonempty(getenv, M.ENV[key])
    if key ~= "app_secret" and flags[key] ~= nil and flags[key] ~= false then
      local name = M.FLAG[key] or ("--" .. gsub(key, "_", "-"))
      settings[key], sources[key] = flags[key], "the " .. name .. " flag"
      origins[key] = { how = "flag", name = name }
    elseif env then
      local kind = M.KEYS[key]
      if kind == "number" or kind == "seconds" then
        local v = M.number(env, kind)
        if not v then
          return nil, format("%s must be %s, not '%s'.", M.ENV[key],
            kind == "number" and "a positive number of seconds" or M.WHAT[kind], gsub(env, "%c", "?"))
        end
        env = v
      end
      settings[key], sources[key] = env, M.ENV[key]
      origins[key] = { how = "env", name = M.ENV[key] }
    else
      for _, f in ipairs({ { up, path }, { sp, spath } }) do
        local line = f[1].lines[key]
        if line then
          settings[key], sources[key] = f[1].values[key], f[2] .. ":" .. line
          origins[key] = { how = "file", path = f[2], line = line }
          break
        end
      end
    end
  end
  settings.config_path = path
  settings.config_used = user ~= nil
  settings.system_path = spath
  settings.system_used = system ~= nil
  settings.profile = profile
  return settings, sources, origins
end

-- a value as a config line writes it, read back the same by parse()
local function line_value(v)
  v = tostring(v)
  if v ~= match(v, "^%s*(.-)%s*$") or match(v, '^".*"$') or match(v, "^'.*'$") then
    return '"' .. v .. '"'
  end
  return v
end

-- text without the lines of one profile: for the default one its `key =`
-- lines (comments stay), for a named one its `[name]` line and all below it
local function without_profile(text, profile)
  local out = {}
  local current = M.DEFAULT_PROFILE
  local top = true -- before any [name] line
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local section = match(line, "^%s*%[%s*([%w_.%-]+)%s*%]%s*$")
    if section then
      current, top = section, false
    end
    local mine = current == profile
    local keep = not mine or (top and (match(line, "^%s*$") or match(line, "^%s*[#;]")))
    if keep then
      out[#out + 1] = line
    end
  end
  while out[#out] == "" do
    out[#out] = nil
  end
  return table.concat(out, "\n")
end

--- write_profile(path, profile, values, force) -> true | nil, sentence
-- Writes one profile's `key = value` lines into the user's config file, made
-- mode 600 before the secret goes in. Another profile's lines are kept; this
-- profile's are replaced only with force.
function M.write_profile(path, profile, values, force)
  for _, key in ipairs(M.ORDER) do
    local v = values[key]
    if v ~= nil and tostring(v):find("[%c]") then
      return nil, format("%s must be one line without control characters.", key)
    end
  end
  local old = ""
  local text, why, absent = slurp(path)
  if text then
    local ok, err = M.check_private(path)
    if not ok then
      return nil, err
    end
    local profiles, perr = M.parse_profiles(text, path)
    if not profiles then
      return nil, perr .. " Nothing was written."
    end
    local p = profiles[profile]
    if p and (next(p.values) or p.header) and not force then
      return nil, format("The config file %s already has %s, so nothing was written: add --force to replace " ..
        "%s, or pick another --profile.", path,
        profile == M.DEFAULT_PROFILE and "settings for the default profile" or ("the profile [" .. profile .. "]"),
        profile == M.DEFAULT_PROFILE and "its top-level lines" or "that profile's lines")
    end
    old = without_profile(text, profile)
  elseif not absent then
    return nil, format("Could not read the config file %s (%s); nothing was written.", path, why)
  end
  local block = {}
  if profile ~= M.DEFAULT_PROFILE then
    block[1] = "[" .. profile .. "]"
  end
  for _, key in ipairs(M.ORDER) do
    if values[key] ~= nil then
      block[#block + 1] = key .. " = " .. line_value(values[key])
    end
  end
  local new
  if profile == M.DEFAULT_PROFILE then
    new = table.concat(block, "\n") .. "\n" .. (old ~= "" and ("\n" .. old .. "\n") or "")
  else
    new = (old ~= "" and (old .. "\n\n") or "") .. table.concat(block, "\n") .. "\n"
  end
  local dir = match(path, "^(.*)/[^/]*$")
  if dir and dir ~= "" and not exists(dir) then
    os.execute("mkdir -p -m 700 " .. shell_quote(dir) .. " 2>/dev/null")
  end
  -- the new file is made private while still empty, then filled, then renamed
  -- over the old one: the secret is never in a file others can read
  local tmp = path .. ".new"
  os.remove(tmp)
  local f, err = io.open(tmp, "wb")
  if not f then
    return nil, format("Could not create the config file %s (%s).", tmp, tostring(err):gsub("^.-: ", ""))
  end
  f:close()
  local ok = os.execute("chmod 600 " .. shell_quote(tmp))
  if (ok ~= true and ok ~= 0) or M.permissions(tmp) ~= "rw-------" then
    os.remove(tmp)
    return nil, format("Could not make %s private (chmod 600); nothing was written.", tmp)
  end
  f, err = io.open(tmp, "r+b")
  local wok, werr, cok, cerr = false, err, false, nil
  if f then
    wok, werr = f:write(new)
    cok, cerr = f:close()
  end
  if not wok or not cok then
    os.remove(tmp)
    return nil, format("Could not write the config file %s (%s).", tmp, tostring(werr or cerr))
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then
    os.remove(tmp)
    return nil, format("Could not put the config file in place at %s (%s).", path, tostring(rerr))
  end
  return true
end

return M
