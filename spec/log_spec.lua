-- clicktocall.log.json: one JSON line per request, response and retry, with the time, the call (op) and the
-- timing, and never the secret: a canary secret is echoed by the "provider" in every form the library knows
-- (raw, base64 padded and not, URL-safe base64 padded and not), in an API message, an HTTP error, a
-- transport's error and a recording's URL, and no line holds any of them.
local clicktocall = require "clicktocall"
local log = require "clicktocall.log"
local cjson = require("cjson").new()

local SECRET = "CANARY-s3cret>>>???~" -- its base64 has "+", "/" and "=": every form differs
local B64 = "Q0FOQVJZLXMzY3JldD4+Pj8/P34="
local FORMS = { SECRET, B64, (B64:gsub("=+$", "")), (B64:gsub("[+/]", { ["+"] = "-", ["/"] = "_" })),
                (B64:gsub("[+/]", { ["+"] = "-", ["/"] = "_" }):gsub("=+$", "")) }
local USER_DATA = "4e2239c5-a6e6-4201-a072-8342e29c3ae3"

local function decode_lines(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    out[#out + 1] = cjson.decode(line)
  end
  return out
end

describe("clicktocall.log.json", function()
  it("the canary secret, in each of its forms, echoed everywhere an event could carry it, is in no line", function()
    for _, form in ipairs(FORMS) do
      local seen_balance = 0
      -- a "provider" that echoes the form back in every way it can
      local function transport(req)
        if req.url:find("/management/customer/isallow", 1, true) then
          seen_balance = seen_balance + 1
          if seen_balance == 1 then
            return { status = 503, headers = {}, body = "<html>busy, " .. form .. "</html>" }
          end
          return { status = 200, headers = {},
                   body = cjson.encode { meta = { success = false, message = "bad key " .. form }, data = "" } }
        elseif req.url:find("/management/add/setingphone", 1, true) then
          return nil, "connection reset by peer while sending " .. form
        elseif req.url:find("/rec/", 1, true) then
          return { status = 404, headers = {}, body = "no such recording " .. form }
        end
        return { status = 500, headers = {}, body = form }
      end
      local lines = {}
      local client = assert(clicktocall.new {
        base_url = "http://provider.test", app_secret = SECRET, user_data = USER_DATA, transport = transport,
        sleep = function() end, retries = 1,
        on_event = assert(log.json(function(line) lines[#lines + 1] = line end)) })
      assert.is_nil(client:balance())
      assert.is_nil(client:bind_seat { seat = "PP1", phone = "13500000002" })
      local dir = os.tmpname()
      assert.is_nil(client:download_recording("http://provider.test/rec/a.wav?sig=" .. form .. "&k=" .. form,
                                              dir .. ".wav"))
      os.remove(dir)
      client:close()
      local text = table.concat(lines, "\n")
      assert.is_true(#lines >= 8, text)
      for _, f in ipairs(FORMS) do
        assert.is_nil(text:find(f, 1, true), "a form of the secret (" .. f .. ") in:\n" .. text)
      end
      assert.truthy(text:find("***", 1, true), text) -- it was there, redacted
      local events = {}
      for _, e in ipairs(decode_lines(text)) do
        events[e.event] = (events[e.event] or 0) + 1
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", e.ts)
        assert.is_string(e.op)
        assert.is_nil(e.headers)
        assert.is_nil(e.body)
      end
      assert.is_true(events.request >= 3 and events.response >= 3 and events.retry >= 1, text)
    end
  end)

  it("a line: ts, event, op, method, url, attempt, status, elapsed, error, delay, then the rest and the "
     .. "caller's fields sorted by name (clicktocall.json's order)", function()
    local lines = {}
    local calls = 0
    local on_event = assert(log.json(function(line) lines[#lines + 1] = line end, {
      fields = { job = "archive", host = "a1", op = "never over the event's" },
      also = function() calls = calls + 1 end,
      now = function() return 1796436000.25 end }))
    on_event { type = "retry", op = "balance", method = "POST", url = "http://x/y", attempt = 1, status = 503,
               elapsed = 0.0123456789, error = "[http] HTTP 503: \"busy\"\n", delay = 0.4, kind = "http",
               fn = print }
    assert.equal(1, calls)
    assert.equal('{"ts":"2026-12-05T02:00:00.250Z","event":"retry","op":"balance","method":"POST",'
      .. '"url":"http://x/y","attempt":1,"status":503,"elapsed":0.012346,"error":"[http] HTTP 503: \\"busy\\"\\n",'
      .. '"delay":0.4,"host":"a1","job":"archive","kind":"http"}', lines[1])
  end)

  it("a file gets the line and a newline; a closed file or a failing function never raises", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    local on_event = assert(log.json(f))
    on_event { type = "request", op = "dial", method = "POST", url = "u", attempt = 1 }
    local got = assert(io.open(path)):read("*a") -- flushed at once
    assert.matches('^{"ts":"[^"]+","event":"request","op":"dial","method":"POST","url":"u","attempt":1}\n$', got)
    f:close()
    assert.has_no_error(function() on_event { type = "response", op = "dial" } end)
    os.remove(path)
    local raising = assert(log.json(function() error("disk full") end))
    assert.has_no_error(function() raising { type = "response", op = "dial" } end)
  end)

  it("a sink that is neither a file nor a function, or an unknown option: kind argument", function()
    for _, bad in ipairs { { 5 }, { "stderr" }, { print, { colour = true } }, { print, { also = 1 } } } do
      local fn, err = log.json(bad[1], bad[2])
      assert.is_nil(fn)
      assert.equal("argument", err.kind)
    end
  end)
end)
