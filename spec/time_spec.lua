-- Time arguments: "yyyy-MM-dd HH:mm:ss" strings or Unix seconds, in the provider's clock (UTC+8).
local mc = require "spec.helpers.client"
local clicktocall = require "clicktocall"

-- the records_page body the provider got (decoded), or nil and the error; and the provider
local function body_of(args)
  local client, provider = mc.new()
  local recs, err = client:records_page(args)
  local req = provider:last_request("records_page")
  return recs and req and req.body, err, provider
end

describe("time arguments", function()
  it("pass a valid string through unchanged", function()
    local body = body_of { start_time = "2024-02-29 23:59:59", end_time = "2024-03-01 00:00:00" }
    assert.equal("2024-02-29 23:59:59", body.starTime)
    assert.equal("2024-03-01 00:00:00", body.endTime)
  end)

  it("format Unix seconds in UTC+8, whatever the machine's TZ", function()
    assert.equal("1970-01-01 08:00:00", clicktocall.format_time(0))
    assert.equal("2000-01-01 00:00:00", clicktocall.format_time(946656000))
    assert.equal("2019-03-25 10:23:52", clicktocall.format_time(1553480632))
  end)

  it("round-trip: a string and its Unix seconds give the same wire text", function()
    local a = body_of { start_time = "2019-03-25 10:23:52", end_time = 1553480632 }
    assert.equal(a.starTime, a.endTime)
  end)

  it("drop fractions of a second (ngx.now() gives them)", function()
    assert.equal("1970-01-01 08:00:01", clicktocall.format_time(1.75))
  end)

  local bad = {
    { "2019-02-29 00:00:00", "not a leap year" },
    { "2019-13-01 00:00:00", "month 13" },
    { "2019-04-31 00:00:00", "April 31" },
    { "2019-03-25 24:00:00", "hour 24" },
    { "2019-03-25 10:60:00", "minute 60" },
    { "2019-03-25T10:23:52", "ISO T separator" },
    { "2019-3-25 10:23:52", "one-digit month" },
    { "2019-03-25 10:23:52 ", "trailing space" },
    { "2019-03-25", "date only" },
    { "", "empty" },
    { -1, "negative seconds" },
    { 0 / 0, "NaN" },
    { math.huge, "infinity" },
    { true, "a boolean" },
  }
  for _, case in ipairs(bad) do
    it("refuse " .. case[2] .. ", sending nothing", function()
      local body, err, provider = body_of { start_time = case[1], end_time = "2030-01-01 00:00:00" }
      assert.is_nil(body)
      assert.equal("argument", err.kind)
      assert.matches("start_time", err.message)
      assert.equal(0, provider:count())
    end)
  end

  it("refuse a missing end_time", function()
    local body, err, provider = body_of { start_time = 0 }
    assert.is_nil(body)
    assert.equal("records_page: end_time is missing", err.message)
    assert.equal("end_time", err.field)
    assert.equal(0, provider:count())
  end)

  it("accept up to 9999-12-31 23:59:59 in UTC+8, number or string; one second more is refused", function()
    local last = 253402300799 - 8 * 3600 -- 9999-12-31 23:59:59 UTC+8
    assert.equal("9999-12-31 23:59:59", clicktocall.format_time(last))
    local body = body_of { start_time = last, end_time = "9999-12-31 23:59:59" }
    assert.equal("9999-12-31 23:59:59", body.starTime)
    assert.equal("9999-12-31 23:59:59", body.endTime)
    local none, err, provider = body_of { start_time = 0, end_time = last + 1 }
    assert.is_nil(none)
    assert.equal("end_time", err.field)
    assert.equal(0, provider:count())
  end)

  it("refuse start after end, and accept start equal to end", function()
    local body, err, provider = body_of { start_time = 100, end_time = 99 }
    assert.is_nil(body)
    assert.matches("after end_time", err.message)
    assert.equal(0, provider:count())
    body = body_of { start_time = 100, end_time = 100 }
    assert.is_table(body)
    assert.equal(body.starTime, body.endTime)
  end)
end)

describe("a time's refusal (timefmt.c gives a reason and the offending byte; the binding words it)", function()
  local core = require "clicktocall.core"
  it("names the byte that breaks the shape, and where", function()
    local BYTE = "time must look like yyyy-MM-dd HH:mm:ss (a control or non-ASCII byte at character "
    local cases = {
      { "2019-03-25T10:23:52", "time must look like yyyy-MM-dd HH:mm:ss ('T' at character 11)" },
      { "2019-3-25 10:23:52x", "time must look like yyyy-MM-dd HH:mm:ss ('-' at character 7)" },
      { "2019/03/25 10:23:52", "time must look like yyyy-MM-dd HH:mm:ss ('/' at character 5)" },
      { "2019-03-25 10:23:5\0", BYTE .. "19)" },
      { "2019-03-25 10:2３:52", BYTE .. "16)" },
      { "2019-03-25", "time is too short; it must look like yyyy-MM-dd HH:mm:ss" },
      { "2019-03-25 10:23:52 ", "time has characters after yyyy-MM-dd HH:mm:ss" },
      { "2019-02-29 00:00:00", "time: February 29 exists only in leap years" },
      { "2019-13-01 00:00:00", "time: month must be 01-12" },
      { "1969-12-31 23:59:59", "time: year must be 1970-9999" },
    }
    for _, c in ipairs(cases) do
      local v, err = core.parse_time(c[1])
      assert.is_nil(v, c[1])
      assert.same({ "argument", c[2] }, { err.kind, err.message }, c[1])
    end
    local client = require("spec.helpers.client").new()
    local _, err = client:records_page { start_time = "2019-03-25T10:23:52", end_time = "2030-01-01 00:00:00" }
    assert.equal("records_page: start_time: time must look like yyyy-MM-dd HH:mm:ss ('T' at character 11)",
                 err.message)
    assert.equal("start_time", err.field)
  end)
end)
