-- The version lives in csrc/ctc.h (CTC_VERSION); spec/config_spec.lua checks the
-- versioned rockspec and CHANGELOG.md against it.
rockspec_format = "3.0"
package = "clicktocall"
version = "scm-1"
source = {
  url = "git+https://example.invalid/clicktocall.git",
}
description = {
  summary = "Client for a two-way callback (click-to-call) provider's HTTP API, with a C core",
  detailed = [[
    Bind a caller phone to a seat, dial, page through call records and download
    their recordings, query the balance. A C core builds requests and reads
    responses; libcurl moves the bytes in plain Lua, cosockets inside OpenResty.
  ]],
  license = "MIT",
  labels = { "http", "telephony", "openresty", "libcurl" },
}
supported_platforms = { "unix" }
-- The library. LuaRocks installs all of lua/, so this rock carries the command's modules
-- (clicktocall.cli*) too, but none of their dependencies: the command and those are the
-- clicktocall-cli rock.
dependencies = {
  "lua >= 5.1",
  -- no lua-cjson: the core reads the provider's JSON itself (csrc/jsondecode.c) and clicktocall.json
  -- writes and reads the few small files the library writes (manifest, sync state, the mock's bodies)
  -- the Redis dial guard and job leases outside nginx (inside nginx they use cosockets)
  "luasocket",
}
external_dependencies = {
  CURL = {
    -- a library check, not a header check: Debian keeps curl.h under a
    -- multiarch directory that LuaRocks' header search does not look in
    library = "curl",
  },
}
build = {
  type = "builtin",
  modules = {
    ["clicktocall"] = "lua/clicktocall.lua",
    ["clicktocall.archive"] = "lua/clicktocall/archive.lua",
    ["clicktocall.batch"] = "lua/clicktocall/batch.lua",
    ["clicktocall.cli"] = "lua/clicktocall/cli.lua",
    ["clicktocall.cli.config"] = "lua/clicktocall/cli/config.lua",
    ["clicktocall.cli.doctor"] = "lua/clicktocall/cli/doctor.lua",
    ["clicktocall.cli.output"] = "lua/clicktocall/cli/output.lua",
    ["clicktocall.cli.progress"] = "lua/clicktocall/cli/progress.lua",
    ["clicktocall.cli.times"] = "lua/clicktocall/cli/times.lua",
    ["clicktocall.dial_guard"] = "lua/clicktocall/dial_guard.lua",
    ["clicktocall.download"] = "lua/clicktocall/download.lua",
    ["clicktocall.errors"] = "lua/clicktocall/errors.lua",
    ["clicktocall.exchange"] = "lua/clicktocall/exchange.lua",
    ["clicktocall.json"] = "lua/clicktocall/json.lua",
    ["clicktocall.http1"] = "lua/clicktocall/http1.lua",
    ["clicktocall.jobs"] = "lua/clicktocall/jobs.lua",
    ["clicktocall.lease"] = "lua/clicktocall/lease.lua",
    ["clicktocall.limits"] = "lua/clicktocall/limits.lua",
    ["clicktocall.log"] = "lua/clicktocall/log.lua",
    ["clicktocall.metrics"] = "lua/clicktocall/metrics.lua",
    ["clicktocall.mock"] = "lua/clicktocall/mock.lua",
    ["clicktocall.options"] = "lua/clicktocall/options.lua",
    ["clicktocall.provider_rules"] = "lua/clicktocall/provider_rules.lua",
    ["clicktocall.pager"] = "lua/clicktocall/pager.lua",
    ["clicktocall.rate_limit"] = "lua/clicktocall/rate_limit.lua",
    ["clicktocall.redis"] = "lua/clicktocall/redis.lua",
    ["clicktocall.s3"] = "lua/clicktocall/s3.lua",
    ["clicktocall.slices"] = "lua/clicktocall/slices.lua",
    ["clicktocall.sync"] = "lua/clicktocall/sync.lua",
    ["clicktocall.transport.curl"] = "lua/clicktocall/transport/curl.lua",
    ["clicktocall.transport.func"] = "lua/clicktocall/transport/func.lua",
    ["clicktocall.transport.ngx"] = "lua/clicktocall/transport/ngx.lua",
    ["clicktocall.version"] = "lua/clicktocall/version.lua",
    ["clicktocall.core"] = {
      sources = {
        "csrc/base64.c", "csrc/buf.c", "csrc/core.c", "csrc/curl.c", "csrc/easy.c",
        "csrc/cursor.c", "csrc/fsys.c", "csrc/jsondecode.c", "csrc/multi.c",
        "csrc/phone.c",
        "csrc/push.c", "csrc/request.c", "csrc/response.c", "csrc/sha256.c", "csrc/sigv4.c",
        "csrc/sigv4_lua.c", "csrc/sink.c",
        "csrc/timefmt.c", "csrc/upload.c",
      },
      defines = { "_POSIX_C_SOURCE=200809L" },
      libraries = { "curl", "m", "pthread" },
      incdirs = { "$(CURL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)" },
    },
  },
  -- with doc directories LuaRocks copies no README or LICENSE by itself: they go beside them
  install = {
    conf = { ["README.md"] = "README.md", LICENSE = "LICENSE" },
  },
  copy_directories = { "docs", "examples" },
}
-- `luarocks test`: the specs, by busted (Debian's lua-busted or the rock), from the checkout
test = { type = "command", script = "spec/luarocks_test.lua" }
