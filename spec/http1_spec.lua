-- spec/http1_spec.lua: clicktocall.http1, the HTTP/1.1 wire format of the ngx transport, without nginx.
-- Runs under plain busted on every Lua: busted --lua=lua5.1|lua5.3|lua5.4|luajit spec/http1_spec.lua
local http1 = require "clicktocall.http1"

describe("http1.parse_url", function()
  it("splits http and https URLs, with default and explicit ports", function()
    local u = assert(http1.parse_url("https://API.Example.com/rest/voiceCall/api?x=1&y=2#frag"))
    assert.same({ scheme = "https", host = "api.example.com", connect_host = "API.Example.com", port = 443,
                  path = "/rest/voiceCall/api?x=1&y=2", host_header = "API.Example.com" }, u)
    u = assert(http1.parse_url("HTTP://127.0.0.1:8080"))
    assert.equal("http", u.scheme)
    assert.equal(8080, u.port)
    assert.equal("/", u.path)
    assert.equal("127.0.0.1:8080", u.host_header)
    u = assert(http1.parse_url("http://h:80?q=1"))
    assert.equal("/?q=1", u.path)
    assert.equal("h", u.host_header) -- the default port is not repeated in Host
  end)

  it("keeps an IPv6 literal in brackets for Host and without them for connecting", function()
    local u = assert(http1.parse_url("http://[::1]:8081/x"))
    assert.equal("[::1]", u.host)
    assert.equal("::1", u.connect_host)
    assert.equal("[::1]:8081", u.host_header)
    assert.equal(8081, u.port)
  end)

  it("refuses what is not an http(s) URL, with a sentence", function()
    local cases = {
      { "no-scheme", "no scheme://host" },
      { "ftp://h/x", "only http and https" },
      { "http://user:pw@h/x", "user information" },
      { "http:///x", "has no host" },
      { "http://h:0/x", "bad port" },
      { "http://h:65536/x", "bad port" },
      { "http://h:8a/x", "bad port" },
      { "http://h/a b", "spaces or control" },
      { "http://h/a\r\nX: y", "spaces or control" },
    }
    for _, c in ipairs(cases) do
      local u, err = http1.parse_url(c[1])
      assert.is_nil(u, c[1])
      assert.is_truthy(err:find(c[2], 1, true), c[1] .. ": " .. tostring(err))
    end
  end)
end)

describe("http1.parse_url's options: the one URL reader (ngx, doctor, Redis)", function()
  it("takes other schemes with their default ports, or none, and user information when asked", function()
    local redis = { ports = { redis = false } }
    assert.same({ scheme = "redis", host = "r.local", connect_host = "r.local", port = 6379, path = "/2",
                  host_header = "r.local:6379" }, http1.parse_url("redis://r.local:6379/2", redis))
    local _, err = http1.parse_url("redis://r.local/2", redis)
    assert.matches("bad port", err, 1, true)
    _, err = http1.parse_url("https://h", redis)
    assert.matches("only redis URLs", err, 1, true)
    local proxy = { ports = { http = 1080, socks5 = 1080 }, userinfo = true }
    assert.equal(1080, http1.parse_url("socks5://u:p@px", proxy).port)
    assert.equal("px", http1.parse_url("socks5://u:p@px", proxy).host)
    _, err = http1.parse_url("ftp://px", proxy)
    assert.matches("only http and socks5 URLs", err, 1, true)
  end)

  it("refuses a host that is no host name or address, and what is not a string", function()
    for _, url in ipairs { "http://-h/", "http://.h/", "http://h x/", "http://[zz]/" } do
      local u, err = http1.parse_url(url)
      assert.is_nil(u, url)
      assert.is_string(err)
    end
    assert.is_nil(http1.parse_url(nil))
    assert.truthy(http1.parse_url("http://my_host-1.example/"))
  end)
end)

describe("http1.header_block and http1.request", function()
  it("serializes the caller's headers in byte order and adds Host, Connection and Content-Length", function()
    local holder = {}
    local h = assert(http1.header_block(holder, {
      ["User-Agent"] = "clicktocall/0.1.0", Authorization = "VEVTVA==",
      ["Content-Type"] = "application/json;charset=UTF-8",
      ["Content-Length"] = "999", ["Transfer-Encoding"] = "chunked", -- framing is the transport's
    }))
    local body = '{"a":1}'
    local bytes, wants_close = http1.request("POST", "/rest/voiceCall/api", "Host: h:81\r\n", h, body, true)
    assert.equal("POST /rest/voiceCall/api HTTP/1.1\r\n" ..
                 "Host: h:81\r\n" ..
                 "Authorization: VEVTVA==\r\n" ..
                 "Content-Type: application/json;charset=UTF-8\r\n" ..
                 "User-Agent: clicktocall/0.1.0\r\n" ..
                 "Connection: keep-alive\r\n" ..
                 "Content-Length: 7\r\n\r\n" .. body, bytes)
    assert.is_false(wants_close)
  end)

  it("sends Content-Length: 0 for a POST without a body and none for a GET", function()
    local h = assert(http1.header_block({}, {}))
    assert.equal("POST /x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                 (http1.request("POST", "/x", "Host: h\r\n", h, nil, true)))
    assert.equal("GET /x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
                 (http1.request("GET", "/x", "Host: h\r\n", h, nil, true)))
  end)

  it("says Connection: close without keep-alive, and honours the caller's Host and Connection", function()
    local h = assert(http1.header_block({}, {}))
    local bytes, wants_close = http1.request("GET", "/", "Host: h\r\n", h, nil, false)
    assert.equal("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", bytes)
    assert.is_true(wants_close)
    h = assert(http1.header_block({}, { host = "api.example.com", Connection = "Keep-Alive, Close" }))
    bytes, wants_close = http1.request("GET", "/", "Host: h\r\n", h, nil, true)
    assert.equal("GET / HTTP/1.1\r\nConnection: Keep-Alive, Close\r\nhost: api.example.com\r\n\r\n", bytes)
    assert.is_true(wants_close)
    h = assert(http1.header_block({}, { Connection = "keep-alive" }))
    bytes, wants_close = http1.request("GET", "/", "Host: h\r\n", h, nil, false)
    assert.equal("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", bytes)
    assert.is_false(wants_close)
  end)

  it("hands a large body over separately instead of copying it", function()
    local h = assert(http1.header_block({}, {}))
    local body = string.rep("x", 65537)
    local parts = http1.request("PUT", "/big", "Host: h\r\n", h, body, true)
    assert.is_table(parts)
    assert.equal("PUT /big HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nContent-Length: 65537\r\n\r\n",
                 parts[1])
    assert.is_true(parts[2] == body)
  end)

  it("refuses header injection and bad names, and sends numbers as text", function()
    for _, headers in ipairs{ { ["X-Evil"] = "a\r\nX-Injected: 1" }, { ["X-Nul"] = "a\0b" },
                              { ["Bad Name"] = "v" }, { [""] = "v" }, { ["X"] = true } } do
      local h, err = http1.header_block({}, headers)
      assert.is_nil(h)
      assert.is_string(err)
    end
    local h = assert(http1.header_block({}, { ["X-Count"] = 5 }))
    assert.equal("X-Count: 5\r\n", h.block)
  end)

  it("reuses the cached block for equal headers and makes a new one when a value changes", function()
    local holder = {}
    local a = assert(http1.header_block(holder, { A = "1", B = "2" }))
    assert.equal(a, http1.header_block(holder, { B = "2", A = "1" }))
    local b = assert(http1.header_block(holder, { A = "1", B = "3" }))
    assert.are_not.equal(a, b)
    assert.equal("A: 1\r\nB: 3\r\n", b.block)
    local c = assert(http1.header_block(holder, { A = "1" })) -- fewer headers
    assert.equal("A: 1\r\n", c.block)
    assert.equal(c, holder.hdr_cache)
    -- more headers than the cache keeps: served, not cached
    local many = {}
    for i = 1, 33 do many["X-" .. i] = "v" end
    assert.is_table(http1.header_block(holder, many))
    assert.equal(c, holder.hdr_cache)
  end)
end)

describe("http1 response lines", function()
  -- bounds of the n-th line of a CRLF text, as the driver hands them over
  local function line(text, n)
    local pos = 1
    for _ = 1, n - 1 do
      pos = text:find("\n", pos, true) + 1
    end
    local nl = text:find("\n", pos, true) or #text + 1
    local last = nl - 1
    if last >= pos and text:byte(last) == 13 then last = last - 1 end
    return text, pos, last
  end

  it("reads a status line at any position", function()
    assert.same({ 200, true }, { http1.status_line(line("HTTP/1.1 200 OK", 1)) })
    assert.same({ 404, false }, { http1.status_line(line("xx\r\nHTTP/1.0 404 Not Found\r\n", 2)) })
    assert.same({ 204, true }, { http1.status_line(line("HTTP/1.1 204 ", 1)) })
    for _, bad in ipairs{ "HTTP/1.1 20", "HTTP/1.1 2x0 OK", "HTTPS/1.1 200 OK", "SPDY/9 what", "",
                          "HTTP/1.1  200 OK", "http/1.1 200 OK" } do
      assert.is_nil(http1.status_line(line(bad, 1)), bad)
    end
  end)

  it("reads header lines: lower-case names, trimmed values, repeats joined, folds continued", function()
    local text = "Content-Type:  text/plain \r\nX-Multi: a\r\nx-multi: b\r\nX-Fold: one\r\n\t two  \r\n" ..
                 "Empty:\r\n"
    local headers, prev = {}, nil
    for n = 1, 6 do
      prev = http1.header_line(text, select(2, line(text, n)), select(3, line(text, n)), headers, prev)
      assert.is_string(prev, "line " .. n)
    end
    assert.same({ ["content-type"] = "text/plain", ["x-multi"] = "a, b", ["x-fold"] = "one two", empty = "" },
                headers)
  end)

  it("calls a header line malformed when it has no name, a spaced name or no colon within it", function()
    for _, bad in ipairs{ ": v", "Bad Name: v", "NoColon", " folded-first: v", "\tx" } do
      assert.is_nil(http1.header_line(bad, 1, #bad, {}, nil), bad)
    end
    -- a colon past the line's end does not count
    local text = "NoColon\r\nNext: v\r\n"
    assert.is_nil(http1.header_line(text, 1, 7, {}, nil))
  end)

  it("reads chunk sizes, with extensions, within the line's bounds", function()
    assert.equal(26, http1.chunk_size("1a", 1, 2))
    assert.equal(26, http1.chunk_size("1A;name=value", 1, 13))
    assert.equal(5, http1.chunk_size(" 5 ", 1, 3))
    assert.equal(5, http1.chunk_size("5 ; ext", 1, 7))
    assert.equal(0, http1.chunk_size("0", 1, 1))
    assert.equal(0xffffffffffff, http1.chunk_size("ffffffffffff", 1, 12))
    assert.equal(16, http1.chunk_size("xx\r\n10\r\n", 5, 6))
    for _, bad in ipairs{ "", "zz", "1azz", "1a b", "-1", "1000000000000", ";ext" } do
      assert.is_nil(http1.chunk_size(bad, 1, #bad), bad)
    end
    -- the digits must end within the line: "1" then the next line's "a"
    assert.is_nil(http1.chunk_size("\r\na\r\n", 1, 0))
    assert.equal(1, http1.chunk_size("1a", 1, 1))
  end)

  it("finds a token in a comma-separated list as a whole item only", function()
    assert.is_true(http1.has_token("close", "close"))
    assert.is_true(http1.has_token("Keep-Alive, Close", "close"))
    assert.is_true(http1.has_token("gzip,chunked", "chunked"))
    assert.is_false(http1.has_token("closed", "close"))
    assert.is_false(http1.has_token("unchunked", "chunked"))
    assert.is_false(http1.has_token(nil, "close"))
  end)

  it("trims spaces at both ends of a range", function()
    assert.same({ 3, 4 }, { http1.trim("  ab  ", 1, 6) })
    local i, j = http1.trim("    ", 1, 4)
    assert.is_true(j < i)
  end)
end)

describe("http1.web_url (base_url, a recording's URL, its redirects)", function()
  it("takes http(s) URLs libcurl takes, user information too, and refuses the rest with a reason", function()
    for _, good in ipairs({ "https://api.example.com", "HTTPS://API.example.com/base/", "http://h:8080/x?y=1",
                            "https://u:p@rec.example.com/1.wav", "http://[::1]:8081/x", "https://h#frag" }) do
      assert.truthy(http1.web_url(good), good)
    end
    for _, bad in ipairs({ { "ftp://h/x", "only http and https URLs" }, { "https://", "no host" },
                           { "https://h:0/x", "bad port" }, { "https://h:99999", "bad port" },
                           { "https://h:x/y", "bad port" }, { "https://ex!ample.com", "bad port" },
                           { "https://h/a b", "spaces or control" }, { "https://u p@h/", "spaces or control" },
                           { "https://h/\0", "spaces or control" }, { "h/x", "no scheme" },
                           { 42, "must be a string" } }) do
      local u, why = http1.web_url(bad[1])
      assert.is_nil(u, tostring(bad[1]))
      assert.matches(bad[2], why, 1, true)
    end
  end)
end)
