--- Spec helpers: the C core's build path, the test credentials, JSON. Provider answers come from
-- clicktocall.mock (spec/helpers/client.lua builds a client over it), as users' own tests get them.
-- Loaded by busted as the helper (see .busted) and required by specs as
-- `local h = require "spec.helpers"`.

local cjson = require("cjson").new()

-- the core built for this interpreter: build/5.4, build/luajit, ... unless the
-- command line named a build already (--cpath=./build/asan/?.so must win)
local build = rawget(_G, "jit") and "luajit" or _VERSION:match("%d+%.%d+")
if not package.cpath:find("./build/", 1, true) then
  package.cpath = "./build/" .. build .. "/?.so;" .. package.cpath
end

local M = {}

M.SECRET = "s3cr3t-TEST"
M.SECRET_B64 = "czNjcjN0LVRFU1Q="
M.USER_DATA = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"
M.null = cjson.null

function M.json(v)
  return cjson.encode(v)
end

function M.decode(s)
  return cjson.decode(s)
end

--- Every string reachable from v (keys and values), for secret checks.
function M.strings(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "string" then
    out[#out + 1] = v
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do
      M.strings(k, out, seen)
      M.strings(x, out, seen)
    end
  end
  return out
end

return M
