-- ctcsim_store: the simulator's data (customers, balances, binds, call records),
-- all of it kept in the lua_shared_dict "ctcsim" so every worker sees the same state.
--
-- Call records live in "segments", numbered 1..nseg in increasing id order:
--   seeded range:  "s|<first_id>|<count>|<t0>|<t1>|<recorded a/1/0>|<user_data>"
--                  record i (first_id <= i < first_id+count) ends at t0 + floor((i-first)*(t1-t0)/(count-1))
--                  and is synthesized from a formula on demand (1,000,000 records cost one key)
--   seeded times:  "t|<first_id>|<count>|<recorded a/1/0>|<user_data>" with the sorted end times under
--                  "times:<first_id>" (comma-separated Unix seconds): record first_id+k ends at the k-th time;
--                  custom sessionIds (any string) under "sids:<first_id>" (a JSON array), each also under
--                  "sidmap:<sessionId>" -> id. Their recordings are at /recordings/r<id>.wav (an arbitrary
--                  sessionId cannot be put in a path nginx accepts: "..%2F" and "%00" are refused)
--   dialled call:  "d|<id>|<end_time>|<user_data>"  with the record's JSON under "rec:<id>"
-- A seed's recording size (when given) is under "rbytes:<first_id>"; its listing delay (when not 0) under
-- "delay:<first_id>": its records are listed only once the clock is past callEndTime + delay.
-- Option ids = "at_hangup": a dialled call, or a seeded record not listed yet, waits without an id in
--   "pend:<seq>" (its record's JSON, no id) and the list "pending" ("<due>|<seq>|<end>|<delay>|<rbytes>" each
--   line); settle() gives each one that is due an id, in the order they are due, as a dialled call's segment.
local util = require "ctcsim_util"
local rules = util.rules

local ngx = ngx
local dict = util.dict
local tonumber, tostring, type = tonumber, tostring, type
local floor, ceil, min, max = math.floor, math.ceil, math.min, math.max
local fmt = string.format
local md5 = ngx.md5

local M = {}

local SESSION_BASE = rules.SESSION_BASE   -- sessionId suffix = SESSION_BASE + id (so the id can be read back)

-- customers and balances ------------------------------------------------------

function M.init()
  local cfg = util.config
  dict:add("known:" .. cfg.user_data, true)
  dict:add("bal:" .. cfg.user_data, cfg.balance)
  dict:add("next_id", 0)
  dict:add("nseg", 0)
  dict:add("rec_count", 0)
  dict:add("clock_offset", 0)
end

function M.is_known(ud)
  return dict:get("known:" .. ud) == true
end

function M.add_customer(ud)
  dict:set("known:" .. ud, true)
  dict:add("bal:" .. ud, util.config.balance)
end

function M.balance(ud)
  return dict:get("bal:" .. ud) or 0
end

function M.set_balance(ud, n)
  M.add_customer(ud)
  dict:set("bal:" .. ud, n)
end

-- binds -------------------------------------------------------------------------

local function bind_key(ud, seat) return "bind:" .. ud .. "\t" .. seat end

function M.bind(ud, seat, phone)
  local ok, err = dict:safe_set(bind_key(ud, seat), phone)
  if not ok then return nil, err end
  return true
end

function M.bound_phone(ud, seat)
  return dict:get(bind_key(ud, seat))
end

function M.list_binds()
  local out = {}
  for _, k in ipairs(dict:get_keys(0)) do
    local ud, seat = k:match("^bind:(.-)\t(.*)$")
    if ud then
      local phone = dict:get(k)
      if phone then out[#out + 1] = { user_data = ud, seat = seat, phone = phone } end
    end
  end
  table.sort(out, function(a, b) return a.user_data .. "\t" .. a.seat < b.user_data .. "\t" .. b.seat end)
  return out
end

function M.list_balances()
  local out = {}
  for _, k in ipairs(dict:get_keys(0)) do
    local ud = k:match("^known:(.*)$")
    if ud then out[ud] = M.balance(ud) end
  end
  return out
end

-- options -------------------------------------------------------------------------

function M.dial_recorded()
  local v = dict:get("opt:dial_recorded")
  if v == nil then return true end
  return v
end

-- "at_dial" (default: an id when the call is placed or seeded) or "at_hangup" (when it is listed)
function M.ids_mode()
  return dict:get("opt:ids") or "at_dial"
end

function M.listing_delay()
  return dict:get("opt:listing_delay") or 0
end

-- segments ------------------------------------------------------------------------

-- the end times (and custom sessionIds) of a "t" segment, parsed once per worker (first ids are never
-- reused, so an entry is never stale)
local extra_cache = {}
local extra_cached = 0

local function seg_extra(first)
  local e = extra_cache[first]
  if e then return e end
  local t = {}
  local s = dict:get("times:" .. first) or ""
  for v in s:gmatch("[^,]+") do t[#t + 1] = tonumber(v) end
  local sids = dict:get("sids:" .. first)
  e = { times = t, sids = sids and util.decode(sids) or nil }
  if extra_cached >= 64 then       -- bound the worker's memory: start afresh
    extra_cache, extra_cached = {}, 0
  end
  extra_cache[first] = e
  extra_cached = extra_cached + 1
  return e
end

local function parse_seg(s)
  if not s then return nil end
  local b = s:byte(1)
  if b == 115 then -- "s"
    local first, count, t0, t1, rec, ud = s:match("^s|(%d+)|(%d+)|(%-?%d+)|(%-?%d+)|(%w)|(.*)$")
    first, count = tonumber(first), tonumber(count)
    return { kind = "s", first = first, last = first + count - 1, count = count,
             t0 = tonumber(t0), t1 = tonumber(t1), rec = rec, ud = ud }
  elseif b == 116 then -- "t"
    local first, count, rec, ud = s:match("^t|(%d+)|(%d+)|(%w)|(.*)$")
    first, count = tonumber(first), tonumber(count)
    local e = seg_extra(first)
    return { kind = "t", first = first, last = first + count - 1, count = count, times = e.times,
             sids = e.sids, rec = rec, ud = ud }
  else
    local id, tend, ud = s:match("^d|(%d+)|(%-?%d+)|(.*)$")
    id = tonumber(id)
    return { kind = "d", first = id, last = id, count = 1, t0 = tonumber(tend), t1 = tonumber(tend), ud = ud }
  end
end

local function get_seg(k)
  return parse_seg(dict:get("seg:" .. k))
end

-- smallest segment index whose last id >= id (nseg + 1 when none)
local function find_seg(id)
  local lo, hi = 1, dict:get("nseg") or 0
  local n = hi
  while lo <= hi do
    local mid = floor((lo + hi) / 2)
    local seg = get_seg(mid)
    if not seg then return n + 1 end
    if seg.last >= id then hi = mid - 1 else lo = mid + 1 end
  end
  return lo
end

-- end time of the k-th (0-based) record of a seeded segment
local function seg_time(seg, k)
  if seg.times then return seg.times[k + 1] end
  if seg.count <= 1 then return seg.t0 end
  return seg.t0 + floor(k * (seg.t1 - seg.t0) / (seg.count - 1))
end

-- smallest k in [0, count) with seg_time(k) >= t (count when none)
local function seg_lower(seg, t)
  local lo, hi = 0, seg.count - 1
  while lo <= hi do
    local mid = floor((lo + hi) / 2)
    if seg_time(seg, mid) >= t then hi = mid - 1 else lo = mid + 1 end
  end
  return lo
end

-- largest k with seg_time(k) <= t (-1 when none)
local function seg_upper(seg, t)
  local lo, hi = 0, seg.count - 1
  while lo <= hi do
    local mid = floor((lo + hi) / 2)
    if seg_time(seg, mid) <= t then lo = mid + 1 else hi = mid - 1 end
  end
  return lo - 1
end

-- record synthesis ----------------------------------------------------------------

local function uuid_from(h)
  return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-4" .. h:sub(14, 16) .. "-a" .. h:sub(18, 20) .. "-" .. h:sub(21, 32)
end

-- a record waiting for its id (at_hangup) has a sessionId of its own number, far above the ids' range;
-- once it has an id, "sidmap:<sessionId>" leads to it
function M.session_id(uuid, n, waiting)
  return uuid .. "_" .. tostring(rules.session_number(n, waiting))
end

function M.id_from_session(sid)
  local digits = type(sid) == "string" and sid:match("^[%x%-]+_(%d+)$")
  if not digits then return nil end
  local id = tonumber(digits) - SESSION_BASE
  if id < 1 then return nil end
  return id
end

-- the file name (without ".wav") of a custom-sessionId record's recording, and back
function M.custom_name(id) return "r" .. id end
local function id_from_custom_name(name)
  local digits = name:match("^r(%d+)$")
  return digits and tonumber(digits)
end

-- the id of the record with this custom sessionId, or nil
function M.id_from_custom_session(sid)
  return dict:get("sidmap:" .. sid)
end

-- the fields of seeded record `id` (all derived from the id and its segment)
local function seeded_fields(seg, id)
  local tend = seg_time(seg, id - seg.first)
  local dur = rules.seed_duration(id)
  local recorded
  if seg.rec == "a" then recorded = (id % 10 ~= 0) else recorded = (seg.rec == "1") end
  local sid
  if seg.sids then
    sid = seg.sids[id - seg.first + 1]
  else
    sid = M.session_id(uuid_from(md5("ctcsim-seed:" .. id)), id)
  end
  return tend, dur, recorded, sid
end

-- JSON text of a string value, without the quotes
local function json_inner(str)
  local j = util.encode(str)
  return j:sub(2, -2)
end

local function seeded_record(seg, id)
  local tend, dur, recorded, sid = seeded_fields(seg, id)
  local rec = rules.record_fields(id, tend, dur)
  rec.id, rec.sessionId, rec.userData, rec.recordFlag = id, sid, seg.ud, recorded and "1" or "0"
  return rec, tend
end

-- the same record as JSON text, built directly (the hot path of paging: the fields of rules.record_fields,
-- in the order of rules.RECORD_FIELDS); ud_json is the encoded userData
local SEEDED_FMT = '{"id":%d,"sessionId":"%s","userData":%s,"setingNbr":"PP%010d","direction":"0",'
  .. '"callerNum":"+86138%08d","calleeNum":"+86139%08d","callEndTime":"%s","callOutAnswerTime":"%s",'
  .. '"fwdAnswerTime":"%s","recordFlag":"%s",%s"duration":"%d","callmin":%d}'

local function seeded_json(seg, id, ud_json, base_json)
  local tend, dur, recorded, sid = seeded_fields(seg, id)
  local name = sid
  if seg.sids then
    sid = json_inner(sid)
    name = M.custom_name(id)
  end
  local url = ""
  if recorded then url = '"recordFileDownloadUrl":"' .. base_json .. '/recordings/' .. name .. '.wav",' end
  return fmt(SEEDED_FMT, id, sid, ud_json, 7568000000 + id % 1000, id % 100000000, (id * 7) % 100000000,
    util.fmt_time(tend), util.fmt_time(tend - dur - 8), util.fmt_time(tend - dur),
    recorded and "1" or "0", url, dur, ceil(dur / 60))
end

local function dialled_record(id)
  local s = dict:get("rec:" .. id)
  if not s then return nil end
  return util.decode(s)
end

-- a dialled record as JSON text (stored encoded; the URL is spliced in)
local function dialled_json(id, base_json)
  local s = dict:get("rec:" .. id)
  if not s then return nil end
  if s:find('"recordFlag":"1"', 1, true) then
    local sid = s:match('"sessionId":"([^"]*)"')
    s = s:sub(1, -2) .. ',"recordFileDownloadUrl":"' .. base_json .. '/recordings/' .. sid .. '.wav"}'
  end
  return s
end

-- a record by id (plus its end time, its segment's first id, and the file name of its recording), or nil
function M.get_record(id)
  local k = find_seg(id)
  local seg = get_seg(k)
  if not seg or seg.first > id then return nil end
  if seg.kind ~= "d" then
    local rec, tend = seeded_record(seg, id)
    return rec, tend, seg.first, seg.sids and M.custom_name(id) or rec.sessionId
  end
  local rec = dialled_record(id)
  return rec, seg.t0, seg.first, rec and rec.sessionId
end

-- the record whose recording is /recordings/<name>.wav (and its end time and segment), or nil
function M.record_by_recording_name(name)
  local id = dict:get("sidmap:" .. name) or M.id_from_session(name) or id_from_custom_name(name)
  if not id then return nil end
  local rec, tend, first, rname = M.get_record(id)
  if not rec or rname ~= name then return nil end
  return rec, tend, first
end

-- the recording size a seed asked for (nil: none given)
function M.seed_recording_bytes(first)
  return dict:get("rbytes:" .. first)
end

-- records of user `ud` with id > max_id and end time in [t_start, t_end], ascending, at most `limit`,
-- as a list of JSON texts
function M.query(ud, max_id, t_start, t_end, limit, base, now)
  local out = {}
  if t_start > t_end then return out end
  local ud_json = util.encode(ud)
  local base_json = json_inner(base)
  local nseg = dict:get("nseg") or 0
  local k = find_seg(max_id + 1)
  local from_id = max_id + 1
  local n = 0
  while k <= nseg and n < limit do
    local seg = get_seg(k)
    if not seg then break end
    -- a listing delay: only the records whose callEndTime + delay has come are listed
    local delay = dict:get("delay:" .. seg.first)
    local last_t = t_end
    if delay and now - delay < last_t then last_t = now - delay end
    if seg.ud == ud then
      if seg.kind ~= "d" then
        local lo = seg_lower(seg, t_start)
        local hi = seg_upper(seg, last_t)
        local a = max(seg.first + lo, from_id)
        local b = min(seg.first + hi, a + (limit - n) - 1)
        for id = a, b do
          n = n + 1
          out[n] = seeded_json(seg, id, ud_json, base_json)
        end
      elseif seg.first >= from_id and seg.t0 >= t_start and seg.t0 <= last_t then
        local rec = dialled_json(seg.first, base_json)
        if rec then
          n = n + 1
          out[n] = rec
        end
      end
    end
    k = k + 1
  end
  return out
end

-- synthetic records (used by the "stuck_ids" fault: not recorded, ending now), as JSON text
function M.synthetic_record(id, ud, base, now)
  local seg = { kind = "s", first = id, last = id, count = 1, t0 = now, t1 = now, rec = "0", ud = ud }
  return seeded_json(seg, id, util.encode(ud), json_inner(base))
end

-- appending (callers hold the lock) -------------------------------------------------

local function append_seg(s)
  local k = (dict:get("nseg") or 0) + 1
  local ok, err = dict:safe_set("seg:" .. k, s)
  if not ok then return nil, err end
  dict:set("nseg", k)
  return k
end

-- seed `count` records ending evenly over [t0, t1], or one record per end time of the sorted list `times`
-- (then count = #times); returns first_id, last_id
function M.seed(count, t0, t1, ud, recorded, times, recording_bytes, sids, delay)
  return util.with_lock(function()
    local first = (dict:get("next_id") or 0) + 1
    local rec = recorded == nil and "a" or (recorded and "1" or "0")
    local ok, err = true, nil
    -- the segment last: a seed is there whole or not at all (safe_set never evicts other state)
    if recording_bytes then ok, err = dict:safe_set("rbytes:" .. first, recording_bytes) end
    if ok and delay and delay > 0 then ok, err = dict:safe_set("delay:" .. first, delay) end
    if ok and times then ok, err = dict:safe_set("times:" .. first, table.concat(times, ",")) end
    if ok and sids then
      ok, err = dict:safe_set("sids:" .. first, util.encode_array(sids))
      for i = 1, #sids do
        if not ok then break end
        ok, err = dict:safe_set("sidmap:" .. sids[i], first + i - 1)
      end
    end
    if ok then
      if times then
        ok, err = append_seg(fmt("t|%d|%d|%s|%s", first, count, rec, ud))
      else
        ok, err = append_seg(fmt("s|%d|%d|%d|%d|%s|%s", first, count, t0, t1, rec, ud))
      end
    end
    if not ok then
      dict:delete("rbytes:" .. first)
      dict:delete("delay:" .. first)
      dict:delete("times:" .. first)
      dict:delete("sids:" .. first)
      for i = 1, sids and #sids or 0 do
        if dict:get("sidmap:" .. sids[i]) == first + i - 1 then dict:delete("sidmap:" .. sids[i]) end
      end
      return nil, "state full: " .. tostring(err)
    end
    dict:set("next_id", first + count - 1)
    dict:incr("rec_count", count, 0)
    return first, first + count - 1
  end)
end

-- at_hangup: a record waits for its id until it is due (callEndTime + delay); callers hold the lock
local function add_pending(rec, tend, delay, rbytes)
  local seq = dict:incr("pend_seq", 1, 0)
  local ok, err = dict:safe_set("pend:" .. seq, util.encode(rec))
  if not ok then return nil, err end
  local line = fmt("%d|%d|%d|%d|%d", tend + delay, seq, tend, delay, rbytes or 0)
  local list = dict:get("pending")
  ok, err = dict:safe_set("pending", list and (list .. "\n" .. line) or line)
  if not ok then
    dict:delete("pend:" .. seq)
    return nil, err
  end
  return seq
end

-- at_hangup: every waiting record whose time has come gets the next id, in the order they are due (then
-- as placed), and becomes a dialled call's segment. Called before each request is served.
function M.settle()
  if not dict:get("pending") then return end
  return util.with_lock(function()
    local list = dict:get("pending")
    if not list then return end
    local now = floor(util.now())
    local due, left = {}, {}
    for line in list:gmatch("[^\n]+") do
      local d, seq, tend, delay, rbytes = line:match("^(%-?%d+)|(%d+)|(%-?%d+)|(%d+)|(%d+)$")
      d = tonumber(d)
      if d <= now then
        due[#due + 1] = { due = d, seq = tonumber(seq), tend = tonumber(tend), delay = tonumber(delay),
                          rbytes = tonumber(rbytes) }
      else
        left[#left + 1] = line
      end
    end
    if #due == 0 then return end
    table.sort(due, function(a, b) if a.due ~= b.due then return a.due < b.due end return a.seq < b.seq end)
    for _, p in ipairs(due) do
      local rec = util.decode(dict:get("pend:" .. p.seq) or "null")
      if rec then
        local id = (dict:get("next_id") or 0) + 1
        rec.id = id
        dict:set("rec:" .. id, util.encode(rec))
        append_seg(fmt("d|%d|%d|%s", id, p.tend, rec.userData))
        dict:set("sidmap:" .. rec.sessionId, id)
        if p.delay > 0 then dict:set("delay:" .. id, p.delay) end
        if p.rbytes > 0 then dict:set("rbytes:" .. id, p.rbytes) end
        dict:set("next_id", id)
        dict:incr("rec_count", 1, 0)
      end
      dict:delete("pend:" .. p.seq)
    end
    if #left == 0 then dict:delete("pending") else dict:set("pending", table.concat(left, "\n")) end
  end)
end

function M.pending_count()
  local list = dict:get("pending")
  if not list then return 0 end
  local _, n = list:gsub("\n", "")
  return n + 1
end

-- at_hangup: seeded records not due yet wait, each with the fields a seeded record has (derived from its
-- waiting number instead of an id). -> how many
function M.seed_pending(times, ud, recorded, delay, rbytes)
  return util.with_lock(function()
    for i = 1, #times do
      local seq = (dict:get("pend_seq") or 0) + 1
      local tend = times[i]
      local dur = rules.seed_duration(seq)
      local on
      if recorded == nil then on = seq % 10 ~= 0 else on = recorded end
      local rec = rules.record_fields(seq, tend, dur)
      rec.sessionId = M.session_id(uuid_from(md5("ctcsim-pend:" .. seq)), seq, true)
      rec.userData, rec.recordFlag = ud, on and "1" or "0"
      local ok, err = add_pending(rec, tend, delay, rbytes)
      if not ok then return nil, "state full: " .. tostring(err) end
    end
    return #times
  end)
end

-- place a call: checks the balance, creates the record (at_hangup: a record waiting for its id), charges
-- the talk time. returns sessionId or nil, message
function M.dial(ud, seat, caller, callee)
  return util.with_lock(function()
    local bal = M.balance(ud)
    local refusal = rules.refuse_dial(bal)
    if refusal then return nil, refusal end
    local hangup = M.ids_mode() == "at_hangup"
    local id = hangup and (dict:get("pend_seq") or 0) + 1 or (dict:get("next_id") or 0) + 1
    local dur = tonumber(dict:get("opt:dial_duration")) or rules.dial_duration(id)
    local t_caller, t_callee, tend = rules.dial_times(floor(util.now()), dur)
    local uuid = uuid_from(md5(fmt("ctcsim-dial:%d:%s:%d:%s", id, tostring(ngx.now()), ngx.worker.pid(),
                                   tostring(math.random()))))
    local sid = M.session_id(uuid, id, hangup)
    local recorded = M.dial_recorded()
    local rec = {
      id = not hangup and id or nil,
      sessionId = sid,
      userData = ud,
      setingNbr = seat,
      direction = "0",
      callerNum = caller,
      calleeNum = callee,
      callOutAnswerTime = util.fmt_time(t_caller),
      fwdAnswerTime = util.fmt_time(t_callee),
      callEndTime = util.fmt_time(tend),
      duration = tostring(dur),
      callmin = ceil(dur / 60),
      recordFlag = recorded and "1" or "0",
    }
    local delay = M.listing_delay()
    if hangup then
      local ok, err = add_pending(rec, tend, delay)
      if not ok then return nil, "系统繁忙 (simulator state full: " .. tostring(err) .. ")" end
    else
      local ok, err = dict:safe_set("rec:" .. id, util.encode(rec))
      if not ok then return nil, "系统繁忙 (simulator state full: " .. tostring(err) .. ")" end
      ok, err = append_seg(fmt("d|%d|%d|%s", id, tend, ud))
      if not ok then
        dict:delete("rec:" .. id)
        return nil, "系统繁忙 (simulator state full: " .. tostring(err) .. ")"
      end
      if delay > 0 then dict:set("delay:" .. id, delay) end
      dict:set("next_id", id)
      dict:incr("rec_count", 1, 0)
    end
    dict:set("bal:" .. ud, rules.charge(bal, dur))
    return sid
  end)
end

-- reset everything except the id counter (ids keep increasing across resets) and the in-flight counts
function M.reset()
  return util.with_lock(function()
    local next_id = dict:get("next_id") or 0
    local pend_seq = dict:get("pend_seq") or 0
    local log_seq = dict:get("log_seq") or 0
    -- requests in flight now decrement these when they end: keep them
    local in_flight = {}
    for _, class in ipairs { "all", "api", "recordings" } do
      in_flight[class] = dict:get("inflight:" .. class) or 0
    end
    dict:flush_all()
    dict:flush_expired()
    dict:set("__lock", true, 5)  -- still ours until with_lock releases it
    dict:set("next_id", next_id)
    dict:set("pend_seq", pend_seq)
    dict:set("log_seq", log_seq)
    dict:set("log_base", log_seq)
    for class, n in pairs(in_flight) do dict:set("inflight:" .. class, n) end
    M.init()
    return true
  end)
end

function M.counts()
  return {
    record_count = dict:get("rec_count") or 0,
    pending = M.pending_count(),
    last_id = dict:get("next_id") or 0,
    segments = dict:get("nseg") or 0,
  }
end

return M
