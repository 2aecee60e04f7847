std = "max"
max_line_length = 120
codes = true
-- ngx is the OpenResty API, present only inside nginx
local ngx_std = "max+ngx_lua"
files["lua/clicktocall/transport/ngx.lua"] = { std = ngx_std }
files["lua/clicktocall/dial_guard.lua"] = { std = ngx_std }
files["sim"] = { std = ngx_std }
files["bench"] = { std = ngx_std }
files["spec"] = { std = "max+busted", read_globals = { "ngx" } }
-- (after "spec": its read-only ngx would forbid ngx.status = ..., which ngx_lua allows)
files["spec/nginx"] = { std = ngx_std, globals = { "ngx" } }
