-- archive_recordings over the libcurl transport when the recording host's TLS certificate is not
-- trusted: the failure says so and names ca_file and insecure; with ca_file the recording comes.
-- A throw-away nginx plays both the API (plain http, one canned page) and the recording host (https,
-- a self-signed certificate for 127.0.0.1).
local nginx = require "spec.helpers.nginx"
local j = require "spec.helpers.jobs"
local clicktocall = require "clicktocall"

local APP = [[
server {
  listen 127.0.0.1:${port1} ssl;
  ssl_certificate ${certs}/cert.pem;
  ssl_certificate_key ${certs}/key.pem;
  location = /rec/call-1.mp3 { default_type audio/mpeg; return 200 "ID3-not-really-an-mp3"; }
}
server {
  listen 127.0.0.1:${port2};
  location = /call/record/voice {
    default_type application/json;
    return 200 '${page}';
  }
}
]]

describe("archive_recordings and an untrusted recording host #integration", function()
  local app, certs, dir

  setup(function()
    certs = j.mkdtemp()
    j.shell(("openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s/key.pem' -out '%s/cert.pem' -days 2 "
      .. "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null"):format(certs, certs))
    -- one page of one record; its recording on the https server (${port1} is filled in by the helper)
    local page = '{"meta":{"success":true,"message":"ok"},"data":[{"id":1,"sessionId":"call-1","recordFlag":"1",'
      .. '"callEndTime":"' .. clicktocall.format_time(os.time() - 3600) .. '",'
      .. '"recordFileDownloadUrl":"https://127.0.0.1:${port1}/rec/call-1.mp3"}]}'
    local err
    app, err = nginx.start { http = APP:gsub("${page}", function() return page end), ports = 2,
      vars = { certs = certs } }
    assert(app, err)
  end)

  teardown(function()
    if app then app:stop() end
    j.rmtree(certs)
  end)

  before_each(function() dir = j.mkdtemp() end)
  after_each(function() j.rmtree(dir) end)

  local function archive(opts)
    local o = { base_url = app:url("", 2), app_secret = "TEST", user_data = j.USER_DATA, retries = 0 }
    for k, v in pairs(opts or {}) do o[k] = v end
    local client = assert(clicktocall.new(o))
    local now = os.time()
    local summary = assert(client:archive_recordings { start_time = now - 86400, end_time = now, dir = dir,
                                                       layout = "flat" })
    client:close()
    return summary
  end

  it("fails that recording saying the certificate could not be verified, naming ca_file and insecure", function()
    local summary = archive()
    assert.equal(1, #summary.failed)
    local err = summary.failed[1].err
    assert.equal("network", err.kind)
    assert.matches("certificate", err.message)
    assert.matches("ca_file", err.message, 1, true)
    assert.matches("insecure", err.message, 1, true)
    assert.same({ ".clicktocall.lock" }, j.tree(dir))
  end)

  it("downloads it once the certificate is given as ca_file", function()
    local summary = archive { ca_file = certs .. "/cert.pem" }
    assert.same({}, summary.failed)
    assert.equal(1, summary.downloaded)
    assert.equal("ID3-not-really-an-mp3", j.read(dir .. "/call-1.mp3"))
  end)
end)
