-- The clicktocall command (docs/CLI.md) and its dependencies, a rock of its own so that
-- the library (rockspec/clicktocall-scm-1.rockspec) pulls in none of them.
rockspec_format = "3.0"
package = "clicktocall-cli"
version = "scm-1"
source = {
  url = "git+https://example.invalid/clicktocall.git",
}
description = {
  summary = "The clicktocall command: dial, balance, records, archive, sync and doctor from a shell",
  detailed = [[
    The command-line tool of the clicktocall library, for cron jobs, on-call engineers
    and support staff: the library without Lua.
  ]],
  license = "MIT",
  labels = { "http", "telephony", "cli" },
}
supported_platforms = { "unix" }
dependencies = {
  "lua >= 5.1",
  "clicktocall == scm",
  "argparse >= 0.7",
  "lua-term",
  -- `clicktocall doctor` resolves and connects with it
  "luasocket",
}
build = {
  -- the modules come with the clicktocall rock (LuaRocks' builtin type would install all of lua/ again)
  type = "none",
  install = {
    bin = { clicktocall = "bin/clicktocall" },
  },
  copy_directories = {},
}
