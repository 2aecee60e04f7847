-- bench/wrk_post.lua: the dial request as the provider wants it, for both /ctc and /proxy.
-- luacheck: globals wrk
wrk.method = "POST"
wrk.body = '{"callerNbr":"+8613500000002","calleeNbr":"+8613918000010",' ..
           '"userData":"4e2239c5-a6e6-4201-a072-8342e29c3ae3","setingNbr":"PP1"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "VEVTVA=="
