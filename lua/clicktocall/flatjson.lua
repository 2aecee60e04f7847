--- clicktocall.flatjson: the JSON of the jobs' own files (archive manifest lines, the sync state).
-- Flat objects only: string, number, boolean and null values, and arrays of strings, numbers and booleans
-- (the sync state's ids); nothing nested deeper. The library has no JSON dependency (the C core reads the
-- provider's answers), and these files are ours, so this is enough.
--
--   encode(keys, t) -> '{"k":v,...}' with the keys in the order given (absent values left out; a Lua
--                      sequence is written as an array)
--   decode(s) -> table | nil, why   (numbers past 2^53 stay strings of digits, as the core gives ids)

local type = type
local tostring = tostring
local tonumber = tonumber
local char = string.char
local byte = string.byte
local find = string.find
local format = string.format
local gsub = string.gsub
local match = string.match
local sub = string.sub
local concat = table.concat
local floor = math.floor
local math_type = math.type     -- nil before 5.3
local tointeger = math.tointeger -- nil before 5.3

local _M = { _VERSION = require("clicktocall.core")._VERSION }

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function string_json(s)
  return '"' .. gsub(s, '[%c"\\]', function(c)
    return ESC[c] or format("\\u%04x", byte(c))
  end) .. '"'
end

local function number_json(n)
  if math_type and math_type(n) == "integer" then
    return tostring(n)
  end
  if n ~= n or n == math.huge or n == -math.huge then
    return "null"
  end
  if floor(n) == n and n > -2 ^ 63 and n < 2 ^ 63 then
    return format("%.0f", n)
  end
  return format("%.17g", n)
end

local function value_json(v, nested)
  local t = type(v)
  if t == "string" then
    -- an id past 2^53 (a string of digits) is written as the number it is
    if match(v, "^%d+$") and #v > 15 then
      return v
    end
    return string_json(v)
  elseif t == "number" then
    return number_json(v)
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "table" and not nested then
    local out = {}
    for i = 1, #v do
      out[i] = value_json(v[i], true)
    end
    return "[" .. concat(out, ",") .. "]"
  end
  return "null"
end

function _M.encode(keys, t)
  local out = {}
  for i = 1, #keys do
    local k = keys[i]
    if t[k] ~= nil then
      out[#out + 1] = string_json(k) .. ":" .. value_json(t[k])
    end
  end
  return "{" .. concat(out, ",") .. "}"
end

-- a string forced to keep its quotes (sessionId "12345678901234567" must stay a string)
function _M.encode_string(s)
  return string_json(s)
end

local function utf8_char(cp)
  if cp < 0x80 then
    return char(cp)
  elseif cp < 0x800 then
    return char(0xC0 + floor(cp / 64), 0x80 + cp % 64)
  end
  return char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
end

local UNESC = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

-- reads a string starting at the quote at i -> s, next index | nil
local function read_string(s, i)
  local out, j = {}, i + 1
  while true do
    local a = find(s, '["\\%c]', j)
    if not a then
      return nil
    end
    out[#out + 1] = sub(s, j, a - 1)
    local c = sub(s, a, a)
    if c == '"' then
      return concat(out), a + 1
    elseif c ~= "\\" then
      return nil -- a raw control character
    end
    local e = sub(s, a + 1, a + 1)
    if e == "u" then
      local hex = match(s, "^%x%x%x%x", a + 2)
      if not hex then
        return nil
      end
      out[#out + 1] = utf8_char(tonumber(hex, 16))
      j = a + 6
    elseif UNESC[e] then
      out[#out + 1] = UNESC[e]
      j = a + 2
    else
      return nil
    end
  end
end

-- A whole number stays exact: an integer on 5.3+, a string of digits past 2^53 elsewhere.
local function read_number(text)
  local n = tonumber(text)
  if match(text, "^%d+$") then
    if math_type then
      return math_type(n) == "integer" and n or text
    end
    if n >= 2 ^ 53 then
      return text
    end
  end
  return tointeger and tointeger(n) or n
end

-- reads a string, number, boolean or null at i -> value (nil for null), next index | why, nil
local function read_scalar(s, i)
  if sub(s, i, i) == '"' then
    local v, ni = read_string(s, i)
    if not v then
      return "a bad string", nil
    end
    return v, ni
  end
  local text, ni = match(s, "^(-?%d+%.?%d*[eE]?[-+]?%d*)()", i)
  if text and tonumber(text) then
    return read_number(text), ni
  elseif sub(s, i, i + 3) == "true" then
    return true, i + 4
  elseif sub(s, i, i + 4) == "false" then
    return false, i + 5
  elseif sub(s, i, i + 3) == "null" then
    return nil, i + 4
  end
  return "a value expected", nil
end

-- reads an array of non-null scalars at the '[' at i -> list, next index | nil, why
local function read_array(s, i)
  local list = {}
  local p = match(s, "^%[%s*%]()", i)
  if p then
    return list, p
  end
  i = i + 1
  while true do
    i = match(s, "^%s*()", i)
    local v, ni = read_scalar(s, i)
    if ni == nil then
      return nil, v
    elseif v == nil then
      return nil, "a null in an array"
    end
    list[#list + 1] = v
    local sep
    sep, i = match(s, "^%s*([,%]])()", ni)
    if not sep then
      return nil, "',' or ']' expected"
    end
    if sep == "]" then
      return list, i
    end
  end
end

function _M.decode(s)
  if type(s) ~= "string" then
    return nil, "not a string"
  end
  local i = match(s, "^%s*{()")
  if not i then
    return nil, "not a JSON object"
  end
  local t = {}
  local p = match(s, "^%s*}()", i)
  if p then
    if not match(s, "^%s*$", p) then
      return nil, "text after the object"
    end
    return t
  end
  while true do
    i = match(s, "^%s*()", i)
    if sub(s, i, i) ~= '"' then
      return nil, "a key expected"
    end
    local key
    key, i = read_string(s, i)
    if not key then
      return nil, "a bad key"
    end
    i = match(s, "^%s*:%s*()", i)
    if not i then
      return nil, "':' expected"
    end
    local v
    if sub(s, i, i) == "[" then
      v, i = read_array(s, i)
      if not v then
        return nil, i
      end
    else
      v, i = read_scalar(s, i)
      if i == nil then
        return nil, v
      end
    end
    t[key] = v
    local sep, ni = match(s, "^%s*([,}])()", i)
    if not sep then
      return nil, "',' or '}' expected"
    end
    i = ni
    if sep == "}" then
      if not match(s, "^%s*$", i) then
        return nil, "text after the object"
      end
      return t
    end
  end
end

return _M
