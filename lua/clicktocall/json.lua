--- clicktocall.json: the JSON the library writes and reads itself, in pure Lua (5.1-5.4, LuaJIT): the archive
-- manifest, the sync state, the CLI's JSON lines, the mock's answers and the request bodies it reads. The
-- provider's answers are read by the C core's decoder, not here.
--
--   encode(v [, how]) -> text   a string, number, boolean, json.null, or a table: an array when it is a
--                               non-empty sequence or empty (json.object({}) for {}), an object otherwise.
--     how.order = { k, ... }    objects' keys in this order first, the others after by name
--     how.only = true           the outer object holds only the keys in how.order
--     how.ids = { f = true }    an id field: a string of digits past 15 characters (an id past 2^53 on
--                               LuaJIT) is written as the number it is, alone or in an array
--   decode(s) -> table | nil, why   an object or an array; a whole number stays exact (an integer on 5.3+, a
--                                   string of digits past 2^53 elsewhere); null is left out of an object
--                                   and is json.null in an array

local type = type
local next = next
local pairs = pairs
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local getmetatable = getmetatable
local char = string.char
local byte = string.byte
local find = string.find
local format = string.format
local gsub = string.gsub
local match = string.match
local sub = string.sub
local concat = table.concat
local sort = table.sort
local floor = math.floor
local huge = math.huge
local EXACT = require("clicktocall.limits").exact_double -- 2^53
local math_type = math.type     -- nil before 5.3
local tointeger = math.tointeger -- nil before 5.3

local _M = { _VERSION = require "clicktocall.version" }

-- written as null; what a caller puts where JSON has null
_M.null = setmetatable({}, { __tostring = function() return "json.null" end })

local OBJECT = {}

--- object(t) -> t, written as an object even when empty
function _M.object(t)
  return setmetatable(t, OBJECT)
end

--------------------------------------------------------------------------
-- the writer
--------------------------------------------------------------------------

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r",
              ["\t"] = "\\t" }

local function escape(c)
  return ESC[c] or format("\\u%04x", byte(c))
end

local function string_json(s)
  if not find(s, '[%c"\\]') then
    return '"' .. s .. '"' -- nothing to escape: the common case
  end
  return '"' .. gsub(s, '[%c"\\]', escape) .. '"'
end

local function number_json(n)
  if math_type and math_type(n) == "integer" then
    return tostring(n)
  elseif n ~= n or n == huge or n == -huge then
    return "null"
  elseif floor(n) == n and n > -2 ^ 63 and n < 2 ^ 63 then
    return format("%.0f", n)
  end
  local s = format("%.14g", n) -- the shortest that reads back the same, where it does
  if tonumber(s) ~= n then
    s = format("%.17g", n)
  end
  return s
end

local value_json

-- a digit string in an id field is an id past 2^53 on LuaJIT: a number in JSON
local function id_json(v)
  if type(v) == "string" and #v > 15 and match(v, "^[1-9]%d*$") then
    return v
  end
  return value_json(v)
end

local function id_list_json(v)
  if type(v) ~= "table" or getmetatable(v) == OBJECT or (v[1] == nil and next(v) ~= nil) then
    return id_json(v)
  end
  local out = {}
  for i = 1, #v do
    out[i] = id_json(v[i])
  end
  return "[" .. concat(out, ",") .. "]"
end

local function field_json(k, v, how)
  local ids = how and how.ids
  return string_json(k) .. ":" .. (ids and ids[k] and id_list_json(v) or value_json(v, how, true))
end

local function object_json(t, how, nested)
  local out = {}
  local order = how and how.order
  local seen
  if order then
    seen = {}
    for i = 1, #order do
      local k = order[i]
      seen[k] = true
      if t[k] ~= nil then
        out[#out + 1] = field_json(k, t[k], how)
      end
    end
    if how.only and not nested then
      return "{" .. concat(out, ",") .. "}"
    end
  end
  local rest = {}
  for k in pairs(t) do
    if not (seen and seen[k]) then
      rest[#rest + 1] = tostring(k)
    end
  end
  sort(rest)
  for i = 1, #rest do
    local k = rest[i]
    local v = t[k]
    if v == nil then
      v = t[tonumber(k)]
    end
    out[#out + 1] = field_json(k, v, how)
  end
  return "{" .. concat(out, ",") .. "}"
end

value_json = function(v, how, nested)
  local t = type(v)
  if t == "string" then
    return string_json(v)
  elseif t == "number" then
    return number_json(v)
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "table" and v ~= _M.null then
    if getmetatable(v) ~= OBJECT and (v[1] ~= nil or next(v) == nil) then
      local out = {}
      for i = 1, #v do
        out[i] = value_json(v[i], how, true)
      end
      return "[" .. concat(out, ",") .. "]"
    end
    return object_json(v, how, nested)
  end
  return "null"
end

--- encode(v [, how]) -> JSON text (see the header)
function _M.encode(v, how)
  return value_json(v, how)
end

--------------------------------------------------------------------------
-- the reader
--------------------------------------------------------------------------

local MAX_DEPTH = 100

local function utf8_char(cp)
  if cp < 0x80 then
    return char(cp)
  elseif cp < 0x800 then
    return char(0xC0 + floor(cp / 64), 0x80 + cp % 64)
  elseif cp < 0x10000 then
    return char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64, 0x80 + floor(cp / 64) % 64,
              0x80 + cp % 64)
end

local UNESC = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

-- the string whose quote is at i -> s, next index | nil, why
local function read_string(s, i)
  local out, j = {}, i + 1
  while true do
    local a = find(s, '["\\%c]', j)
    if not a then
      return nil, "an unterminated string"
    end
    out[#out + 1] = sub(s, j, a - 1)
    local c = sub(s, a, a)
    if c == '"' then
      return concat(out), a + 1
    elseif c ~= "\\" then
      return nil, "a control character in a string"
    end
    local e = sub(s, a + 1, a + 1)
    j = a + 2
    if e == "u" then
      local cp = tonumber(match(s, "^%x%x%x%x", j) or "", 16)
      if not cp then
        return nil, "a bad \\u escape"
      end
      j = j + 4
      if cp >= 0xD800 and cp < 0xDC00 then -- a UTF-16 pair: the low half must follow
        local lo = tonumber(match(s, "^\\u(%x%x%x%x)", j) or "", 16)
        if not lo or lo < 0xDC00 or lo > 0xDFFF then
          return nil, "a lone surrogate"
        end
        cp = 0x10000 + (cp - 0xD800) * 1024 + (lo - 0xDC00)
        j = j + 6
      elseif cp >= 0xDC00 and cp < 0xE000 then
        return nil, "a lone surrogate"
      end
      out[#out + 1] = utf8_char(cp)
    elseif UNESC[e] then
      out[#out + 1] = UNESC[e]
    else
      return nil, "a bad escape"
    end
  end
end

-- A whole number stays exact: an integer on 5.3+, a string of digits past 2^53 elsewhere.
local function read_number(s, i)
  local int, frac, exp, ni = match(s, "^(-?%d+)(%.?%d*)([eE]?[-+]?%d*)()", i)
  if not int or match(int, "^-?0%d") or frac == "." or (exp ~= "" and not match(exp, "%d$")) then
    return nil, "a bad number"
  end
  local text = int .. frac .. exp
  local n = tonumber(text)
  if frac == "" and exp == "" then
    if math_type then
      if math_type(n) ~= "integer" and match(text, "^%d+$") then
        return text, ni -- past 2^63
      end
    elseif n >= EXACT then
      return text, ni
    end
  end
  return tointeger and tointeger(n) or n, ni
end

local read_value

-- the object or array whose bracket is at i -> table, next index | nil, why
local function read_container(s, i, depth)
  if depth > MAX_DEPTH then
    return nil, "nested too deep"
  end
  local object = sub(s, i, i) == "{"
  local close = object and "}" or "]"
  local t, n = {}, 0
  i = match(s, "^[ \t\r\n]*()", i + 1)
  if sub(s, i, i) == close then
    return t, i + 1
  end
  while true do
    local k, v, why
    if object then
      if sub(s, i, i) ~= '"' then
        return nil, "a key expected"
      end
      k, i = read_string(s, i)
      if not k then
        return nil, i
      end
      i = match(s, "^[ \t\r\n]*:[ \t\r\n]*()", i)
      if not i then
        return nil, "':' expected"
      end
    end
    v, i, why = read_value(s, i, depth)
    if i == nil then
      return nil, why
    end
    if object then
      t[k] = v
    else
      n = n + 1
      t[n] = v == nil and _M.null or v
    end
    local sep
    sep, i = match(s, "^[ \t\r\n]*([,%]}])[ \t\r\n]*()", i)
    if sep == close then
      return t, i
    elseif sep ~= "," then
      return nil, "',' or '" .. close .. "' expected"
    end
  end
end

-- the value at i -> value (nil for null), next index | nil, nil, why
read_value = function(s, i, depth)
  local c = sub(s, i, i)
  local v, ni
  if c == '"' then
    v, ni = read_string(s, i)
  elseif c == "{" or c == "[" then
    v, ni = read_container(s, i, depth + 1)
  elseif sub(s, i, i + 3) == "true" then
    return true, i + 4
  elseif sub(s, i, i + 4) == "false" then
    return false, i + 5
  elseif sub(s, i, i + 3) == "null" then
    return nil, i + 4
  else
    v, ni = read_number(s, i)
  end
  if v == nil then
    return nil, nil, ni
  end
  return v, ni
end

--- decode(s) -> table | nil, why (see the header)
function _M.decode(s)
  if type(s) ~= "string" then
    return nil, "not a string"
  end
  local i = match(s, "^[ \t\r\n]*()[{%[]")
  if not i then
    return nil, "not a JSON object or array"
  end
  local v, ni = read_container(s, i, 1)
  if not v then
    return nil, ni
  end
  if not match(s, "^[ \t\r\n]*$", ni) then
    return nil, "text after the JSON"
  end
  return v
end

return _M
