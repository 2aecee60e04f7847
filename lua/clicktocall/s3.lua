--- clicktocall.s3: archive_recordings{ upload = {...} }'s object store, any S3-compatible one (AWS S3, Aliyun
-- OSS, Tencent COS, Huawei OBS, MinIO). This file checks the settings and builds signed requests; the
-- signing itself is the core's (core.sigv4_sign, AWS Signature V4), the sending a transport's
-- (t:upload(request) streams request.body_file).
--
--   s3.config(upload) -> cfg | nil, err          err.kind "argument", err.field "upload.<name>"
--   s3.key(cfg, file) -> key                      cfg.prefix .. file
--   s3.put_request(cfg, key, { file =, size =, sha256 = }, now) -> request | nil, err
--   s3.head_bucket_request(cfg, now) -> request | nil, err
--
-- A request is { method, url, headers (host, x-amz-date, x-amz-content-sha256, authorization, ...),
-- body_file, body_size } for a PUT, no body: the file is streamed by the transport, and its SHA-256 is the
-- signed payload hash, so the store itself refuses a body that differs from what was archived.
-- No sentence here ever holds the secret key or the session token (they are never formatted into one).

local core = require "clicktocall.core"
local errors = require "clicktocall.errors"

local type = type
local pairs = pairs
local tostring = tostring
local match = string.match
local find = string.find
local sub = string.sub

local _M = { _VERSION = core._VERSION }

local EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

local KNOWN = {
  url = true, endpoint = true, region = true, access_key = true, secret_key = true, session_token = true,
  path_style = true, keep_local = true,
}

local function fail(name, what)
  local field = "upload." .. name
  return nil, errors.new("argument", "archive_recordings: " .. field .. " " .. what,
                         { field = field, sent = false, retryable = false })
end

local function text(v)
  return type(v) == "string" and v ~= "" and not find(v, "[%c ]")
end

--- config(upload) -> cfg | nil, err: API.md's `upload` table checked, with its defaults
function _M.config(u)
  if type(u) ~= "table" then
    return nil, errors.new("argument", "archive_recordings: upload must be a table of settings",
                           { field = "upload", sent = false, retryable = false })
  end
  for k in pairs(u) do
    if not KNOWN[k] then
      -- a name only: a misspelt field's value could be a secret
      return fail(type(k) == "string" and k or "?", "is not a field of upload (url, endpoint, region, "
                  .. "access_key, secret_key, session_token, path_style, keep_local)")
    end
  end
  if type(u.url) ~= "string" then
    return fail("url", "is missing (s3://bucket/prefix/)")
  end
  local bucket, prefix = match(u.url, "^s3://([^/]+)/?(.*)$")
  if not bucket then
    return fail("url", "must be s3://bucket/prefix/")
  end
  if find(prefix, "%c") then
    return fail("url", "must hold no control character")
  end
  -- the key is prefix .. the manifest's file: "s3://b/calls" means the folder calls/, as awscli reads it
  if prefix ~= "" and sub(prefix, -1) ~= "/" then
    prefix = prefix .. "/"
  end
  if not text(u.region) or not match(u.region, "^[%w-]+$") then
    return fail("region", "is missing (a region name such as us-east-1 or cn-hangzhou)")
  end
  if not text(u.access_key) then
    return fail("access_key", "is missing (a non-empty string)")
  end
  if type(u.secret_key) ~= "string" or u.secret_key == "" then
    return fail("secret_key", "is missing (a non-empty string)")
  end
  if u.session_token ~= nil and (type(u.session_token) ~= "string" or find(u.session_token, "[\r\n]")) then
    return fail("session_token", "must be a string on one line")
  end
  for _, name in pairs { "path_style", "keep_local" } do
    if u[name] ~= nil and type(u[name]) ~= "boolean" then
      return fail(name, "must be a boolean")
    end
  end
  local endpoint = u.endpoint
  if endpoint == nil then
    endpoint = "https://s3." .. u.region .. ".amazonaws.com"
  elseif type(endpoint) ~= "string" then
    return fail("endpoint", "must be a URL (https://host[:port])")
  end
  local cfg = {
    bucket = bucket, prefix = prefix, endpoint = endpoint, region = u.region, access_key = u.access_key,
    secret_key = u.secret_key, session_token = u.session_token ~= "" and u.session_token or nil,
    path_style = u.path_style == true, keep_local = u.keep_local ~= false,
  }
  -- the endpoint and bucket as the core builds URLs from them, and one signature made with everything
  local url, uerr = core.s3_url { endpoint = endpoint, bucket = bucket, path_style = cfg.path_style }
  if not url then
    return fail(uerr.field == "bucket" and "url" or "endpoint",
                (uerr.field == "bucket" and "has a bad bucket name: " or "") .. tostring(uerr.message))
  end
  local _, serr = _M.head_bucket_request(cfg, 0)
  if serr then
    return nil, serr
  end
  return cfg
end

--- key(cfg, file) -> the object's key
function _M.key(cfg, file)
  return cfg.prefix .. file
end

local function sign(cfg, method, url, payload_hash, now)
  local headers, signed_url = core.sigv4_sign {
    method = method, url = url, payload_hash = payload_hash, region = cfg.region,
    access_key = cfg.access_key, secret_key = cfg.secret_key, session_token = cfg.session_token, time = now,
  }
  if not headers then
    local f = signed_url.field
    local name = (f == "region" or f == "access_key" or f == "secret_key" or f == "session_token") and f
      or "endpoint"
    return fail(name, "could not be signed with: " .. tostring(signed_url.message))
  end
  return headers, signed_url
end

--- put_request(cfg, key, { file =, size =, sha256 = }, now) -> request | nil, err
function _M.put_request(cfg, key, body, now)
  local url, uerr = core.s3_url { endpoint = cfg.endpoint, bucket = cfg.bucket, key = key,
                                  path_style = cfg.path_style }
  if not url then
    return fail("url", tostring(uerr.message))
  end
  local headers, signed = sign(cfg, "PUT", url, body.sha256, now)
  if not headers then
    return nil, signed
  end
  return { method = "PUT", url = signed, headers = headers, body_file = body.file, body_size = body.size }
end

--- head_bucket_request(cfg, now) -> request | nil, err: a signed HEAD of the bucket (doctor)
function _M.head_bucket_request(cfg, now)
  local url, uerr = core.s3_url { endpoint = cfg.endpoint, bucket = cfg.bucket, path_style = cfg.path_style }
  if not url then
    return fail("url", tostring(uerr.message))
  end
  if cfg.path_style then
    url = sub(url, 1, -2) -- endpoint/bucket, as S3's HeadBucket is addressed (no key, no slash)
  end
  local headers, signed = sign(cfg, "HEAD", url, EMPTY_SHA256, now)
  if not headers then
    return nil, signed
  end
  return { method = "HEAD", url = signed, headers = headers }
end

_M.EMPTY_SHA256 = EMPTY_SHA256

return _M
