--- clicktocall.archive: client:archive_recordings{}, every recording of a window kept on disk before
-- the provider drops it (7 days after the call ended). A run (jobs.run_locked: dir/.clicktocall.lock or a
-- Redis lease) removes temporary files of dead runs, reads the manifest, pages the window (fresh URLs: a
-- manifest's URL is never used), then downloads what is missing, oldest callEndTime first.
--
-- The order that makes a crash harmless, for each recording: its file is whole and fsynced (under a
-- temporary name), renamed into place, its directory fsynced, then on_file, then its manifest line
-- written and fsynced. A manifest line thus always names a durable, whole file; a crash leaves at most
-- temporary files of ours (removed by the next run) or a file without its line (fetched again).
-- The disk work is group commits (batch.commit): on the libcurl multi (sched.turns) a turn's files are
-- fsynced at once in threads (core.fsync_all), renamed, their directories fsynced once, and their lines
-- written with one append and one fsync; elsewhere each file is fsynced as download does.
--
-- With upload (an S3-compatible store, clicktocall.s3), after that manifest line: the file is PUT with its
-- SHA-256 as the signed payload hash (the store refuses any other body), streamed by the transport
-- (t:upload); after a 2xx a second line for the id, the same entry with `uploaded = { key, etag, at }`, is
-- written and fsynced (the last line of an id wins); only then, with keep_local = false, is the file removed.
-- A crash anywhere leaves either no line (downloaded again), a line without `uploaded` (uploaded again from
-- the local copy: the same bytes overwrite the same key) or both lines.

local core = require "clicktocall.core"
local errors = require "clicktocall.errors"
local exchange = require "clicktocall.exchange"
local download = require "clicktocall.download"
local batch = require "clicktocall.batch"
local json = require "clicktocall.json"
local jobs = require "clicktocall.jobs"
local s3 = require "clicktocall.s3"

local type = type
local ipairs = ipairs
local pairs = pairs
local pcall = pcall
local setmetatable = setmetatable
local tostring = tostring
local tonumber = tonumber
local os_time = os.time
local os_rename = os.rename
local os_remove = os.remove
local io_open = io.open
local gsub = string.gsub
local match = string.match
local find = string.find
local sub = string.sub
local lower = string.lower
local concat = table.concat
local sort = table.sort
local tointeger = math.tointeger -- nil before 5.3

local _M = { _VERSION = core._VERSION }

local FNAME = "archive_recordings"
local TTL = require("clicktocall.limits").recording_ttl
local EXPIRING = 86400
local LOCK_NAME = ".clicktocall.lock"
local MAX_NAME = 200 -- bytes of the sanitized sessionId: every file system takes 255

local KNOWN = {
  start_time = true, end_time = true, dir = true, concurrency = true, layout = true,
  manifest = true, on_file = true, on_plan = true, user_data = true, lock = true, dry_run = true, mode = true,
  keep_days = true, upload = true,
}
-- recordings are personal data: files and the manifest are made owner read-write, group read, never
-- world-readable unless asked (the umask can only narrow a mode, never widen it)
local DEFAULT_MODE = 416 -- 0640

local ENTRY_KEYS = { "id", "sessionId", "file", "bytes", "sha256", "callEndTime", "archived_at", "uploaded",
                     "key", "etag", "at" } -- the last three: uploaded's own, in this order
-- a manifest line: these keys in this order, an id past 2^53 written as the number it is
local MANIFEST = { order = ENTRY_KEYS, only = true, ids = { id = true } }
-- an upload's answer is S3's error XML at most
local UPLOAD_MAX_BODY = 65536
local prune -- keep_days, below

-- a dated folder's mode: the files' mode with x wherever it has r (0640 -> 0750), so whoever may read a
-- file may reach it
local function dir_mode(mode)
  local out, unit = mode, 1
  for _ = 1, 3 do
    local class = math.floor(mode / unit) % 8
    if class >= 4 and class % 2 == 0 then
      out = out + unit
    end
    unit = unit * 8
  end
  return out
end

--------------------------------------------------------------------------
-- names
--------------------------------------------------------------------------

--- name_of(rec) -> the file name (no directory) for a record's recording
local function name_of(rec)
  local sid = rec.sessionId
  sid = (type(sid) == "string" or type(sid) == "number") and tostring(sid) or ""
  local base = gsub(sid, "[^A-Za-z0-9._-]", "_")
  base = gsub(base, "^%.+", "")
  if #base > MAX_NAME then
    base = sub(base, 1, MAX_NAME)
  end
  if base == "" then
    base = "id-" .. jobs.key(rec.id)
  end
  local url = type(rec.recordFileDownloadUrl) == "string" and rec.recordFileDownloadUrl or ""
  local path = match(url, "^%a[%w+.-]*://[^/?#]*([^?#]*)") or ""
  local ext = match(path, "%.([%w]+)$")
  if not ext or #ext > 5 or find(match(path, "[^/]*$"), "^%.[%w]+$") then
    ext = "wav"
  end
  return base .. "." .. ext
end
_M.name_of = name_of

-- "YYYY-MM-DD" of the call's end on the provider's clock, or a fixed folder for a record without one
local function date_of(rec)
  local d = type(rec.callEndTime) == "string" and match(rec.callEndTime, "^(%d%d%d%d%-%d%d%-%d%d)")
  return d or "undated"
end

--------------------------------------------------------------------------
-- the directory
--------------------------------------------------------------------------

local clean_stale = jobs.clean_stale

local function clean_tree(dir, layout)
  clean_stale(dir)
  if layout == "date" then
    local names = core.list_dir(dir) or {}
    for i = 1, #names do
      if match(names[i], "^%d%d%d%d%-%d%d%-%d%d$") or names[i] == "undated" then
        clean_stale(dir .. "/" .. names[i])
      end
    end
  end
end

-- id key -> entry; a line that does not parse (a torn last line after a crash) is ignored
local function read_manifest(path)
  local entries = {}
  local f = io_open(path, "rb")
  if not f then
    return entries, true
  end
  local data = f:read("*a") or ""
  f:close()
  for line in gsub(data, "\r", ""):gmatch("[^\n]+") do
    local e = json.decode(line)
    if e and e.id ~= nil and type(e.file) == "string" then
      entries[jobs.key(e.id)] = e
    end
  end
  return entries, data == "" or sub(data, -1) == "\n"
end

local function file_size(path)
  local f = io_open(path, "rb")
  if not f then
    return nil
  end
  local size = f:seek("end")
  f:close()
  return size
end

-- A manifest file name this archive could have written: relative, inside dir.
local function inside(file)
  return file ~= "" and not find(file, "^/") and not find("/" .. file .. "/", "/%.%./")
    and not find(file, "%c")
end

--- kept(dir, entry) -> whether the manifest entry's file is in dir, whole (its size), or safely elsewhere
-- (`uploaded`: keep_days may have removed the local copy, which is not fetched again)
local function kept(dir, m)
  if m and type(m.uploaded) == "table" and m.uploaded.key ~= nil then
    return true
  end
  local bytes = m and tonumber(m.bytes)
  return bytes ~= nil and inside(m.file) and file_size(dir .. "/" .. m.file) == bytes
end

--------------------------------------------------------------------------
-- arguments
--------------------------------------------------------------------------

local function check(st, args)
  if type(args) ~= "table" then
    return jobs.argument(st, FNAME, "expected a table of fields, got " .. type(args))
  end
  local bad = jobs.unknown(args, KNOWN)
  if bad then
    return jobs.argument(st, FNAME, "unknown field '" .. bad .. "'", bad)
  end
  local dir = args.dir
  if type(dir) ~= "string" or dir == "" then
    return jobs.argument(st, FNAME, "dir must be the path of an existing, writable directory", "dir")
  end
  local adir, cwd_why = jobs.absolute(dir) -- entry.path is absolute whatever dir was, and stays right after a chdir
  if not adir then
    return jobs.argument(st, FNAME, "field 'dir' is relative and the working directory is unknown: "
                         .. tostring(cwd_why))
  end
  dir = adir
  local wok, why = core.dir_writable(dir)
  if not wok then
    return jobs.argument(st, FNAME, "dir: " .. why.message, "dir")
  end
  local n = args.concurrency
  if n == nil then
    n = 4
  elseif not jobs.is_int(n, 1, 32) then
    return jobs.argument(st, FNAME, "concurrency must be an integer from 1 to 32", "concurrency")
  end
  local layout = args.layout
  if layout == nil then
    layout = "date"
  elseif layout ~= "date" and layout ~= "flat" then
    return jobs.argument(st, FNAME, "layout must be \"date\" or \"flat\"", "layout")
  end
  local manifest = args.manifest
  if manifest == nil then
    manifest = dir .. "/manifest.jsonl"
  elseif type(manifest) ~= "string" or manifest == "" or core.file_kind(manifest) == "directory" then
    return jobs.argument(st, FNAME, "manifest must be a file path", "manifest")
  else
    manifest = jobs.absolute(manifest) or manifest
    local mok, mwhy = core.dir_writable(jobs.parent(manifest))
    if not mok then
      return jobs.argument(st, FNAME, "manifest: " .. mwhy.message, "manifest")
    end
  end
  for _, hook in ipairs { "on_file", "on_plan" } do
    if args[hook] ~= nil and type(args[hook]) ~= "function" then
      return jobs.argument(st, FNAME, hook .. " must be a function", hook)
    end
  end
  local ok, err = jobs.check_window(st, FNAME, args)
  if not ok then
    return nil, err
  end
  ok, err = jobs.check_lock(st, FNAME, args)
  if not ok then
    return nil, err
  end
  if args.dry_run ~= nil and type(args.dry_run) ~= "boolean" then
    return jobs.argument(st, FNAME, "dry_run must be a boolean", "dry_run")
  end
  local keep = args.keep_days
  if keep ~= nil and (type(keep) ~= "number" or keep ~= keep or keep < 0 or keep == math.huge) then
    return jobs.argument(st, FNAME, "keep_days must be a number of days, 0 or more", "keep_days")
  end
  local up
  if args.upload ~= nil then
    local uerr
    up, uerr = s3.config(args.upload)
    if not up then
      return nil, uerr -- its sentences never hold the secret key
    end
    if not st.transport.upload then
      return jobs.argument(st, FNAME, "upload needs a transport that can upload (t:upload)", "upload")
    end
  end
  local mode = args.mode
  if mode == nil then
    mode = DEFAULT_MODE
  elseif type(mode) ~= "number" or mode ~= math.floor(mode) or mode < 0 or mode > 511 then
    return jobs.argument(st, FNAME, "mode must be a whole number from 0 to 511 (0777)", "mode")
  end
  return { dir = gsub(dir, "(.)/+$", "%1"), n = n, layout = layout, manifest = manifest, on_file = args.on_file,
           on_plan = args.on_plan, lock_url = args.lock, user_data = args.user_data or st.cfg.user_data,
           args = args, fname = FNAME, dry_run = args.dry_run == true, mode = mode, dir_mode = dir_mode(mode),
           keep_days = keep, s3 = up,
           -- download.fetch's opts: the directory fsync is this file's group commit; with the multi, the
           -- file's fsync and rename too (place_files)
           no_dir_sync = { sync_dir = false, mode = mode }, no_sync = { sync = false, mode = mode } }
end

--------------------------------------------------------------------------
-- errors
--------------------------------------------------------------------------

-- A certificate the recording host's TLS could not verify: say what to do about it.
local function tls_hint(err)
  local cn = err.code_name
  if cn == "CURLE_PEER_FAILED_VERIFICATION" or cn == "CURLE_SSL_CACERT_BADFILE" or cn == "CURLE_SSL_CACERT"
    or find(lower(tostring(err.message)), "certificate", 1, true) then
    if not find(err.message, "ca_file", 1, true) then
      err.message = err.message .. " (the recording host's TLS certificate could not be verified: give its "
        .. "CA bundle as ca_file to clicktocall.new{}; insecure = true turns verification off; the download "
        .. "is never retried over http)"
    end
  end
  return err
end

local io_fail = jobs.io_error

--------------------------------------------------------------------------
-- group commits (batch.group): what the recordings of one scheduler turn share
--------------------------------------------------------------------------

-- Flush of job.dirs: one fsync per directory, for every rename into it, the directories at once
-- -> errs (errs[i] for dirs[i])
local function sync_dirs(st, dirs, threads)
  local unique, seen = {}, {}
  for i = 1, #dirs do
    if not seen[dirs[i]] then
      seen[dirs[i]] = true
      unique[#unique + 1] = dirs[i]
    end
  end
  local why = core.fsync_all(unique, threads)
  local result = {}
  for k = 1, #unique do
    result[unique[k]] = why[k] and io_fail(st, "the recording could not be made durable: " .. why[k])
  end
  local errs = {}
  for i = 1, #dirs do
    errs[i] = result[dirs[i]] or nil
  end
  return errs
end

-- Flush of job.files ({ tmp =, path = } each, whole but not yet durable): every temporary file fsynced
-- at once, then each durable one renamed into place, then its directory fsynced -> errs. A file that
-- does not get through is removed: its recording fails, the others go on.
local function place_files(job, files)
  local st = job.st
  local tmps = {}
  for i = 1, #files do
    tmps[i] = files[i].tmp
  end
  local why = core.fsync_all(tmps, job.n)
  local errs, placed, dirs = {}, {}, {}
  for i = 1, #files do
    local f = files[i]
    if why[i] then
      os_remove(f.tmp)
      errs[i] = io_fail(st, "the recording could not be made durable: " .. why[i])
    else
      local ok, rerr = os_rename(f.tmp, f.path)
      if ok then
        placed[#placed + 1] = i
        dirs[#dirs + 1] = jobs.parent(f.path)
      else
        os_remove(f.tmp)
        errs[i] = io_fail(st, "could not move the recording into place: " .. tostring(rerr))
      end
    end
  end
  local derrs = sync_dirs(st, dirs, job.n)
  for k = 1, #placed do
    errs[placed[k]] = derrs[k]
  end
  return errs
end

-- Flush of job.lines: every line in one append and one fsync -> errs. core.append_sync cuts the file
-- back when it fails, so on a nearly full disk each line is then tried alone: those that fit stay.
local function append_lines(job, lines)
  local prefix = job.torn and "\n" or "" -- end a torn last line (a crash) before ours
  local ok, why = core.append_sync(job.manifest, prefix .. concat(lines, "\n") .. "\n", job.mode)
  if ok then
    job.torn = false
    return {}
  end
  if #lines == 1 then
    return { io_fail(job.st, "the recording is on disk but the manifest could not be written: " .. why.message) }
  end
  local errs = {}
  for i = 1, #lines do
    errs[i] = append_lines(job, { lines[i] })[1]
  end
  return errs
end

local function commit_groups(job)
  job.files = batch.group(function(files)
    return place_files(job, files)
  end)
  job.dirs = batch.group(function(dirs)
    -- threads only where the multi's loop waits for the disk (never inside an nginx worker)
    return sync_dirs(job.st, dirs, job.defer and job.n or 1)
  end)
  job.lines = batch.group(function(lines)
    return append_lines(job, lines)
  end)
end

--------------------------------------------------------------------------
-- one recording
--------------------------------------------------------------------------

-- A dated folder, made on first use; its own name in dir is made durable too -> true | nil, err
local function ensure_subdir(job, io, subdir)
  if core.file_kind(subdir) == "directory" then
    return true
  end
  local ok, why = core.mkdir(subdir, job.dir_mode)
  if not ok and core.file_kind(subdir) ~= "directory" then
    return nil, exchange.fail(job.st, "io", why.message, { sent = false, retryable = false })
  end
  return batch.commit(io, job.dirs, job.dir)
end

-- on_file(entry + path) -> true | nil, err (kind "callback")
local function call_on_file(job, item, entry)
  local hook = { path = item.path }
  for k, v in pairs(entry) do
    hook[k] = v
  end
  local hok, r1, r2 = pcall(job.on_file, hook)
  if not hok then
    errors.pass_interrupt(r1) -- Ctrl-C in the hook stops the run (run() lets go of the lock first)
    return nil, jobs.callback_error(job.st, "on_file", "raised an error", r1)
  elseif r1 == nil and r2 ~= nil then
    return nil, jobs.callback_error(job.st, "on_file", "returned an error", r2)
  end
  return true
end

local function manifest_line(entry)
  return json.encode(entry, MANIFEST)
end

--------------------------------------------------------------------------
-- the upload
--------------------------------------------------------------------------

-- The client's state with the store's secret key and session token among the secrets to redact, for
-- everything an upload reports (errors, events)
local function upload_state(st, cfg)
  local secrets = {}
  for i = 1, #st.secrets do
    secrets[i] = st.secrets[i]
  end
  for _, v in ipairs { cfg.secret_key, cfg.session_token } do
    local forms = exchange.secret_forms(v)
    for i = 1, #forms do
      secrets[#secrets + 1] = forms[i]
    end
  end
  table.sort(secrets, function(a, b) return #a > #b end)
  return setmetatable({ secrets = secrets }, { __index = st })
end

-- S3's error code from its XML answer ("SignatureDoesNotMatch"), if any
local function s3_code(body)
  return type(body) == "string" and match(body, "<Code>([%w%.%-_]+)</Code>") or nil
end

-- One PUT attempt, signed now (a retry after a wait gets a fresh x-amz-date) -> res | nil, err, res
local function put_once(ust, t, request, put)
  local signed, serr = s3.put_request(put.cfg, put.key, put.body, os_time())
  if not signed then
    return nil, serr
  end
  request.url, request.headers = signed.url, signed.headers
  local ok, res, terr = pcall(t.upload, t, request)
  if not ok then
    errors.pass_interrupt(res)
    return nil, exchange.fail(ust, "protocol", t.name .. " raised an error in upload: " .. exchange.describe(res),
                              { sent = true, retryable = false })
  end
  if res == nil then
    local e = errors.from_transport(terr)
    e.message = exchange.redact(ust, e.message)
    return nil, e
  end
  local status = type(res) == "table" and res.status
  if type(status) ~= "number" or status < 100 or status > 599 then
    return nil, exchange.fail(ust, "protocol", "the transport's upload returned something that is not a response",
                              { sent = true })
  end
  if status < 200 or status > 299 then
    local code = s3_code(res.body)
    return nil, exchange.fail(ust, "http", ("the object store answered HTTP %d%s"):format(status,
                              code and " (" .. code .. ")" or ""), { status = status, sent = true }), res
  end
  return res, nil, res
end

-- PUT entry's file (item.path) to the store, then the manifest line with `uploaded`, then (keep_local =
-- false) the local copy removed -> true | nil, err
local function upload_one(job, item, io, entry)
  local cfg = job.s3
  local key = s3.key(cfg, entry.file)
  local bytes = tonumber(entry.bytes)
  if not bytes or type(entry.sha256) ~= "string" then
    return nil, jobs.io_error(job.st, "the manifest entry has no bytes or sha256 to upload with")
  end
  local put = { cfg = cfg, key = key, body = { file = item.path, size = bytes, sha256 = entry.sha256 } }
  -- checked once before anything is sent: a key the signer refuses is the configuration's fault
  local first, ferr = s3.put_request(cfg, key, put.body, os_time())
  if not first then
    return nil, ferr
  end
  local request = { method = "PUT", url = first.url, headers = first.headers, body_file = item.path,
                    body_size = bytes, timeout = job.st.download_timeout, connect_timeout = job.st.connect_timeout,
                    max_body = UPLOAD_MAX_BODY }
  local res, err = exchange.with_retries(job.ust, io, "upload", true, request, put_once, put)
  if not res then
    return nil, err
  end
  local etag = exchange.header(res.headers, "etag")
  etag = type(etag) == "string" and gsub(etag, '^"(.*)"$', "%1") or nil
  local line = {}
  for k, v in pairs(entry) do
    line[k] = v
  end
  line.uploaded = { key = key, etag = etag, at = os_time() }
  local written, werr = batch.commit(io, job.lines, manifest_line(line))
  if not written then
    return nil, werr
  end
  if not job.s3.keep_local then
    os_remove(item.path)
  end
  return true
end

-- The recording of item.rec into item.path, in the order of the file header -> bytes | nil, err
local function archive_one(job, item, io)
  local rec = item.rec
  if job.lease then
    local lok, lerr = job.lease:renew()
    if not lok then
      return nil, lerr
    end
  end
  if item.entry then
    -- downloaded by an earlier run, not uploaded: from the local copy, no second download
    item.stage = "upload"
    local uok, uerr = upload_one(job, item, io, item.entry)
    if not uok then
      return nil, uerr
    end
    item.uploaded = true
    return nil
  end
  if item.subdir then
    local sok, serr = ensure_subdir(job, io, item.subdir)
    if not sok then
      return nil, serr
    end
  end
  local ok, info = download.fetch(job.st, rec, item.path, job.defer and job.no_sync or job.no_dir_sync, io)
  if not ok then
    return nil, tls_hint(info)
  end
  local synced, serr
  if job.defer then
    job.unplaced[info.tmp] = true
    synced, serr = batch.commit(io, job.files, { tmp = info.tmp, path = item.path })
    job.unplaced[info.tmp] = nil
    if not synced then
      os_remove(info.tmp) -- whatever the flush got to: the name is ours alone (gone once renamed)
    end
  else
    synced, serr = batch.commit(io, job.dirs, jobs.parent(item.path))
  end
  if not synced then
    return nil, serr
  end
  local entry = {
    id = rec.id, sessionId = rec.sessionId, file = item.file, bytes = info.bytes, sha256 = info.sha256,
    callEndTime = rec.callEndTime, archived_at = os_time(),
  }
  if job.on_file then
    local hok, herr = call_on_file(job, item, entry)
    if not hok then
      return nil, herr
    end
  end
  local written, werr = batch.commit(io, job.lines, manifest_line(entry))
  if not written then
    return nil, werr
  end
  if job.s3 then
    item.downloaded = info.bytes -- the download stands whatever the upload does
    item.stage = "upload"
    local uok, uerr = upload_one(job, item, io, entry)
    if not uok then
      return nil, uerr
    end
    item.uploaded = true
  end
  return info.bytes
end

--------------------------------------------------------------------------
-- the job
--------------------------------------------------------------------------

local function older(a, b)
  local ta, tb = a.ends or math.huge, b.ends or math.huge
  if ta ~= tb then
    return ta < tb
  end
  return a.order < b.order
end

-- stage: "upload" once the recording is whole and in the manifest (its PUT, its `uploaded` line), else
-- "download" (everything before: the lease, the fetch, the file, on_file, the manifest line)
local function failed_entry(item)
  return { id = item.rec.id, sessionId = item.rec.sessionId, expires_at = item.expires_at, err = item.err,
           stage = item.stage or "download" }
end

--- run(st, args) -> summary | nil, err
function _M.run(st, args)
  local job, err = check(st, args)
  if not job then
    return nil, err
  end
  job.st = st
  job.unplaced = {} -- temporary name -> true: whole files not renamed into place yet (the multi's group commits)
  -- a raise (Ctrl-C): the transfers in flight were dropped with their files (batch.run); so go the whole
  -- ones still waiting for their turn's commit
  job.cleanup = function()
    for tmp in pairs(job.unplaced) do
      os_remove(tmp)
    end
  end
  return jobs.run_locked(st, job, "archive", job.dir .. "/" .. LOCK_NAME, _M.locked)
end

-- The window paged against the manifest (read only) -> todo (oldest first), summary, pages | nil, err
local function plan(st, job)
  local manifest, whole = read_manifest(job.manifest)
  job.torn = not whole
  local summary = { downloaded = 0, skipped = 0, no_recording = 0, bytes = 0, failed = {}, expiring = {} }
  local pages = 0
  local todo, names, order = {}, {}, 0
  local claimed = {} -- file -> the id whose recording it holds, from the manifest
  for key, e in pairs(manifest) do
    claimed[e.file] = key
  end
  local next_page = jobs.pages(st, job, FNAME, job.args)
  while true do
    local recs, err = next_page()
    if not recs then
      if err then
        return nil, err
      end
      break
    end
    pages = pages + 1
    for i = 1, #recs do
      local rec = recs[i]
      local url = rec.recordFileDownloadUrl
      if not (rec.recordFlag == "1" or rec.recordFlag == 1) or type(url) ~= "string" or url == "" then
        summary.no_recording = summary.no_recording + 1
      else
        local key = jobs.key(rec.id)
        local m = manifest[key]
        if job.s3 and m and not (type(m.uploaded) == "table" and m.uploaded.key ~= nil) and kept(job.dir, m) then
          -- downloaded, whole, not uploaded yet: uploaded from the local copy
          names[m.file] = key
          order = order + 1
          local ends = jobs.unix(rec.callEndTime)
          todo[#todo + 1] = { rec = { id = rec.id, sessionId = rec.sessionId }, entry = m, file = m.file,
                              path = job.dir .. "/" .. m.file, order = order, ends = ends,
                              expires_at = ends and ends + TTL }
        elseif kept(job.dir, m) then
          -- the manifest's file is the truth for its id, whatever name or layout this run would give it
          names[m.file] = key
          summary.skipped = summary.skipped + 1
        else
          local folder = job.layout == "date" and (date_of(rec) .. "/") or ""
          local file = folder .. name_of(rec)
          local owner = names[file] or claimed[file]
          local alt = gsub(file, "(%.[%w]+)$", "-" .. key .. "%1")
          if (owner and owner ~= key) or (m and m.file == alt) then
            -- two calls with one sessionId (in this run or an earlier one): this one has its id in the name
            file = alt
          end
          names[file] = key
          local path = job.dir .. "/" .. file
          order = order + 1
          local ends = jobs.unix(rec.callEndTime)
          -- only what the download needs: a window may hold tens of thousands of records
          todo[#todo + 1] = {
            rec = { id = rec.id, sessionId = rec.sessionId, recordFlag = rec.recordFlag,
                    recordFileDownloadUrl = url, callEndTime = rec.callEndTime },
            file = file, path = path, order = order, ends = ends,
            expires_at = ends and ends + TTL,
            subdir = job.layout == "date" and (job.dir .. "/" .. date_of(rec)) or nil,
          }
        end
      end
    end
  end
  sort(todo, older)
  return todo, summary, pages
end

-- What a run would do, doing none of it (dry_run): no file, folder, manifest line or hook
local function dry(st, job)
  local todo, summary, pages = plan(st, job)
  if not todo then
    return nil, summary
  end
  local now = os_time()
  local uploads = 0
  for i = 1, #todo do
    if todo[i].entry then
      uploads = uploads + 1
    end
  end
  local downloads = #todo - uploads
  local out = { dry_run = true, to_download = downloads, bytes = 0, bytes_unknown = downloads,
                skipped = summary.skipped, no_recording = summary.no_recording, pages = pages, expiring = {} }
  if job.s3 then
    -- every download is uploaded too, and so is what an earlier run downloaded but did not upload
    out.to_upload = #todo
  end
  for i = 1, #todo do
    local item = todo[i]
    if item.expires_at and item.expires_at - now <= EXPIRING then
      out.expiring[#out.expiring + 1] = { id = item.rec.id, sessionId = item.rec.sessionId, file = item.file,
                                          expires_at = item.expires_at }
    end
  end
  return out
end

-- keep_days: local copies safely elsewhere (their manifest entry says `uploaded`) and archived more than
-- keep_days ago are removed -> how many. A file without `uploaded` is never removed, however old.
function prune(job, now)
  local entries = read_manifest(job.manifest)
  local cutoff, removed = now - job.keep_days * 86400, 0
  for _, e in pairs(entries) do
    local up = e.uploaded
    local at = tonumber(e.archived_at)
    if type(up) == "table" and up.key ~= nil and at and at < cutoff and inside(e.file)
        and os_remove(job.dir .. "/" .. e.file) then
      removed = removed + 1
    end
  end
  return removed
end

function _M.locked(st, job)
  if job.dry_run then
    return dry(st, job)
  end
  clean_tree(job.dir, job.layout)
  local todo, summary = plan(st, job)
  if not todo then
    return nil, summary
  end
  if job.on_plan then
    -- the number of recordings this run will download (the CLI's progress bar)
    local hok, herr = errors.pcall(job.on_plan, #todo)
    if not hok then
      return nil, jobs.callback_error(st, "on_plan", "raised an error", herr)
    end
  end
  if job.s3 then
    job.ust = upload_state(st, job.s3)
    summary.uploaded = 0
  end
  local sched = st.transport:scheduler(job.n)
  -- only the multi's turns gather files to fsync together; elsewhere each file is fsynced alone anyway
  job.defer = sched ~= nil and sched.turns == true
  commit_groups(job)
  local failures = batch.run(sched, st.transport, todo, function(item, io)
    item.bytes, item.err = archive_one(job, item, io)
  end)
  local now = os_time()
  for i = 1, #todo do
    local item = todo[i]
    item.err = item.err or failures[i]
    if item.err then
      local f = failed_entry(item)
      summary.failed[#summary.failed + 1] = f
      if item.expires_at and item.expires_at - now <= EXPIRING then
        summary.expiring[#summary.expiring + 1] = f
      end
    end
    local got = item.bytes or item.downloaded
    if got then
      summary.downloaded = summary.downloaded + 1
      summary.bytes = summary.bytes + got
      if tointeger then
        summary.bytes = tointeger(summary.bytes) or summary.bytes
      end
    end
    if item.uploaded then
      summary.uploaded = summary.uploaded + 1
    end
  end
  if job.keep_days then
    summary.removed = prune(job, now)
  end
  return summary
end

--------------------------------------------------------------------------
-- verify: the manifest against the files
--------------------------------------------------------------------------

local CHUNK = 65536

-- size and SHA-256 of path, read in chunks (a recording is never whole in memory) -> bytes, hex | nil
local function hash_file(path)
  local f = io_open(path, "rb")
  if not f then
    return nil
  end
  local h, bytes = core.sha256(), 0
  while true do
    local chunk = f:read(CHUNK)
    if not chunk then
      break
    end
    bytes = bytes + #chunk
    h:update(chunk)
  end
  f:close()
  return bytes, h:hex()
end

local VERIFY_KNOWN = { dir = true, manifest = true }

--- verify(args) -> report | nil, err
-- report = { rows = { { line =, id =, sessionId =, file =, status =, detail = }... }, ok =, missing =,
-- changed =, uploaded =, torn = }. status: "ok", "missing", "changed", "uploaded" (no local file, the
-- manifest says it is elsewhere: fine) or "torn" (a line that is not a manifest entry). The last line of an
-- id wins, as for the archive itself.
function _M.verify(args)
  local name = "verify_archive"
  if type(args) ~= "table" then
    return nil, errors.call_argument(name, "expected a table of fields, got " .. type(args))
  end
  for k in pairs(args) do
    if not VERIFY_KNOWN[k] then
      return nil, errors.call_argument(name, "unknown field '" .. tostring(k) .. "'", tostring(k))
    end
  end
  local dir = args.dir
  if type(dir) ~= "string" or dir == "" or core.file_kind(dir) ~= "directory" then
    return nil, errors.call_argument(name, "dir must be an existing directory", "dir")
  end
  dir = gsub(dir, "(.)/+$", "%1")
  local manifest = args.manifest or (dir .. "/manifest.jsonl")
  if type(manifest) ~= "string" or manifest == "" then
    return nil, errors.call_argument(name, "manifest must be a file name", "manifest")
  end
  local f, ferr = io_open(manifest, "rb")
  if not f then
    return nil, errors.new("io", name .. ": could not read the manifest: " .. tostring(ferr),
      { sent = false, retryable = false })
  end
  local report = { rows = {}, ok = 0, missing = 0, changed = 0, uploaded = 0, torn = 0, manifest = manifest }
  local last, order, n = {}, {}, 0
  for line in f:lines() do
    n = n + 1
    line = gsub(line, "\r$", "")
    if line ~= "" then
      local e = json.decode(line)
      if type(e) ~= "table" or e.id == nil or type(e.file) ~= "string" then
        report.rows[#report.rows + 1] = { line = n, status = "torn", detail = "not a manifest entry" }
        report.torn = report.torn + 1
      else
        local k = jobs.key(e.id)
        if not last[k] then
          order[#order + 1] = k
        end
        last[k] = { line = n, e = e }
      end
    end
  end
  f:close()
  for _, k in ipairs(order) do
    local e, row = last[k].e, { line = last[k].line }
    row.id, row.sessionId, row.file = e.id, e.sessionId, e.file
    local bytes, hex
    if inside(e.file) then
      bytes, hex = hash_file(dir .. "/" .. e.file)
    end
    if not bytes then
      if type(e.uploaded) == "table" then
        row.status, row.detail = "uploaded", "no local copy; uploaded"
      else
        row.status, row.detail = "missing", "the file is not there"
      end
    elseif bytes ~= tonumber(e.bytes) then
      row.status, row.detail = "changed", ("size %d, the manifest says %s"):format(bytes, tostring(e.bytes))
    elseif hex ~= e.sha256 then
      row.status, row.detail = "changed", "SHA-256 differs from the manifest's"
    else
      row.status = "ok"
    end
    report[row.status] = report[row.status] + 1
    report.rows[#report.rows + 1] = row
  end
  return report
end

return _M
