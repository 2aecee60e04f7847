-- What the examples share: their settings come from the environment only, as the clicktocall command's do
-- (CLICKTOCALL_*), and never from a default. cron starts a job with an almost empty environment, and that
-- must stop the job here, loudly (exit 2, a sentence naming what is missing), not send it to some other
-- provider. An example loads it with dofile from its own folder: copy it along with the example.
--
--   local settings = dofile((arg[0]:match("^(.*/)") or "") .. "settings.lua")
--   local env = settings { "CLICKTOCALL_BASE_URL", "CLICKTOCALL_APP_SECRET", "CLICKTOCALL_USER_DATA" }

return function(names)
  local function join(list)
    return #list == 1 and list[1] or table.concat(list, ", ", 1, #list - 1) .. " and " .. list[#list]
  end
  local values, missing = {}, {}
  for _, name in ipairs(names) do
    local v = os.getenv(name)
    if v == nil or v == "" then
      missing[#missing + 1] = name
    end
    values[name] = v
  end
  if #missing > 0 then
    io.stderr:write(("%s: %s %s not set, so nothing was done (%scron starts jobs with an almost empty "
      .. "environment: see \"From cron\" in the README).\n"):format(arg[0], join(missing),
      #missing == 1 and "is" or "are", #missing < #names and "it needs " .. join(names) .. "; " or ""))
    os.exit(2)
  end
  return values
end
