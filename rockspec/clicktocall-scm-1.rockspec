-- The version below is the one version of clicktocall: the Makefile's
-- CTC_VERSION and the core's _VERSION must equal it (spec/config_spec.lua).
local CTC_VERSION = "0.1.0"

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
dependencies = {
  "lua >= 5.1",
  "lua-cjson",
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
    ["clicktocall.errors"] = "lua/clicktocall/errors.lua",
    ["clicktocall.dial_guard"] = "lua/clicktocall/dial_guard.lua",
    ["clicktocall.transport.ngx"] = "lua/clicktocall/transport/ngx.lua",
    ["clicktocall.core"] = {
      sources = {
        "csrc/base64.c", "csrc/buf.c", "csrc/core.c", "csrc/curl.c", "csrc/cursor.c", "csrc/files.c",
        "csrc/jsonscan.c", "csrc/phone.c", "csrc/request.c", "csrc/response.c",
        "csrc/push.c", "csrc/sha256.c", "csrc/timefmt.c",
      },
      defines = { 'CTC_VERSION="' .. CTC_VERSION .. '"', "_POSIX_C_SOURCE=200809L" },
      libraries = { "curl", "m" },
      incdirs = { "$(CURL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)" },
    },
  },
}
