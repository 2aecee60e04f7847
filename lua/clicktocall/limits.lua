--- clicktocall.limits: the fixed limits, beside the options' defaults (core.DEFAULTS), read by every module
-- that needs one. A pure Lua module, like clicktocall.version, because the ngx transport, the mock and the
-- simulator read them without loading the C core; the core's own copies (ctc.h, parsers.h) are
-- core.LIMITS, and spec/core_exports_spec.lua checks the two agree.
return {
  _VERSION = require "clicktocall.version",
  header_bytes = 65536,       -- one response's header lines together (status line and line ends not counted)
  header_lines = 200,         -- ... and their number; both transports refuse past either the same way
  page_size = 100,            -- the provider's records per page
  redirects = 3,              -- followed by a recording download
  recording_ttl = 7 * 86400,  -- a recording is kept this many seconds after its call ended
  time_max = 253402271999,    -- the latest time, Unix seconds: 9999-12-31 23:59:59 on the provider's UTC+8
  exact_double = 2 ^ 53,      -- a double holds every integer up to it exactly, and not every one past it
  records_concurrency = 16,   -- records{ concurrency }: slices of the window paged at once, at most
  archive_concurrency = 32,   -- archive_recordings{ concurrency }: downloads at once, at most
  lookback_max = 30 * 86400,  -- sync{ lookback }: a record listed later than this is not worth waiting for
}
