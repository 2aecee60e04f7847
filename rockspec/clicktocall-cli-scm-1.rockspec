-- The clicktocall command (docs/CLI.md), a rock of its own so that the library
-- (rockspec/clicktocall-scm-1.rockspec) pulls in none of its dependencies.
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
  type = "builtin",
  modules = {
    ["clicktocall.cli"] = "lua/clicktocall/cli.lua",
    ["clicktocall.cli.config"] = "lua/clicktocall/cli/config.lua",
    ["clicktocall.cli.doctor"] = "lua/clicktocall/cli/doctor.lua",
    ["clicktocall.cli.output"] = "lua/clicktocall/cli/output.lua",
    ["clicktocall.cli.progress"] = "lua/clicktocall/cli/progress.lua",
    ["clicktocall.cli.times"] = "lua/clicktocall/cli/times.lua",
  },
  install = {
    bin = { clicktocall = "bin/clicktocall" },
  },
  copy_directories = {},
}
