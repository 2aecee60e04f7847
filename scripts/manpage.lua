-- Writes clicktocall(1), the man page, to stdout: rendered from the command's
-- own argparse parser (clicktocall.cli.build_parser), so the page and `--help`
-- are one text. `make install` runs it; spec/cli_e2e_spec.lua checks it.
--   lua5.4 scripts/manpage.lua > clicktocall.1
-- From a checkout it loads the modules beside it, as bin/clicktocall does.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local root = here .. "/.."
local build = rawget(_G, "jit") and "luajit" or _VERSION:match("(%d+%.%d+)")
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/" .. build .. "/?.so;" .. package.cpath

local cli = require "clicktocall.cli"

local gsub, match, format = string.gsub, string.match, string.format
local concat = table.concat

-- roff: a backslash is \e, every dash \- (so options copy and paste as typed),
-- and a line may not start with a control character
local function esc(s)
  s = gsub(gsub(s, "\\", "\\e"), "%-", "\\-")
  return (gsub(gsub(s, "^([.'])", "\\&%1"), "\n([.'])", "\n\\&%1"))
end

-- text for filling: one paragraph a blank-line-separated block, lines joined
local function paragraphs(text)
  local out = {}
  for block in (gsub(text or "", "\r", "") .. "\n\n"):gmatch("(.-)\n%s*\n") do
    if match(block, "%S") then
      out[#out + 1] = block
    end
  end
  return out
end

local function filled(block)
  return esc((gsub(gsub(block, "^%s+", ""), "\n%s*", "\n")))
end

local function literal(block)
  return ".nf\n.RS 2\n" .. esc((gsub(block, "\n%s%s", "\n"):gsub("^%s%s", ""))) .. "\n.RE\n.fi"
end

-- an epilog: "Examples:" blocks verbatim, other paragraphs filled; the note
-- on the global options each command's --help ends with is the page's OPTIONS
local function epilog(text, out)
  for _, block in ipairs(paragraphs(text)) do
    local head, body = match(block, "^(%u[%w ]-):\n(.*)$")
    if head then
      out[#out + 1] = ".PP\n.B " .. esc(head) .. "\n" .. literal(body)
    elseif not match(block, "^Global options") then
      out[#out + 1] = ".PP\n" .. filled(block)
    end
  end
end

local function label(element)
  local list = element:_get_argument_list()
  local args = #list > 0 and (" \\fI" .. esc(concat(list, " ")) .. "\\fR") or ""
  local names = {}
  for i, alias in ipairs(element._public_aliases or { element._name }) do
    names[i] = "\\fB" .. esc(alias) .. "\\fR" .. args
  end
  return concat(names, ", ")
end

local function elements(list, out, with_help)
  for _, e in ipairs(list) do
    if not e._hidden and (with_help or e._name ~= "-h") then
      local name = e._public_aliases and label(e) or ("\\fI" .. esc(e._name) .. "\\fR")
      out[#out + 1] = ".TP\n" .. name .. "\n" .. filled(e:_get_description())
    end
  end
end

local function usage(parser)
  return ".nf\n" .. esc((gsub(gsub(parser:get_usage(), "^Usage: ", ""), "\n%s+", "\n    "))) .. "\n.fi"
end

local function command(c, out)
  if c._hidden then
    return
  end
  out[#out + 1] = ".SS " .. esc(c:_get_fullname(true))
  out[#out + 1] = usage(c)
  out[#out + 1] = ".PP\n" .. filled(c._description or c:_get_description())
  elements(c._arguments, out)
  elements(c._options, out)
  epilog(c._epilog, out)
  for _, sub in ipairs(c._commands) do
    command(sub, out)
  end
end

local p = cli.build_parser()
local out = {}
out[#out + 1] = format('.TH CLICKTOCALL 1 "" "clicktocall %s" "User Commands"', esc(cli._VERSION))
out[#out + 1] = ".SH NAME\nclicktocall \\- " .. esc("a click-to-call provider's API from the shell: seats, dials, " ..
  "balance, call records, recordings")
out[#out + 1] = ".SH SYNOPSIS\n" .. usage(p)
out[#out + 1] = ".SH DESCRIPTION\n" .. filled(p._description)
out[#out + 1] = ".SH OPTIONS"
elements(p._options, out, true)
out[#out + 1] = ".SH COMMANDS"
for _, c in ipairs(p._commands) do
  command(c, out)
end
-- the overview's epilog: a section a paragraph, titled by its first words
for _, block in ipairs(paragraphs(p._epilog)) do
  local title = match(block, "^(%u[%w ]-)[:(]")
  if title and not match(block, "^Run ") then
    out[#out + 1] = ".SH " .. esc(title:upper():gsub("%s+$", "")) .. "\n" .. filled(block)
  else
    out[#out + 1] = ".SH NOTES\n" .. filled(block)
  end
end
out[#out + 1] = ".SH SEE ALSO\n" .. esc("clicktocall COMMAND --help; docs/CLI.md and README.md of clicktocall.")
io.stdout:write(concat(out, "\n"), "\n")
