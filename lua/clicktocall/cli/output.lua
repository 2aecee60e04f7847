--- Writers for records and for the other commands' results: JSON lines, a
-- JSON array, CSV (RFC 4180) and an aligned table.
-- w = output.new(format, fh); w:row(record); w:finish()
-- w = output.rows(format, fh, columns); w:row(t); w:finish()   (any rows)
-- output.object(format, fh, t, columns)                        (one result)
local type = type
local tostring = tostring
local gsub = string.gsub
local byte = string.byte
local concat = table.concat

local json = require "clicktocall.json"

local M = { _VERSION = require "clicktocall.version" }

-- The provider's record fields, in the order a person reads them; JSON lines
-- put these first, CSV has exactly these columns.
M.FIELDS = {
  "id", "sessionId", "userData", "setingNbr", "callerNum", "calleeNum", "direction",
  "callOutAnswerTime", "fwdAnswerTime", "callEndTime", "duration", "callmin",
  "recordFlag", "recordFileDownloadUrl",
}

local IDS = { id = true }
local RECORD = { order = M.FIELDS, ids = IDS }
local json_value = json.encode

--- json_object(t) -> a JSON object with the provider's fields first, then the rest by name
function M.json_object(t)
  return json_value(t, RECORD)
end

------------------------------------------------------------------------
-- CSV (RFC 4180): CRLF line ends, a header row, a field quoted when it holds a
-- comma, a quote, CR or LF, quotes doubled. Bytes pass through untouched, so
-- UTF-8 stays UTF-8.
------------------------------------------------------------------------

local function csv_field(v)
  if v == nil then
    return ""
  end
  local s = type(v) == "number" and json_value(v) or tostring(v)
  if s:find('[,"\r\n]') then
    return '"' .. gsub(s, '"', '""') .. '"'
  end
  return s
end
M.csv_field = csv_field

local function csv_line(values, n)
  local parts = {}
  for i = 1, n or #values do -- n: a trailing field may be nil
    parts[i] = csv_field(values[i])
  end
  return concat(parts, ",") .. "\r\n"
end
M.csv_line = csv_line

------------------------------------------------------------------------
-- The table: aligned columns, the widths measured on the first page of rows.
------------------------------------------------------------------------

M.TABLE = {
  { "ID", "id" }, { "ENDED (UTC+8)", "callEndTime" }, { "CALLER", "callerNum" }, { "CALLEE", "calleeNum" },
  { "SEAT", "setingNbr" }, { "SECS", "duration", right = true }, { "REC", "recordFlag" },
  { "SESSION", "sessionId" },
}

-- Columns a UTF-8 string takes on a terminal: East Asian wide characters take two.
local function width(s)
  local w = 0
  for c in s:gmatch("[%z\1-\127\194-\244][\128-\191]*") do
    local b1 = byte(c)
    if b1 < 0x80 then
      w = w + 1
    else
      local cp
      if b1 >= 0xF0 then
        cp = ((b1 % 8) * 262144) + ((byte(c, 2) or 128) % 64) * 4096 + ((byte(c, 3) or 128) % 64) * 64 +
             ((byte(c, 4) or 128) % 64)
      elseif b1 >= 0xE0 then
        cp = ((b1 % 16) * 4096) + ((byte(c, 2) or 128) % 64) * 64 + ((byte(c, 3) or 128) % 64)
      else
        cp = 0
      end
      local wide = (cp >= 0x1100 and cp <= 0x115F) or (cp >= 0x2E80 and cp <= 0xA4CF) or
                   (cp >= 0xAC00 and cp <= 0xD7A3) or (cp >= 0xF900 and cp <= 0xFAFF) or
                   (cp >= 0xFE30 and cp <= 0xFE4F) or (cp >= 0xFF00 and cp <= 0xFF60) or
                   (cp >= 0xFFE0 and cp <= 0xFFE6) or (cp >= 0x1F300 and cp <= 0x1FAFF) or
                   (cp >= 0x20000 and cp <= 0x3FFFD)
      w = w + (wide and 2 or 1)
    end
  end
  return w
end
M.width = width

-- A cell shown on a terminal: control characters (escape sequences a record
-- could carry) become "?".
local function cell(rec, field)
  local v = rec[field]
  if v == nil then
    return ""
  end
  if field == "recordFlag" then
    return (v == "1" or v == 1) and "yes" or "no"
  end
  local s = type(v) == "number" and json_value(v) or tostring(v)
  return (gsub(s, "%c", "?"))
end

local function pad(s, w, right)
  local n = w - width(s)
  if n <= 0 then
    return s
  end
  return right and (string.rep(" ", n) .. s) or (s .. string.rep(" ", n))
end

------------------------------------------------------------------------

local writer = {}
writer.__index = writer

function writer:write(s)
  local ok, err = self.fh:write(s)
  if not ok then
    return nil, err
  end
  return true
end

local function table_flush(self)
  local cols, widths = self.cols, self.widths
  if not widths then
    widths = {}
    for i, c in ipairs(cols) do
      widths[i] = width(c[1])
    end
    for _, cells in ipairs(self.pending) do
      for i = 1, #cols do
        local w = width(cells[i])
        if w > widths[i] then
          widths[i] = w
        end
      end
    end
    self.widths = widths
    local head = {}
    for i, c in ipairs(cols) do
      head[i] = pad(c[1], i < #cols and widths[i] or 0, c.right)
    end
    local ok, err = self:write(concat(head, "  ") .. "\n")
    if not ok then
      return nil, err
    end
  end
  local out = {}
  for _, cells in ipairs(self.pending) do
    local line = {}
    for i, c in ipairs(cols) do
      line[i] = pad(cells[i], i < #cols and widths[i] or 0, c.right)
    end
    out[#out + 1] = concat(line, "  ") .. "\n"
  end
  self.pending = {}
  return self:write(concat(out))
end

function writer:row(rec)
  self.count = self.count + 1
  local f = self.format
  if f == "jsonl" then
    return self:write(self.object(rec) .. "\n")
  elseif f == "json" then
    -- an array written as it goes: "[" before the first row, "]" by finish()
    return self:write((self.count == 1 and "[\n" or ",\n") .. self.object(rec))
  elseif f == "csv" then
    local values = {}
    for i, k in ipairs(self.keys) do
      values[i] = rec[k]
    end
    return self:write(csv_line(values, #self.keys))
  end
  local cells = {}
  for i, c in ipairs(self.cols) do
    cells[i] = self.cell(rec, c[2])
  end
  self.pending[#self.pending + 1] = cells
  if #self.pending >= 100 then
    return table_flush(self)
  end
  return true
end

function writer:flush()
  if self.format == "table" and #self.pending > 0 then
    local ok, err = table_flush(self)
    if not ok then
      return nil, err
    end
  end
  self.fh:flush()
  return true
end

--- finish() -> true | nil, err: the rows held for the table written, a JSON array closed
function writer:finish()
  if self.format == "json" then
    local ok, err = self:write(self.count == 0 and "[]\n" or "\n]\n")
    if not ok then
      return nil, err
    end
  end
  return self:flush()
end

--- new("jsonl"|"json"|"csv"|"table", fh) -> a writer of records; CSV writes its header at once
function M.new(fmt, fh)
  local w = setmetatable({ format = fmt, fh = fh, count = 0, pending = {}, cols = M.TABLE, cell = cell,
                           keys = M.FIELDS, object = M.json_object }, writer)
  if fmt == "csv" then
    w:write(csv_line(M.FIELDS))
  end
  return w
end

------------------------------------------------------------------------
-- Any rows: columns = { { "TITLE", "key" [, right = true] }, ... }. CSV's
-- header and JSON's keys are the keys, in that order; the table's the titles.
------------------------------------------------------------------------

--- json_fields(t, keys) -> a JSON object with those keys, in that order (nil ones left out)
function M.json_fields(t, keys)
  return json_value(t, { order = keys, only = true, ids = IDS })
end

local function plain_cell(t, key)
  local v = t[key]
  if v == nil then
    return ""
  end
  local s = type(v) == "string" and v or json_value(v)
  return (gsub(s, "%c", "?"))
end

--- rows(format, fh, columns) -> a writer of rows; CSV writes its header at once
function M.rows(fmt, fh, columns)
  local keys = {}
  for i, c in ipairs(columns) do
    keys[i] = c[2]
  end
  local w = setmetatable({ format = fmt, fh = fh, count = 0, pending = {}, cols = columns, cell = plain_cell,
                           keys = keys, object = function(t) return M.json_fields(t, keys) end }, writer)
  if fmt == "csv" then
    w:write(csv_line(keys))
  end
  return w
end

--- object(format, fh, t, columns) -> true | nil, err: one result; JSON is one
-- object (not an array), JSON lines one line, CSV a header and a row
function M.object(fmt, fh, t, columns)
  local w = M.rows(fmt == "json" and "jsonl" or fmt, fh, columns)
  local ok, err = w:row(t)
  if not ok then
    return nil, err
  end
  return w:finish()
end

M.FORMATS = { "table", "csv", "json", "jsonl" }

M.json_value = json_value
return M
