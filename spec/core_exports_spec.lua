-- Values and pure helpers the C core exports for the Lua layers.
require "spec.helpers"
local core = require "clicktocall.core"

describe("core exports", function()
  it("DEFAULTS in seconds and bytes", function()
    assert.same({ timeout = 10, connect_timeout = 3, max_body = 8388608 }, core.DEFAULTS)
    if math.type then
      assert.equal("integer", math.type(core.DEFAULTS.timeout))
      assert.equal("integer", math.type(core.DEFAULTS.max_body))
    end
  end)

  it("LIMITS, the same as clicktocall.limits (the pure modules' copy) wherever the core enforces one", function()
    local limits = require "clicktocall.limits"
    assert.same({ header_bytes = 65536, header_lines = 200, page_size = 100, redirects = 3,
                  time_max = 253402271999, exact_double = 2 ^ 53 }, core.LIMITS)
    for k, v in pairs(core.LIMITS) do
      assert.equal(v, limits[k], k)
    end
    assert.equal(7 * 86400, limits.recording_ttl) -- Lua's own (the archive, the mock, the simulator)
    assert.equal(limits.page_size, require("clicktocall").PAGE_SIZE)
    -- the time range is the parser's: its last second reads, the next one does not
    assert.equal("9999-12-31 23:59:59", core.format_time(limits.time_max))
    assert.is_nil(core.format_time(limits.time_max + 1))
  end)

  it("http_date reads the three RFC 9110 forms into Unix seconds", function()
    assert.equal(784111777, core.http_date("Sun, 06 Nov 1994 08:49:37 GMT"))
    assert.equal(784111777, core.http_date("Sunday, 06-Nov-94 08:49:37 GMT"))
    assert.equal(784111777, core.http_date("Sun Nov  6 08:49:37 1994"))
    assert.equal(253402300799, core.http_date("Fri, 31 Dec 9999 23:59:59 GMT"))
    if math.type then
      assert.equal("integer", math.type(core.http_date("Thu, 01 Jan 1970 00:00:00 GMT")))
    end
  end)

  it("http_date is nil for anything else", function()
    for _, s in ipairs { "", "120", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 31 Nov 1994 08:49:37 GMT",
                         "Sun, 06 Nov 1994 08:49:37 GMT\0", 784111777, true } do
      assert.is_nil(core.http_date(s))
    end
    assert.is_nil(core.http_date())
  end)
end)

describe("core.OPS", function()
  it("names the four calls once, in the provider's order", function()
    assert.same({ "bind_seat", "dial", "balance", "records_page" }, core.OPS)
    for _, op in ipairs(core.OPS) do
      -- every name is one core.request and core.response accept
      assert.has_no_error(function() core.request(op, { base_url = "http://x" }, {}) end)
      assert.has_no_error(function() core.response(op, 500, "") end)
    end
  end)
end)

describe("the core's failures", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(core.mkdir(dir))
  end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  -- nil and { kind, message, sent = false [, code] }: one shape from every C entry point
  local function refused(kind, v, err)
    assert.is_nil(v)
    assert.is_table(err)
    assert.equal(kind, err.kind)
    assert.is_string(err.message)
    assert.is_false(err.sent)
    return err
  end

  it("come as nil and an error table, whichever entry point fails", function()
    local missing = dir .. "/no/such"
    refused("io", core.fsync(missing))
    refused("io", core.list_dir(missing))
    refused("io", core.dir_writable(missing))
    refused("io", core.mkdir(missing .. "/x"))
    refused("io", core.append_sync(missing, "x"))
    refused("io", core.file_sink(missing))
    refused("io", core.lock_file(missing))
    local sink = assert(core.file_sink(dir .. "/s"))
    sink:abort()
    refused("io", sink:write("x"))
    refused("io", sink:finish())
    refused("argument", core.normalize_phone("12345"))
    refused("argument", core.normalize_phone(42))
    refused("argument", core.format_time("soon"))
    refused("argument", core.parse_time("2026-13-01 00:00:00"))
    refused("argument", core.sigv4_sign {})
    refused("argument", core.s3_url {})
  end)

  it("tell the conditions Lua branches on by err.code, not by their words", function()
    io.open(dir .. "/taken", "wb"):close()
    assert.equal("exists", refused("io", core.file_sink(dir .. "/taken")).code)
    assert.is_nil(refused("io", core.file_sink(dir .. "/no/such")).code)
    local held = assert(core.lock_file(dir .. "/l"))
    assert.equal("busy", refused("io", core.lock_file(dir .. "/l")).code)
    held:unlock()
  end)

  it("a phone number's refusal names the offending character, once for every character", function()
    for _, c in ipairs { "a", "Z", "#", "*", "'", "~" } do
      local err = refused("argument", core.normalize_phone("135" .. c .. "00000002"))
      assert.equal("phone number contains '" .. c .. "'", err.message)
    end
    assert.equal("phone number has 1 digit; a Chinese mobile number has 11",
                 refused("argument", core.normalize_phone("1")).message)
    assert.equal("phone number has 12 digits; a Chinese mobile number has 11",
                 refused("argument", core.normalize_phone("135000000021")).message)
  end)
end)
