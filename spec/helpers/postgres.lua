--- Starts a throwaway PostgreSQL cluster for a spec: initdb in a temporary directory, run as an unprivileged
-- user (nobody, when the specs run as root), listening on 127.0.0.1 at a free port and on a unix socket in
-- that directory; stop() stops it and removes the directory. Never touches a system cluster.
--   local postgres = require "spec.helpers.postgres"
--   local pg = assert(postgres.start())          -- pg.uri (postgresql://ctc@127.0.0.1:PORT/crm), pg.port, pg.dir
--   pg:query("SELECT count(*) FROM t")           -- rows, each a list of text fields (nil for NULL) | nil, error
--   pg:stop()
local nginx = require "spec.helpers.nginx"

local M = {}

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local run = nginx.run

--- the directory of Debian's PostgreSQL server programs (the newest installed), or nil
function M.bindir()
  local ok, out = run("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1")
  local dir = ok and out:match("^(%S+)")
  if dir and io.open(dir .. "/initdb") then
    return dir
  end
  return nil
end

local AS_ROOT = (function()
  local _, out = run("id -u")
  return out:match("^%s*0%s*$") ~= nil
end)()

local pg_mt = {}
pg_mt.__index = pg_mt

local START_ATTEMPTS = 5

function M.start()
  local bin = M.bindir()
  if not bin then
    return nil, "PostgreSQL's server is not installed (Debian's postgresql: run `make bootstrap`)"
  end
  local ok, out = run("mktemp -d /tmp/ctc-pg.XXXXXX")
  if not ok then
    return nil, "mktemp failed: " .. out
  end
  local dir = out:match("^(%S+)")
  -- PostgreSQL refuses to run as root: the cluster belongs to nobody, in a directory nobody owns
  local as = ""
  if AS_ROOT then
    run("chown nobody:nogroup " .. q(dir))
    as = "runuser -u nobody -- "
  end
  local self = setmetatable({ dir = dir, bin = bin, as = as }, pg_mt)
  ok, out = run(("cd %s && %s%s/initdb -D %s -U ctc -A trust -E UTF8 --locale=C --no-sync"):format(q(dir), as, bin,
    q(dir .. "/data")))
  if not ok then
    run("rm -rf " .. q(dir))
    return nil, "initdb failed: " .. out
  end
  for _ = 1, START_ATTEMPTS do
    local port = nginx.free_port()
    ok, out = run(("cd %s && %s%s/pg_ctl -D %s -l %s -w -t 60 -o %s start"):format(q(dir), as, bin,
      q(dir .. "/data"), q(dir .. "/server.log"),
      q(("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off"):format(port, dir))))
    if ok then
      self.port = port
      break
    end
    local log = io.open(dir .. "/server.log")
    local text = log and log:read("*a") or ""
    if log then log:close() end
    if not text:find("could not bind", 1, true) and not text:find("already in use", 1, true) then
      self:stop()
      return nil, "pg_ctl start failed: " .. out .. "\n" .. text
    end
  end
  if not self.port then
    self:stop()
    return nil, "no free port for PostgreSQL after " .. START_ATTEMPTS .. " attempts"
  end
  self.admin_uri = ("postgresql://ctc@127.0.0.1:%d/postgres"):format(self.port)
  self.uri = ("postgresql://ctc@127.0.0.1:%d/crm"):format(self.port)
  local rows, err = self:query("CREATE DATABASE crm", self.admin_uri)
  if not rows then
    self:stop()
    return nil, err
  end
  return self
end

--- query(sql [, uri]) -> rows (each a list of fields as text, nil for NULL) | nil, psql's output
-- psql separates fields with NUL bytes (-z), so no text a field holds can split it.
function pg_mt:query(sql, uri)
  local ok, out = run(("psql -X -q -A -t -z -P null=%s -v ON_ERROR_STOP=1 %s -c %s"):format(q("\1"),
    q(uri or self.uri), q(sql)))
  if not ok then
    return nil, out
  end
  local rows = {}
  for line in out:gmatch("([^\n]*)\n") do
    local row = {}
    local i = 0
    for field in (line .. "\0"):gmatch("([^%z]*)%z") do
      i = i + 1
      row[i] = field ~= "\1" and field or nil
    end
    row.n = i
    rows[#rows + 1] = row
  end
  return rows
end

--- the one value of a one-row, one-column query
function pg_mt:scalar(sql)
  local rows, err = self:query(sql)
  assert(rows, err)
  return rows[1] and rows[1][1]
end

function pg_mt:stop()
  if self.stopped then
    return true
  end
  self.stopped = true
  if self.port then
    run(("cd %s && %s%s/pg_ctl -D %s -m immediate -w -t 30 stop"):format(q(self.dir), self.as, self.bin,
      q(self.dir .. "/data")))
  end
  if self.dir:match("^/tmp/ctc%-pg%.") then
    run("rm -rf " .. q(self.dir))
  end
  return true
end

return M
