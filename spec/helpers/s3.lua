--[==[ spec/helpers/s3.lua: the signature-checking S3 endpoint (spec/helpers/s3_endpoint.py, on Debian's
python3-botocore) on a free loopback port, for specs, the demo and the benchmarks.

    local s3 = require "spec.helpers.s3"
    local server = assert(s3.start { buckets = { "b" }, access_key = "AKID", secret_key = "...",
                                     region = "us-east-1", latency = 0, session_token = nil })
    server.port, server.endpoint        -- "http://127.0.0.1:<port>" (path-style addressing)
    server.vhost_endpoint               -- "http://localhost:<port>": with path_style = false the bucket goes in
                                        --   the Host (<bucket>.localhost:<port>, loopback for libcurl)
    server.dir                          -- the objects on disk, one file a key: dir/<bucket>/<key, %XX-encoded>
    server.access_key, server.secret_key, server.region, server.session_token
    server:fault("cut", { after = 1000, times = 1, method = "PUT", match = "part of a key" })  -- nil clears
      -- names: forbidden, no_bucket, error500, retry_after {seconds}, slow {ms}, cut {after}, accept_short
    server:options { latency_ms = 30 }  -- every answer that much later
    server:requests()                   -- the log: { method, path, query, host, bucket, key, status, bytes, code,
                                        --   fault, started, finished }, oldest first
    server:clear_requests()
    server:object(bucket, key)          -- the stored bytes | nil
    server:aws_env()                    -- "AWS_...=... " for Debian's awscli against this endpoint
    server:aws("s3 ls s3://b/")         -- ok, output, code of /usr/bin/aws --endpoint-url ... (args as shell words)
    server:stop()                       -- idempotent; removes server.dir

The credentials reach the endpoint in a 0600 file, never on a command line. The process binds port 0 (the
kernel picks a free port) and writes it to a file; start() waits for that file and for /_s3/ready, never a
fixed sleep. awscli gets a config whose multipart threshold is above any size the specs use (the endpoint does
not implement multipart uploads).
]==]

local nginx = require "spec.helpers.nginx"
local util = require "spec.helpers.util"
local core = require "clicktocall.core"
local cjson = require("cjson").new()

local sh_quote, read_file = util.quote, util.read_file

local M = {}

M.PYTHON = os.getenv("CTC_S3_PYTHON") or "/usr/bin/python3" -- Debian's, with python3-botocore
M.AWS = os.getenv("CTC_AWS") or "/usr/bin/aws"                -- Debian's awscli
M.ACCESS_KEY = "AKIDCTCTESTENDPOINT"
M.SECRET_KEY = "ctc/S3+secret-TEST-wJalrXUtnFEMI"
M.REGION = "us-east-1"

local Server = {}
Server.__index = Server

local function write(path, data, mode)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  if mode then nginx.run("chmod " .. mode .. " " .. sh_quote(path)) end
end

-- every byte but [A-Za-z0-9_.~-] as %XX, as the endpoint names its files
local function file_name(key)
  return (key:gsub("[^%w_%.~%-]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local function alive(pid)
  return (nginx.run("kill -0 " .. pid)) == true
end

function Server:call(method, path, body)
  local res, err = self.http:perform { method = method, url = self.endpoint .. path,
    headers = body and { ["Content-Type"] = "application/json" } or nil, body = body and cjson.encode(body) or nil,
    max_body = 64 * 1024 * 1024, timeout = 10 }
  assert(res, err and err.message)
  assert(res.status == 200, path .. " answered " .. res.status .. ": " .. res.body)
  return cjson.decode(res.body)
end

function Server:fault(name, opts)
  local body = { name = name }
  for k, v in pairs(opts or {}) do body[k] = v end
  return self:call("POST", "/_s3/fault", name and body or {})
end

function Server:options(t) return self:call("POST", "/_s3/options", t) end
function Server:requests() return self:call("GET", "/_s3/requests") end
function Server:clear_requests() return self:call("POST", "/_s3/requests/clear", {}) end

function Server:object(bucket, key)
  return read_file(self.dir .. "/" .. bucket .. "/" .. file_name(key))
end

function Server:log()
  return read_file(self.work .. "/endpoint.log") or ""
end

function Server:aws_env()
  local env = {
    "AWS_ACCESS_KEY_ID=" .. sh_quote(self.access_key), "AWS_SECRET_ACCESS_KEY=" .. sh_quote(self.secret_key),
    "AWS_REGION=" .. sh_quote(self.region), "AWS_DEFAULT_REGION=" .. sh_quote(self.region),
    "AWS_CONFIG_FILE=" .. sh_quote(self.work .. "/aws-config"), "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
    "AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER=''",
  }
  if self.session_token then env[#env + 1] = "AWS_SESSION_TOKEN=" .. sh_quote(self.session_token) end
  return table.concat(env, " ") .. " "
end

function Server:aws(args)
  return nginx.run("env -u AWS_PROFILE " .. self:aws_env() .. M.AWS .. " --endpoint-url " .. self.endpoint .. " "
                   .. args)
end

function Server:stop()
  if not self.pid then return true end
  local pid = self.pid
  self.pid = nil
  if self.http then
    self.http:close()
    self.http = nil
  end
  nginx.run("kill " .. pid)
  if not nginx.wait_for(function() return not alive(pid) end, 5, "the S3 endpoint to exit") then
    nginx.run("kill -KILL " .. pid)
    nginx.wait_for(function() return not alive(pid) end, 5, "the S3 endpoint to die")
  end
  nginx.run("rm -rf " .. sh_quote(self.work))
  return true
end

--- start([opts]) -> server | nil, err (err holds the endpoint's log)
function M.start(opts)
  opts = opts or {}
  local _, out = nginx.run("mktemp -d /tmp/ctc-s3.XXXXXX")
  local work = out:gsub("%s+$", "")
  local srv = setmetatable({
    work = work, dir = work .. "/store", buckets = opts.buckets or { "ctc" },
    access_key = opts.access_key or M.ACCESS_KEY, secret_key = opts.secret_key or M.SECRET_KEY,
    region = opts.region or M.REGION, session_token = opts.session_token,
  }, Server)
  write(work .. "/credentials", ("S3_ACCESS_KEY=%s\nS3_SECRET_KEY=%s\nS3_SESSION_TOKEN=%s\n"):format(
    sh_quote(srv.access_key), sh_quote(srv.secret_key), sh_quote(srv.session_token or "")), "600")
  write(work .. "/aws-config", "[default]\ns3 =\n  multipart_threshold = 4GB\n  multipart_chunksize = 4GB\n")
  local args = { M.PYTHON, sh_quote(nginx.repo_root() .. "/spec/helpers/s3_endpoint.py"),
    "--dir", sh_quote(srv.dir), "--region", sh_quote(srv.region), "--port-file", sh_quote(work .. "/port"),
    "--latency-ms", tostring(opts.latency or 0) }
  for _, b in ipairs(srv.buckets) do
    args[#args + 1] = "--bucket " .. sh_quote(b)
  end
  if srv.session_token then args[#args + 1] = "--session-token-env S3_SESSION_TOKEN" end
  -- the keys from the 0600 file into the endpoint's environment only (set -a exports what the file sets)
  local ok, pid_out = nginx.run("set -a; . " .. sh_quote(work .. "/credentials") .. "; set +a; "
    .. table.concat(args, " ") .. " >" .. sh_quote(work .. "/endpoint.log") .. " 2>&1 & echo $!")
  srv.pid = ok and tonumber(pid_out:match("(%d+)%s*$"))
  if not srv.pid then
    nginx.run("rm -rf " .. sh_quote(work))
    return nil, "the S3 endpoint did not start: " .. pid_out
  end
  local port = nginx.wait_for(function()
    local p = tonumber(read_file(work .. "/port") or "")
    if p then return p end
    if not alive(srv.pid) then return "exited" end
    return nil
  end, 20, "the S3 endpoint's port file")
  if type(port) ~= "number" then
    local log = srv:log()
    srv:stop()
    return nil, "the S3 endpoint did not start: " .. log
  end
  srv.port, srv.endpoint = port, "http://127.0.0.1:" .. port
  srv.vhost_endpoint = "http://localhost:" .. port
  srv.http = core.curl_transport()
  local ready = nginx.wait_for(function()
    local res = srv.http:perform { method = "GET", url = srv.endpoint .. "/_s3/ready", timeout = 2 }
    return res and res.status == 200
  end, 20, "the S3 endpoint to answer")
  if not ready then
    local log = srv:log()
    srv:stop()
    return nil, "the S3 endpoint did not answer: " .. log
  end
  return srv
end

M.file_name = file_name

return M
