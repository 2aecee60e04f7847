--- Starts the bundled provider simulator (sim/) on a free loopback port for a spec.
--   local sim = require "spec.helpers.sim"
--   local s = assert(sim.start())          -- s.base_url, s.secret, s.user_data
--   local s = assert(sim.start { secret = "x", user_data = "u", workers = 1, balance = 100, dict_size = "128m" })
--   local s = assert(sim.start { tls = true })  -- also s.tls_base_url (https, self-signed) and s.ca_file
--   s:options { recording_base = s.tls_base_url }  -- records then point at recordings over https
--   s:post("/_sim/seed", { count = 250, start_time = ..., end_time = ... })
--   s:seed { count = 250, start_time = ..., end_time = ... }   -- -> { first_id =, last_id = }
--   s:seed { times = { "2024-01-01 00:00:00", 1704038400 }, recording_bytes = 1048576 }
--   s:options { latency_ms = 30, recording_bytes = 262144 }    -- -> every option's value now
--   s:fault { path = "/rest/voiceCall/api", kind = "reset_after_send" }
--   s:client { timeout = 2 }               -- a client over it (clicktocall.new; opts override)
--   s:requests()                           -- the simulator's request log (entries have started/finished)
--   s:stats()                              -- { in_flight, max_in_flight, requests, api = {..}, recordings = {..} }
--   s:stats_clear()
--   s:recording_info(sid)                  -- { bytes, sha256, status, ... } or nil, message (unknown session)
--   s:stop()
local nginx = require "spec.helpers.nginx"
local core = require "clicktocall.core"
local cjson = require("cjson").new()

local M = {}
M.SECRET = "TEST"
M.USER_DATA = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"

local sim_mt = {}
sim_mt.__index = sim_mt

local sh_quote = require("spec.helpers.util").quote
local shell = nginx.run -- ok, output: the exit status is read the same way on every Lua

-- A port found free may be taken by another process before the simulator binds it (several test runs share
-- the machine): start again on a new port when nginx says "Address already in use".
local START_ATTEMPTS = 6

function M.start(opts)
  opts = opts or {}
  local ok, out, env, prefix, tls_port
  for _ = 1, START_ATTEMPTS do
    prefix = os.tmpname()
    os.remove(prefix)
    env = ("CTC_SIM_PORT=%d CTC_SIM_PREFIX=%s CTC_SIM_WORKERS=%d"):format(nginx.free_port(), prefix,
                                                                        opts.workers or 2)
    tls_port = opts.tls and nginx.free_port() or nil
    if tls_port then env = env .. " CTC_SIM_TLS_PORT=" .. tls_port end
    for _, v in ipairs { { "CTC_SIM_SECRET", opts.secret }, { "CTC_SIM_USER_DATA", opts.user_data },
                         { "CTC_SIM_BALANCE", opts.balance }, { "CTC_SIM_DICT_SIZE", opts.dict_size } } do
      if v[2] ~= nil then env = env .. " " .. v[1] .. "=" .. sh_quote(v[2]) end
    end
    ok, out = shell(env .. " " .. nginx.repo_root() .. "/sim/run start")
    if ok or not out:find("Address already in use", 1, true) then
      break
    end
    os.execute("rm -rf '" .. prefix .. "'")
  end
  if not ok then
    return nil, "sim/run start failed: " .. out
  end
  local s = setmetatable({
    base_url = out:match("(http://[^\n]+)%s*$"), env = env, secret = opts.secret or M.SECRET,
    user_data = opts.user_data or M.USER_DATA,
    http = core.curl_transport(), prefix = prefix,
    -- tls = true: the same simulator over https (a self-signed certificate; ca_file trusts it)
    tls_base_url = tls_port and ("https://127.0.0.1:%d"):format(tls_port) or nil,
    ca_file = tls_port and (prefix .. "/tls/cert.pem") or nil,
  }, sim_mt)
  return s
end

--- POST a control call; returns the decoded answer (raises on failure: specs want to stop there).
function sim_mt:post(path, body)
  local res, err = self.http:perform { method = "POST", url = self.base_url .. path,
    headers = { ["Content-Type"] = "application/json" }, body = body and cjson.encode(body) or "{}",
    max_body = 64 * 1024 * 1024 }
  assert(res, err and err.message)
  assert(res.status == 200, path .. " answered " .. res.status .. ": " .. res.body)
  return cjson.decode(res.body)
end

function sim_mt:get(path)
  local res, err = self.http:perform { method = "GET", url = self.base_url .. path, max_body = 64 * 1024 * 1024 }
  assert(res, err and err.message)
  return cjson.decode(res.body)
end

--- s:client(opts) -> a client over this simulator (its secret and user_data, no sleep between retries);
-- opts override or add options
function sim_mt:client(opts)
  local o = { base_url = self.base_url, app_secret = self.secret, user_data = self.user_data,
              sleep = function() end }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  return assert(require("clicktocall").new(o))
end

function sim_mt:reset() return self:post("/_sim/reset") end
function sim_mt:fault(f) return self:post("/_sim/fault", f) end
function sim_mt:seed(t) return self:post("/_sim/seed", t) end
function sim_mt:options(t) return self:post("/_sim/options", t) end
function sim_mt:stats() return self:get("/_sim/stats") end
function sim_mt:stats_clear() return self:post("/_sim/stats/clear") end

local function escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

--- What a download of session sid (any string; or a record id, a number) gets now:
--  { session_id, url_path, bytes, sha256, status (200 or 410), generated, call_end_time, expires_at },
--  or nil, message for a session without a recording (the simulator answers 404).
function sim_mt:recording_info(sid)
  local q = type(sid) == "number" and ("id=%d"):format(sid) or ("session_id=" .. escape(sid))
  local res, err = self.http:perform { method = "GET", url = self.base_url .. "/_sim/recording_info?" .. q }
  assert(res, err and err.message)
  local v = cjson.decode(res.body)
  if res.status ~= 200 then return nil, v.error or res.body end
  return v
end

--- The request log, optionally only the entries for one path.
function sim_mt:requests(uri)
  local all, out = self:get("/_sim/requests"), {}
  for _, r in ipairs(all.requests or all) do
    if uri == nil or r.uri == uri then out[#out + 1] = r end
  end
  return out
end

function sim_mt:stop()
  if self.http then
    self.http:close()
    self.http = nil
    shell(self.env .. " " .. nginx.repo_root() .. "/sim/run stop")
    os.execute("rm -rf '" .. self.prefix .. "'")
  end
end

--- busiest(entries, width) -> the most arrivals any window of `width` seconds holds, and how many there were
-- (entries: the simulator's request log, s:requests(...); each has `started`, in seconds)
function M.busiest(entries, width)
  local t = {}
  for _, e in ipairs(entries) do t[#t + 1] = e.started end
  table.sort(t)
  local worst = 0
  for i = 1, #t do
    local n = 0
    for k = i, #t do
      if t[k] < t[i] + width then n = n + 1 end
    end
    worst = math.max(worst, n)
  end
  return worst, #t
end

return M
