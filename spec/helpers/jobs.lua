--- Helpers for the jobs' specs (archive, sync, records{ concurrency }): temporary directories, files,
-- a mock provider with a client on it, child Lua processes.
local clicktocall = require "clicktocall"
local mock = require "clicktocall.mock"

local M = {}

M.USER_DATA = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"
M.LUA = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
M.BUILD = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")

local util = require "spec.helpers.util"
M.shell = util.sh

function M.mkdtemp()
  return (M.shell("mktemp -d"):gsub("%s+$", ""))
end

function M.rmtree(dir)
  if dir and dir:match("^/tmp/") then
    M.shell("rm -rf '" .. dir .. "'")
  end
end

--- every path under dir, relative, sorted (hidden ones included)
function M.tree(dir)
  local names = {}
  for name in M.shell("cd '" .. dir .. "' && find . -mindepth 1 | sort"):gmatch("[^\n]+") do
    names[#names + 1] = name:gsub("^%./", "")
  end
  return names
end

M.read = util.read_file

function M.write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

function M.lines(path)
  local out = {}
  for line in (M.read(path) or ""):gmatch("[^\n]+") do
    out[#out + 1] = line
  end
  return out
end

--- the SHA-256 of s in hex (the manifest's and the store's form)
function M.sha256(s)
  local x = require("clicktocall.core").sha256()
  x:update(s)
  return x:hex()
end

--- id (as a string) -> the last manifest line of that id in dir (an upload adds a second line), and how many
-- ids; a line that is not JSON fails the spec unless `torn_ok` (a run killed mid-write may leave one)
function M.manifest(dir, torn_ok)
  local json = require "clicktocall.json"
  local out, n = {}, 0
  for _, line in ipairs(M.lines(dir .. "/manifest.jsonl")) do
    local e = json.decode(line)
    assert(e or torn_ok, "a manifest line is not JSON: " .. line)
    if e then
      if not out[tostring(e.id)] then n = n + 1 end
      out[tostring(e.id)] = e
    end
  end
  return out, n
end

--- a mock provider (its clock is the real one) and a client on it; opts go to clicktocall.new
function M.client(opts, mock_opts)
  local provider = mock.new(mock_opts or {})
  local o = { base_url = "http://mock", app_secret = "TEST", user_data = M.USER_DATA,
              transport = provider.transport, sleep = provider.sleep }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(clicktocall.new(o)), provider
end

--- the number of requests of one op the mock saw
function M.count(provider, op)
  local n = 0
  for _, r in ipairs(provider.requests) do
    if r.op == op then n = n + 1 end
  end
  return n
end

--- A simulated clock for sync specs: os.time() (what sync reads) and the mock's clock both answer `t`
-- until restore(). os.time(table) still converts dates.
--   local clock = j.fake_clock(1700000000); mock.new{ clock = clock.now }; clock:advance(300); clock.restore()
function M.fake_clock(t)
  local real = os.time
  local clock = { t = t }
  clock.now = function() return clock.t end
  function clock:advance(s) self.t = self.t + s end
  function clock.restore() os.time = real end -- luacheck: ignore 122
  os.time = function(date) -- luacheck: ignore 122
    if date ~= nil then return real(date) end
    return clock.t
  end
  return clock
end

--- A Lua script for a child process: the module and the core of this interpreter on its paths.
function M.script(dir, name, body)
  local path = dir .. "/" .. name
  M.write(path, ([[
package.path = "./lua/?.lua;./?.lua;./?/init.lua;" .. package.path
package.cpath = "./build/%s/?.so;" .. package.cpath
]]):format(M.BUILD) .. body)
  return path
end

--- Waits until pred() is true, polling, or the deadline (seconds) passes -> whether it became true.
function M.wait_until(pred, seconds)
  local core = require "clicktocall.core"
  local deadline = core.now() + (seconds or 10)
  while core.now() < deadline do
    if pred() then return true end
    core.sleep(0.02)
  end
  return pred() and true or false
end

return M
