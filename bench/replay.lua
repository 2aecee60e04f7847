--- bench/replay.lua: an upstream that answers POST /call/record/voice with record pages fetched
-- from the simulator beforehand (bench/records.lua dump), kept in memory, keyed by the maxId asked.
-- It takes the simulator's own cost out of the record-streaming figures: the client is measured.
--   init_by_lua_block    { require("replay").load("/path/to/pages") }
--   content_by_lua_block { require("replay").serve() }
local _M = {}

local pages = {}

function _M.load(path)
  local f = assert(io.open(path, "rb"))
  local n = 0
  while true do
    local head = f:read("*l")
    if not head then
      break
    end
    local max_id, len = head:match("^(%d+) (%d+)$")
    local body = f:read(tonumber(len))
    f:read("*l")
    pages[tonumber(max_id)] = body
    n = n + 1
  end
  f:close()
  return n
end

local EMPTY = '{"meta":{"success":true,"message":"ok"},"data":[]}'

function _M.serve()
  ngx.req.read_body()
  local body = ngx.req.get_body_data() or ""
  local max_id = tonumber(body:match('"maxId":%s*"?(%d+)')) or 0
  ngx.header["Content-Type"] = "application/json;charset=UTF-8"
  ngx.print(pages[max_id] or EMPTY)
end

return _M
