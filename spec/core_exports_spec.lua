-- Values and pure helpers the C core exports for the Lua layers.
require "spec.helpers"
local core = require "clicktocall.core"

describe("core exports", function()
  it("DEFAULTS in seconds and bytes, and MAX_REDIRECTS", function()
    assert.same({ timeout = 10, connect_timeout = 3, max_body = 8388608 }, core.DEFAULTS)
    assert.equal(3, core.MAX_REDIRECTS)
    if math.type then
      assert.equal("integer", math.type(core.DEFAULTS.timeout))
      assert.equal("integer", math.type(core.DEFAULTS.max_body))
    end
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
