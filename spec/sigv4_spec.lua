-- core.sigv4_sign and core.s3_url: the one AWS Signature V4 signer every upload uses (issue #21).
-- The known answers are the S3 documentation's worked examples (csrc/test/sigv4_expected.py
-- recomputes them with Python's hmac and hashlib); the C tests hold the rest (make crypto-test).
require "spec.helpers"
local core = require "clicktocall.core"

local EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
local SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
local T = 1369353600 -- 2013-05-24T00:00:00Z

local function base(over)
  local t = {
    method = "GET", host = "examplebucket.s3.amazonaws.com", path = "/test.txt",
    headers = { range = "bytes=0-9" }, payload_hash = EMPTY, region = "us-east-1",
    access_key = "AKIAIOSFODNN7EXAMPLE", secret_key = SECRET, time = T,
  }
  for k, v in pairs(over or {}) do t[k] = v end
  return t
end

local function signature(h) return h.authorization:match("Signature=(%x+)$") end

-- every string in v, recursively (keys too)
local function strings(v, out)
  out = out or {}
  if type(v) == "string" then out[#out + 1] = v
  elseif type(v) == "table" then
    for k, x in pairs(v) do strings(k, out); strings(x, out) end
  end
  return out
end

describe("core.sigv4_sign", function()
  it("signs the S3 documentation's GET Object example", function()
    local h, url = core.sigv4_sign(base())
    assert.equal("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
      .. "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
      .. "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41", h.authorization)
    assert.equal("20130524T000000Z", h["x-amz-date"])
    assert.equal(EMPTY, h["x-amz-content-sha256"])
    assert.equal("examplebucket.s3.amazonaws.com", h.host)
    assert.equal("bytes=0-9", h.range)
    assert.is_nil(h["x-amz-security-token"])
    assert.equal("https://examplebucket.s3.amazonaws.com/test.txt", url)
  end)

  it("signs the PUT Object example, its key's '$' encoded once, from a url as well", function()
    local opts = base { method = "PUT", path = "/test$file.text",
      headers = { Date = "Fri, 24 May 2013 00:00:00 GMT", ["x-amz-storage-class"] = "REDUCED_REDUNDANCY" },
      payload_hash = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072" }
    local h, url = core.sigv4_sign(opts)
    assert.equal("98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd", signature(h))
    assert.equal("https://examplebucket.s3.amazonaws.com/test%24file.text", url)
    -- the URL as sent: decoded once, then encoded once, so the same signature and URL
    opts.host, opts.path, opts.url = nil, nil, url
    local h2, url2 = core.sigv4_sign(opts)
    assert.equal(signature(h), signature(h2))
    assert.equal(url, url2)
  end)

  it("signs the list-objects example with its query in any order", function()
    for _, q in ipairs { "max-keys=2&prefix=J", "prefix=J&max-keys=2" } do
      local h, url = core.sigv4_sign(base { path = "/", query = q, headers = {} })
      assert.equal("34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7", signature(h))
      assert.equal("https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J", url)
    end
    local h = core.sigv4_sign(base { url = "https://examplebucket.s3.amazonaws.com/?lifecycle", host = false,
                                      headers = {} })
    assert.equal("fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543", signature(h))
  end)

  it("signs the session token when there is one", function()
    local plain = core.sigv4_sign(base())
    local h = core.sigv4_sign(base { session_token = "FQoGZXIvYXdzEXAMPLE" })
    assert.equal("FQoGZXIvYXdzEXAMPLE", h["x-amz-security-token"])
    assert.matches("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date;x-amz-security-token,",
                   h.authorization, 1, true)
    assert.not_equal(signature(plain), signature(h))
  end)

  it("refuses bad arguments with nil and an argument error naming the field", function()
    local cases = {
      { "region", { region = false } }, { "region", { region = "" } }, { "region", { region = "us/east" } },
      { "access_key", { access_key = false } }, { "secret_key", { secret_key = false } },
      { "secret_key", { secret_key = 42 } }, { "payload_hash", { payload_hash = false } },
      { "payload_hash", { payload_hash = "abc" } }, { "payload_hash", { payload_hash = EMPTY:upper() } },
      { "time", { time = -1 } }, { "time", { time = 1.5 } }, { "time", { time = "now" } },
      { "time", { time = 253402300800 } }, { "time", { time = 0 / 0 } }, { "time", { time = math.huge } },
      { "host", { host = false } }, { "url", { url = "ftp://x/y" } }, { "url", { url = "https:///k" } },
      { "url", { url = "https://h/k#frag" } }, { "headers", { headers = { host = "evil" } } },
      { "headers", { headers = { Authorization = "x" } } }, { "headers", { headers = { ["X-Amz-Date"] = "x" } } },
      { "headers", { headers = { a = "1\r\nx-evil: 1" } } }, { "headers", { headers = { ["a b"] = "1" } } },
      { "headers", { headers = "range" } }, { "headers", { headers = { [1] = "x" } } },
      { "method", { method = "GE T" } }, { "service", { service = "s3/x" } },
    }
    for _, c in ipairs(cases) do
      local opts = base()
      for k, v in pairs(c[2]) do
        if v == false then opts[k] = nil else opts[k] = v end
      end
      local h, err = core.sigv4_sign(opts)
      assert.is_nil(h, c[1])
      assert.equal("argument", err.kind)
      assert.equal(c[1], err.field)
      assert.is_false(err.sent)
      assert.matches("^" .. c[1] .. ": ", err.message)
    end
    local h, err = core.sigv4_sign("region=us-east-1")
    assert.is_nil(h)
    assert.equal("argument", err.kind)
  end)

  it("never gives the secret key back, in a result or an error", function()
    local canary = "CANARY-SECRET/+=" .. string.rep("k", 40)
    local results = {}
    results[#results + 1] = { core.sigv4_sign(base { secret_key = canary }) }
    results[#results + 1] = { core.sigv4_sign(base { secret_key = canary, session_token = "tok" }) }
    for _, bad in ipairs { { region = "" }, { time = -1 }, { headers = { a = "\0" } }, { payload_hash = "x" },
                           { access_key = "AKIA/x" }, { url = "gopher://h" } } do
      local opts = base(bad)
      opts.secret_key = canary
      results[#results + 1] = { core.sigv4_sign(opts) }
    end
    for _, r in ipairs(results) do
      for _, s in ipairs(strings(r)) do
        assert.is_nil(s:find("CANARY", 1, true), s)
      end
    end
  end)
end)

describe("core.s3_url", function()
  -- "ünïcödé 中" as decimal UTF-8 escapes: Lua 5.1 has no \u{...}
  local key = "calls/2026/a b/\195\188n\195\175c\195\182d\195\169 \228\184\173?#+%&=$.wav"
  local encoded = "calls/2026/a%20b/%C3%BCn%C3%AFc%C3%B6d%C3%A9%20%E4%B8%AD%3F%23%2B%25%26%3D%24.wav"

  it("builds path-style and virtual-hosted URLs, each key segment encoded once", function()
    assert.equal("http://127.0.0.1:9000/recordings/" .. encoded,
      core.s3_url { endpoint = "http://127.0.0.1:9000", bucket = "recordings", key = key, path_style = true })
    assert.equal("https://recordings.oss-cn-hangzhou.aliyuncs.com/" .. encoded,
      core.s3_url { endpoint = "https://oss-cn-hangzhou.aliyuncs.com/", bucket = "recordings", key = key })
    assert.equal("https://b.s3.amazonaws.com/", core.s3_url { endpoint = "https://s3.amazonaws.com", bucket = "b" })
  end)

  it("gives a URL the signer signs as the key's bytes, never encoding twice", function()
    local url = core.s3_url { endpoint = "http://127.0.0.1:9000", bucket = "recordings", key = key,
                              path_style = true }
    local by_url, sent = core.sigv4_sign(base { url = url, host = false, path = false, headers = {} })
    local by_key = core.sigv4_sign(base { host = "127.0.0.1:9000", path = "/recordings/" .. key, headers = {} })
    assert.equal(url, sent)
    assert.equal(signature(by_key), signature(by_url))
    assert.is_nil(sent:find("%25C3", 1, true))
  end)

  it("refuses a bad endpoint or bucket with an argument error", function()
    for _, c in ipairs {
      { "endpoint", { bucket = "b" } }, { "endpoint", { endpoint = "s3.amazonaws.com", bucket = "b" } },
      { "endpoint", { endpoint = "https://h/path", bucket = "b" } }, { "bucket", { endpoint = "https://h" } },
      { "bucket", { endpoint = "https://h", bucket = "a/b" } },
      { "key", { endpoint = "https://h", bucket = "b", key = 1 } },
    } do
      local url, err = core.s3_url(c[2])
      assert.is_nil(url)
      assert.equal("argument", err.kind)
      assert.equal(c[1], err.field)
    end
  end)
end)
