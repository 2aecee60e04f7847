-- The docs cannot drift from the code: docs/API.md documents every option clicktocall.new accepts, every
-- public method of the client and of the module, every error kind and field, every field of an on_event
-- event and every member of the mock; the README's contents list every section; and no doc of the
-- repository links to a file the repository does not have.
local clicktocall = require "clicktocall"
local errors = require "clicktocall.errors"
local options = require "clicktocall.options"
local mock = require "clicktocall.mock"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end

local function lines(cmd)
  local p = assert(io.popen("unset LD_PRELOAD; " .. cmd))
  local out = {}
  for line in p:lines() do
    out[#out + 1] = line
  end
  p:close()
  return out
end

-- GitHub's anchor of a heading: lower case, only letters, digits, spaces, "-" and "_"; spaces become "-"
local function anchor(heading)
  return (heading:lower():gsub("[^%w%s_-]", ""):gsub("%s", "-"))
end

-- the text of the "## <title>" section of a markdown document, up to the next "## " heading
local function section(doc, title)
  local start = doc:find("\n## " .. title .. "\n", 1, true)
  assert(start, "no section '## " .. title .. "'")
  local stop = doc:find("\n## ", start + 4, true)
  return doc:sub(start, stop or #doc)
end

-- names of the `name = true` members of a `local <var> = { ... }` table in a Lua source
local function table_keys(source, var)
  local body = source:match("\nlocal " .. var .. " = (%b{})")
  assert(body, "no table " .. var)
  local keys = {}
  for k in body:gmatch("([%a_][%w_]*)%s*=%s*true") do
    keys[#keys + 1] = k
  end
  table.sort(keys)
  return keys
end

local function documented_row(text, name)
  return text:find("| `" .. name .. "` |", 1, true) ~= nil
    or text:find("| `" .. name .. "`, ", 1, true) ~= nil
    or text:find(", `" .. name .. "` |", 1, true) ~= nil
    or text:find(", `" .. name .. "`, ", 1, true) ~= nil
end

describe("docs/API.md", function()
  local api = read("docs/API.md")

  it("documents every option clicktocall.new accepts, with a type and a default", function()
    local names = table_keys(read("lua/clicktocall/options.lua"), "KNOWN")
    assert.is_true(#names >= 24, "found only " .. #names .. " options in options.lua")
    local new = section(api, "clicktocall.new")
    for _, name in ipairs(names) do
      -- the parse of options.lua is right: the library takes the name (the value is wrong on purpose)
      local probe = { base_url = "https://x", app_secret = "s" }
      probe[name] = {}
      local why = options.check(probe)
      assert.is_nil((why or ""):find("unknown option", 1, true), name .. ": " .. tostring(why))
      local row = new:match("\n| `" .. name .. "` |([^\n]*)")
      assert.truthy(row, "docs/API.md's clicktocall.new has no row for option " .. name)
      local ty, default, meaning = row:match("^%s*([^|]-)%s*|%s*([^|]-)%s*|%s*(.-)%s*|$")
      assert.truthy(ty ~= nil and ty ~= "" and default ~= "" and meaning ~= "", "incomplete row for " .. name)
    end
  end)

  it("gives each option's default as options.lua and core.DEFAULTS have it", function()
    local new = section(api, "clicktocall.new")
    for name, value in pairs(options.DEFAULTS) do
      local default = new:match("\n| `" .. name .. "` |[^|]*| ([^|]*) |")
      assert.truthy(default, "no default for " .. name)
      local shown = type(value) == "string" and ('"' .. value .. '"') or string.format("%.14g", value)
      assert.truthy(default:find("`" .. shown .. "`", 1, true), name .. ": docs say " .. default .. ", code " .. shown)
    end
  end)

  it("has a section for every public method of the client and of the module", function()
    local client = assert(clicktocall.new { base_url = "http://x", app_secret = "s", user_data = "u" })
    local methods = {}
    for name, v in pairs(getmetatable(client)) do
      if type(v) == "function" and not name:find("^__") then
        methods[#methods + 1] = "client:" .. name
      end
    end
    client:close()
    for name, v in pairs(clicktocall) do
      if type(v) == "function" then
        methods[#methods + 1] = "clicktocall." .. name
      end
    end
    table.sort(methods)
    assert.is_true(#methods >= 13, table.concat(methods, " "))
    for _, m in ipairs(methods) do
      assert.truthy(api:find("\n## " .. m .. "\n", 1, true), "docs/API.md has no section '## " .. m .. "'")
      local s = section(api, m)
      assert.truthy(s:find("`syntax: ", 1, true), m .. " has no syntax line")
      assert.truthy(s:find("```lua", 1, true), m .. " has no example")
      assert.truthy(s:find("Returns:", 1, true) or s:find("returns", 1, true), m .. " does not say what it returns")
    end
  end)

  it("documents every error kind and every field of the error object", function()
    local s = section(api, "The error object")
    for kind in pairs(errors.KINDS) do
      assert.truthy(documented_row(s, kind), "no row for kind " .. kind)
    end
    local e = errors.new("network", "m", { status = 500, code = 7, code_name = "CURLE_X", retry_after = 1 })
    local fields = { "cause", "field", "may_have_rung" }
    for k in pairs(e) do
      fields[#fields + 1] = k
    end
    for _, f in ipairs(fields) do
      assert.truthy(documented_row(s, f), "no row for error field " .. f)
    end
  end)

  it("documents every field an on_event event can carry, op included", function()
    local s = section(api, "Events (on_event)")
    local fields, n = { op = true }, 0
    for _, file in ipairs(lines("find lua -name '*.lua' | sort")) do
      for body in read(file):gmatch("emit%(%s*[%w_.]+%s*,%s*(%b{})%)") do
        for k in body:gmatch("([%a_][%w_]*)%s*=[^=]") do
          fields[k] = true
        end
        n = n + 1
      end
    end
    assert.is_true(n >= 3, "found only " .. n .. " events in lua/")
    for f in pairs(fields) do
      assert.truthy(documented_row(s, f), "no row for event field " .. f)
    end
  end)

  it("documents every option and member of clicktocall.mock", function()
    local s = section(api, "clicktocall.mock")
    for _, name in ipairs(table_keys(read("lua/clicktocall/mock.lua"), "KNOWN_OPTIONS")) do
      assert.truthy(documented_row(s, name), "no row for mock option " .. name)
    end
    local provider = mock.new {}
    for name, v in pairs(getmetatable(provider).__index) do
      if type(v) == "function" and not name:find("^_") then
        assert.truthy(s:find("provider:" .. name .. "(", 1, true), "mock method " .. name .. " is not documented")
      end
    end
    for name, v in pairs(provider) do
      if not name:find("^_") and type(v) ~= "nil" then
        assert.truthy(s:find("provider." .. name, 1, true), "mock member " .. name .. " is not documented")
      end
    end
  end)

  it("links its contents to its own sections", function()
    local contents = section(api, "Contents")
    local headings = {}
    for h in api:gmatch("\n##+ ([^\n]+)") do
      headings[anchor(h)] = true
    end
    local n = 0
    for target in contents:gmatch("%]%(#([^)]+)%)") do
      assert.truthy(headings[target], "docs/API.md's contents link to #" .. target .. ", which no heading has")
      n = n + 1
    end
    for h in api:gmatch("\n## ([^\n]+)") do
      if h ~= "Contents" then
        assert.truthy(contents:find("(#" .. anchor(h) .. ")", 1, true), "contents lack " .. h)
      end
    end
    assert.is_true(n >= 20)
  end)
end)

describe("README.md", function()
  local readme = read("README.md")

  it("has contents that list every section and link to it", function()
    local contents = section(readme, "Contents")
    local anchors = {}
    for h in readme:gmatch("\n##+ ([^\n]+)") do
      anchors[anchor(h)] = true
    end
    for target in contents:gmatch("%]%(#([^)]+)%)") do
      assert.truthy(anchors[target], "README's contents link to #" .. target .. ", which no heading has")
    end
    for h in readme:gmatch("\n## ([^\n]+)") do
      if h ~= "Contents" then
        assert.truthy(contents:find("(#" .. anchor(h) .. ")", 1, true), "README's contents lack " .. h)
      end
    end
  end)

  it("points at the API reference in the repository", function()
    assert.truthy(readme:find("(docs/API.md)", 1, true))
  end)
end)

describe("docs/CLI.md", function()
  local doc = read("docs/CLI.md")

  it("names every flag of the command line, global and per command", function()
    local parser = require("clicktocall.cli").build_parser()
    local missing = {}
    local function check(opts)
      for _, o in ipairs(opts) do
        for _, alias in ipairs(o._aliases) do
          if alias:find("^%-%-") and alias ~= "--help" and not doc:find(alias:gsub("%p", "%%%0") .. "%f[^%w-]") then
            missing[#missing + 1] = alias
          end
        end
      end
    end
    check(parser._options)
    for _, c in ipairs(parser._commands) do
      check(c._options)
    end
    assert.same({}, missing)
  end)

  it("gives each command's --concurrency range as the command checks it", function()
    local source = read("lua/clicktocall/cli.lua")
    local n = 0
    for name, body in source:gmatch("\nfunction commands%.(%w+)(.-)\nend\n") do
      local min, key = body:match('"%-%-concurrency",%s*{[^}]-min = (%d+), max = LIMITS%.([%w_]+)')
      local max = key and require("clicktocall.limits")[key]
      if min then
        n = n + 1
        local text = doc:match("\n### " .. name .. "\n(.-)\n### ")
        assert.truthy(text, "docs/CLI.md has no section for " .. name)
        assert.truthy(text:find("from " .. min .. " to " .. max, 1, true),
                      name .. ": docs/CLI.md does not say --concurrency is from " .. min .. " to " .. max)
      end
    end
    assert.is_true(n >= 2, "found the --concurrency checks of only " .. n .. " commands")
  end)
end)

describe("every markdown file of the repository", function()
  local docs = lines("find . -name '*.md' -not -path './build/*' -not -path './.git/*' | sort")

  it("is found", function()
    assert.is_true(#docs >= 10, "found only " .. #docs .. " docs")
  end)

  it("has Lua examples that compile", function()
    local bad, n = {}, 0
    for _, doc in ipairs(docs) do
      for block in read(doc):gmatch("```lua\n(.-)```") do
        -- `<close>` is Lua 5.4's: elsewhere such a block is not this interpreter's to judge
        if _VERSION == "Lua 5.4" or not block:find("<close>", 1, true) then
          n = n + 1
          local ok, err = (loadstring or load)(block, "=" .. doc) -- 5.1's load takes a function
          if not ok then
            bad[#bad + 1] = err
          end
        end
      end
    end
    assert.is_true(n >= 20, "found only " .. n .. " Lua examples")
    assert.same({}, bad)
  end)

  it("links only to files the repository has", function()
    local missing = {}
    for _, doc in ipairs(docs) do
      local dir = doc:match("^(.*)/[^/]*$")
      local text = read(doc)
      local function check(target, also_root)
        target = target:gsub("#.*$", "")
        if target == "" or target:find("^%a[%w+.-]*:") then
          return -- an anchor, or a URL
        end
        if not (exists(dir .. "/" .. target) or (also_root and exists("./" .. target))) then
          missing[#missing + 1] = doc .. " -> " .. target
        end
      end
      for target in text:gmatch("%]%(([^)%s]+)%)") do
        check(target, false)
      end
      -- a doc named in code style, `docs/CLI.md` or `../shared/API.md`: relative to the doc or the root
      for target in text:gmatch("`([%w_./-]+%.md)`") do
        check(target, true)
      end
    end
    assert.same({}, missing)
  end)
end)
