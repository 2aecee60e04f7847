-- `luarocks test rockspec/clicktocall-scm-1.rockspec [busted arguments]` runs this script with the
-- rock's Lua: busted, in this process, on the specs .busted names (or on the files given).
-- A script rather than LuaRocks' "busted" test type, which insists on a busted rock and so
-- fails with Debian's lua-busted or offline; here either busted does.
-- LuaRocks' loader finds the core `luarocks make` installed, in any tree LuaRocks knows.
pcall(require, "luarocks.loader")
local ok, runner = pcall(require, "busted.runner")
if not ok then
  io.stderr:write("luarocks test: busted is not installed",
    " (Debian: apt-get install lua-busted; or luarocks install busted)\n")
  os.exit(1)
end
runner { standalone = false }
