-- Phone numbers: the provider wants "+<country code><number>", landline area codes without their 0.
local clicktocall = require "clicktocall"

local GOOD = {
  -- mobiles
  { "13500000002", "+8613500000002" },
  { "+8613500000002", "+8613500000002" },
  { "8613500000002", "+8613500000002" },
  { "008613500000002", "+8613500000002" },
  { "0086 135 0000 0002", "+8613500000002" },
  { "+86 135-0000-0002", "+8613500000002" },
  { "+86 (135) 0000.0002", "+8613500000002" },
  { "135 0000 0002", "+8613500000002" },
  { "  13918337711  ", "+8613918337711" },
  { "19912345678", "+8619912345678" },
  { "14712345678", "+8614712345678" },
  { "18151600001", "+8618151600001" },
  -- landlines with a three-digit area code
  { "0755-28000123", "+8675528000123" },
  { "0755 2800 0123", "+8675528000123" },
  { "(0755) 28000123", "+8675528000123" },
  { "+8675528000123", "+8675528000123" },
  { "+86 755 28000123", "+8675528000123" },
  { "0086-755-28000123", "+8675528000123" },
  { "8675528000123", "+8675528000123" },
  { "+86 0755 28000123", "+8675528000123" },
  { "0571-8765432", "+865718765432" },
  { "0311-66001234", "+8631166001234" },
  -- two-digit area codes: Beijing 010, 02x
  { "010-62345678", "+861062345678" },
  { "(010)62345678", "+861062345678" },
  { "021 5555 6666", "+862155556666" },
  { "020-87654321", "+862087654321" },
  { "029-88886666", "+862988886666" },
  { "+86 10 6234 5678", "+861062345678" },
  -- other countries
  { "+1 (415) 555-2671", "+14155552671" },
  { "+44 20 7946 0958", "+442079460958" },
  { "00852 2123 4567", "+85221234567" },
}

local BAD = {
  { "", "empty" },
  { "   ", "blank" },
  { "12345", "too short" },
  { "1350000000", "10 digits, not a mobile" },
  { "135000000021", "12 digits" },
  { "1350000000a", "a letter" },
  { "abc", "letters only" },
  { "135-0000-000#", "a hash" },
  { "135\n00000002", "a control character" },
  { "135\0" .. "00000002", "a NUL byte" },
  { "12500000002", "second digit 2 is no mobile" },
  { "10000000000", "second digit 0" },
  { "02345678", "no valid area code" },
  { "0755-1234567", "subscriber starting with 1" },
  { "0755-0234567", "subscriber starting with 0" },
  { "0755-123456", "subscriber too short" },
  { "0755-123456789", "subscriber too long" },
  { "010-1234567", "Beijing needs 8 digits and no leading 1" },
  { "+86", "country code only" },
  { "+86 135 0000 000", "+86 with a short mobile" },
  { "++8613500000002", "two plus signs" },
  { "135+00000002", "a plus in the middle" },
  { "4008001234", "a 400 service number" },
  { "+1234567890123456", "longer than E.164 allows" },
  { "１３５００００００２", "full-width digits" },
}

describe("normalize_phone", function()
  for _, case in ipairs(GOOD) do
    it(("%q -> %s"):format(case[1], case[2]), function()
      local got, err = clicktocall.normalize_phone(case[1])
      assert.is_nil(err)
      assert.equal(case[2], got)
    end)
  end

  for _, case in ipairs(BAD) do
    it(("refuses %q (%s)"):format(case[1], case[2]), function()
      local got, err = clicktocall.normalize_phone(case[1])
      assert.is_nil(got)
      assert.equal("argument", err.kind)
      assert.is_string(err.message)
      assert.is_true(#err.message > 10)
    end)
  end

  it("refuses a number given as a Lua number (it would lose its 0 or +)", function()
    local got, err = clicktocall.normalize_phone(13500000002)
    assert.is_nil(got)
    assert.equal("argument", err.kind)
  end)

  it("uses another default country code when told", function()
    assert.equal("+14155552671", clicktocall.normalize_phone("415 555 2671", "1"))
    assert.equal("+442079460958", clicktocall.normalize_phone("020 7946 0958", "44"))
  end)

  it("is applied to dial arguments, and a bad one sends nothing", function()
    local mc = require "spec.helpers.client"
    local client, provider = mc.new(nil, { seats = { PP1 = "+8675528000123" } })
    local sid, err = client:dial { caller = "0755-28000123", callee = "1350000000a", seat = "PP1" }
    assert.is_nil(sid)
    assert.equal("argument", err.kind)
    assert.matches("callee", err.message)
    assert.equal(0, provider:count())
    -- the same dial with a good callee goes out, both numbers normalized
    assert.is_string(client:dial { caller = "0755-28000123", callee = "(010)62345678", seat = "PP1" })
    local body = provider:last_request("dial").body
    assert.equal("+8675528000123", body.callerNbr)
    assert.equal("+861062345678", body.calleeNbr)
    assert.equal(1, provider.dials)
  end)
end)
