--- Small things many specs need, one copy each.
--   local util = require "spec.helpers.util"
--   util.read_file(path)  -> the file's bytes, or nil when it cannot be opened
--   util.sh(cmd)          -> what cmd printed (stdout and stderr); children never inherit a sanitizer
--                            runtime preloaded into the spec runner
--   util.quote(s)         -> s as one word for the shell
local M = {}

function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("*a")
  f:close()
  return s
end

function M.sh(cmd)
  local p = assert(io.popen("unset LD_PRELOAD; " .. cmd .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  return out
end

return M
