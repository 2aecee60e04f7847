--- bench/report.lua META RESULTS NOTES > RESULTS.md
-- Turns bench/run's raw figures ("key round value" lines) into the Markdown report:
-- medians, min-max, ratios of medians against the issue's targets with PASS/BELOW.

local meta_file, results_file, notes_file = arg[1], arg[2], arg[3]
assert(meta_file and results_file and notes_file, "usage: report.lua META RESULTS NOTES")

local function lines(path)
  local f = assert(io.open(path))
  local t = {}
  for l in f:lines() do
    t[#t + 1] = l
  end
  f:close()
  return t
end

local meta = {}
for _, l in ipairs(lines(meta_file)) do
  local k, v = l:match("^([%w_]+)=(.*)$")
  if k then
    meta[k] = v
  end
end

local series = {} -- key -> { [round] = value }
for _, l in ipairs(lines(results_file)) do
  local k, r, v = l:match("^(%S+)%s+(%d+)%s+(%S+)$")
  if k then
    series[k] = series[k] or {}
    series[k][tonumber(r)] = tonumber(v)
  end
end

local function values(key)
  local s = series[key]
  if not s then
    return nil
  end
  local t = {}
  for _, v in pairs(s) do
    t[#t + 1] = v
  end
  table.sort(t)
  return t
end

local function median(t)
  local n = #t
  if n == 0 then
    return nil
  end
  if n % 2 == 1 then
    return t[(n + 1) // 2]
  end
  return (t[n // 2] + t[n // 2 + 1]) / 2
end

local function stats(key)
  local t = values(key)
  if not t or #t == 0 then
    return nil
  end
  return { median = median(t), min = t[1], max = t[#t], n = #t }
end

local function num(v)
  if v == nil then
    return "–"
  end
  local s = string.format("%.0f", v)
  -- thousands separators
  local int, rest = s:match("^(%-?%d+)(.*)$")
  int = int:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^(%-?),", "%1")
  return int .. rest
end

local function range(st)
  if not st then
    return "–"
  end
  return num(st.min) .. " – " .. num(st.max)
end

-- ratio of medians, plus the range of the per-round ratios (the rounds alternate, so round r of A
-- and round r of B ran next to each other)
local function ratio(a, b)
  local sa, sb = stats(a), stats(b)
  if not sa or not sb or sb.median == 0 then
    return nil
  end
  local per = {}
  for r, va in pairs(series[a]) do
    local vb = series[b][r]
    if vb and vb > 0 then
      per[#per + 1] = va / vb
    end
  end
  table.sort(per)
  return sa.median / sb.median, per[1], per[#per]
end

local out = {}
local function w(...)
  out[#out + 1] = table.concat({ ... })
end

local function skipped(group)
  if meta.only and not ("," .. meta.only .. ","):find("," .. group .. ",", 1, true) then
    w("*Not run in this invocation (`--only ", meta.only, "`).*")
    w("")
  end
end

local verdicts = {}
local function target_row(what, a, b, want)
  local r, lo, hi = ratio(a, b)
  if not r then
    w("| ", what, " | ≥ ", string.format("%.2f", want), " | not measured | | |")
    verdicts[#verdicts + 1] = what .. ": not measured"
    return
  end
  local ok = r >= want
  w("| ", what, " | ≥ ", string.format("%.2f", want), " | **", string.format("%.2f", r), "** | ",
    string.format("%.2f – %.2f", lo, hi), " | ", ok and "PASS" or "BELOW", " |")
  verdicts[#verdicts + 1] = string.format("%s: %.2f (target ≥ %.2f) %s", what, r, want, ok and "PASS" or "BELOW")
end

local function table_rows(rows, unit)
  w("| contender | median ", unit, " | min – max | rounds |")
  w("|---|---:|---:|---:|")
  for _, row in ipairs(rows) do
    local st = stats(row[2])
    w("| ", row[1], " | ", st and num(st.median) or "not measured", " | ", range(st), " | ", st and st.n or 0, " |")
  end
end

w("# clicktocall benchmarks")
w("")
w("Written by `bench/run` (issue 6). Every contender runs in its own process, alternately with the others")
w("of its group (A B C A B C …), on loopback; figures are medians over the rounds with the min – max.")
w("Ratios are ratios of the medians; the column after them is the range of the per-round ratios.")
w("")
w("| | |")
w("|---|---|")
w("| date | ", meta.date or "?", " |")
w("| machine | ", meta.cpu or "?", ", ", meta.nproc or "?", " cores (", meta.kernel or "?", ", ", meta.os or "?", ") |")
w("| command | `", meta.command or "bench/run", "`", meta.quick == "1" and " (quick mode: a smoke test)" or "", " |")
w("| clicktocall | ", meta.clicktocall or "?", " |")
w("| Lua | ", meta.lua or "?", "; ", meta.luajit or "?", " |")
w("| libcurl | ", meta.libcurl or "?", " (curl ", meta.curl or "?", ") |")
w("| nginx | ", meta.nginx or "?", " |")
w("| LuaSocket | ", meta.luasocket or "?", " |")
w("| lua-cjson | ", meta.cjson or "?", " |")
w("| wrk | ", meta.wrk or "?", " |")
-- what the candidate tree is: a proposed patch (default), or e.g. the code before an optimisation
local CAND_WHAT = os.getenv("CTC_BENCH_CAND_WHAT") or "proposed patch; see below"
local CAND = os.getenv("CTC_BENCH_CAND_NAME") or "candidate"

if meta.candidate then
  w("| candidate | `", meta.candidate, "`: the same figures for clicktocall loaded from that tree (", CAND_WHAT, ") |")
end
w("")

w("## (a) Small calls, sequential, one process")
w("")
skipped("a")
w("Upstream: a static nginx (`return 200 '{...}'`, 1 worker, keepalive_requests 10,000,000). ",
  meta.small_n or "?", " calls per contender per round (one `curl` process a call: ", meta.curlproc_n or "?",
  " calls), ", meta.rounds or "?", " rounds, after 20 warm-up calls.")
w("")
for _, op in ipairs { "dial", "balance" } do
  w("### ", op)
  w("")
  table_rows({
    { "clicktocall (libcurl transport, keep-alive)", "a." .. op .. ".ctc" },
    { "clicktocall, " .. CAND .. " tree (" .. CAND_WHAT .. ")", "a." .. op .. ".cand" },
    { "C program calling libcurl directly (keep-alive; the floor)", "a." .. op .. ".raw" },
    { "the same C program, body through a non-rewindable read callback (informational)",
      "a." .. op .. ".raw_readcb" },
    { "LuaSocket `socket.http` + lua-cjson (no keep-alive: socket.http closes)", "a." .. op .. ".socket" },
    { "LuaSocket TCP, hand-written HTTP/1.1 keep-alive + lua-cjson (informational)", "a." .. op .. ".socket_ka" },
    { "one `curl` process a call", "a." .. op .. ".curlproc" },
  }, "calls/s")
  w("")
end
w("| target (a) | want | ratio | per round | |")
w("|---|---:|---:|---:|---|")
for _, op in ipairs { "dial", "balance" } do
  target_row(op .. ": clicktocall / raw libcurl", "a." .. op .. ".ctc", "a." .. op .. ".raw", 0.90)
  target_row(op .. ": clicktocall / LuaSocket+cjson", "a." .. op .. ".ctc", "a." .. op .. ".socket", 1.3)
  if series["a." .. op .. ".cand"] then
    target_row(op .. ": " .. CAND .. " / raw libcurl", "a." .. op .. ".cand", "a." .. op .. ".raw", 0.90)
    target_row(op .. ": " .. CAND .. " / LuaSocket+cjson", "a." .. op .. ".cand", "a." .. op .. ".socket", 1.3)
  end
end
for _, op in ipairs { "dial", "balance" } do
  local r = ratio("a." .. op .. ".ctc", "a." .. op .. ".raw_readcb")
  if r then
    w("| ", op, ": clicktocall / C libcurl with read callback (no target) | – | ", string.format("%.2f", r), " | | |")
  end
  r = ratio("a." .. op .. ".ctc", "a." .. op .. ".socket_ka")
  if r then
    w("| ", op, ": clicktocall / LuaSocket keep-alive (no target) | – | ", string.format("%.2f", r), " | | |")
  end
  r = ratio("a." .. op .. ".ctc", "a." .. op .. ".curlproc")
  if r then
    w("| ", op, ": clicktocall / curl process (no target) | – | ", string.format("%.1f", r), " | | |")
  end
end
w("")

w("## (b) Record streaming")
w("")
skipped("b")

w(num(tonumber(meta.rec_n)), " records (", num((tonumber(meta.rec_n) or 0) / 100),
  " pages of 100, ≈48 KB each) per contender per round, ", meta.rounds or "?",
  " rounds. The consumer loop touches each record (`rec.id`). Two upstreams:")
w("")
w("- **sim**: the simulator (`sim/run`, 1 worker) seeded with the records, as the issue specifies. It builds each ",
  "page on request (≈0.3–0.5 ms a page), so every client here also measures the simulator.")
w("- **replay**: an nginx + ngx_lua location answering with the same page bodies, fetched from the simulator ",
  "once before the rounds and kept in memory (bench/replay.lua, keyed by the maxId asked): ",
  "the upstream costs next to nothing, so the client itself is measured. The targets are judged on this one.")
w("")
table_rows({
  { "clicktocall `client:records` (libcurl transport), replay", "b.replay.ctc" },
  { "clicktocall, " .. CAND .. " tree (" .. CAND_WHAT .. "), replay", "b.replay.cand" },
  { "LuaSocket `socket.http` + lua-cjson, same paging, replay", "b.replay.socket" },
  { "clicktocall `client:records`, sim", "b.sim.ctc" },
  { "LuaSocket `socket.http` + lua-cjson, sim", "b.sim.socket" },
  { "lua-cjson decoding the same pages from memory, one at a time, per CPU second (the decode limit)", "b.decode" },
  { "lua-cjson decoding the first 10 pages, cycled, per CPU second (informational)", "b.decode_hot" },
}, "records/s")
w("")
w("| target (b) | want | ratio | per round | |")
w("|---|---:|---:|---:|---|")
target_row("replay: clicktocall / LuaSocket+cjson", "b.replay.ctc", "b.replay.socket", 2.0)
target_row("replay: clicktocall / decode limit", "b.replay.ctc", "b.decode", 0.8)
w("| replay: clicktocall / cached-pages decode (no target) | – | ",
  ratio("b.replay.ctc", "b.decode_hot") and string.format("%.2f", (ratio("b.replay.ctc", "b.decode_hot"))) or "–",
  " | | |")
if series["b.replay.cand"] then
  target_row("replay: " .. CAND .. " / LuaSocket+cjson", "b.replay.cand", "b.replay.socket", 2.0)
  target_row("replay: " .. CAND .. " / decode limit", "b.replay.cand", "b.decode", 0.8)
end
target_row("sim: clicktocall / LuaSocket+cjson", "b.sim.ctc", "b.sim.socket", 2.0)
target_row("sim: clicktocall / decode limit", "b.sim.ctc", "b.decode", 0.8)
w("")
local small, big = stats("b.rss_small"), stats("b.rss_big")
w("Peak RSS (VmHWM at the end of a fresh `lua5.4` process streaming through `client:records`):")
w("")
w("| records | peak RSS (KiB), median | min – max | runs |")
w("|---:|---:|---:|---:|")
w("| ", num(tonumber(meta.rss_small)), " | ", small and num(small.median) or "not measured", " | ", range(small), " | ",
  small and small.n or 0, " |")
w("| ", num(tonumber(meta.rss_big)), " | ", big and num(big.median) or "not measured", " | ", range(big), " | ",
  big and big.n or 0, " |")
w("")
if small and big then
  local d = big.median - small.median
  local ok = d <= 5 * 1024
  w("Growth from ", num(tonumber(meta.rss_small)), " to ", num(tonumber(meta.rss_big)), " records: **",
    string.format("%.2f MiB", d / 1024), "** (target ≤ 5 MiB): ", ok and "PASS" or "BELOW")
  verdicts[#verdicts + 1] = string.format("peak RSS growth %s -> %s records: %.2f MiB (target <= 5 MiB) %s",
    meta.rss_small, meta.rss_big, d / 1024, ok and "PASS" or "BELOW")
  if tonumber(meta.rss_big) ~= 1000000 then
    w("")
    w("(Quick mode: the large run holds ", num(tonumber(meta.rss_big)), " records, not 1,000,000.)")
  end
end
w("")

w("## (c) OpenResty: transport \"ngx\" vs proxy_pass")
w("")
skipped("c")
w("One nginx worker with ngx_lua (LuaJIT core from `make LUA_VERSION=luajit`) in front of the static upstream: ",
  "`/ctc` dials through a `clicktocall.new{ transport = \"ngx\" }` client made once per worker (init_worker), ",
  "`/proxy` proxy_passes the same POST to the same upstream (upstream keepalive 64, HTTP/1.1). ",
  "`wrk -t1 -c", meta.wrk_conns or "?", " -d", meta.wrk_seconds or "?", "s` with the dial POST, ",
  meta.rounds or "?", " rounds alternating.")
w("")
table_rows({
  { "location dialing through clicktocall, transport \"ngx\"", "c.ctc" },
  { "location dialing through the " .. CAND .. " tree's clicktocall (" .. CAND_WHAT .. ")", "c.cand" },
  { "location with proxy_pass to the same upstream", "c.proxy" },
}, "requests/s")
w("")
w("| target (c) | want | ratio | per round | |")
w("|---|---:|---:|---:|---|")
target_row("transport ngx / proxy_pass", "c.ctc", "c.proxy", 0.8)
if series["c.cand"] then
  target_row(CAND .. ": transport ngx / proxy_pass", "c.cand", "c.proxy", 0.8)
end
w("")

local notes = lines(notes_file)
if #notes > 0 then
  w("## Notes from this run")
  w("")
  for _, l in ipairs(notes) do
    w(l:match("^%s") and l or ("- " .. l))
  end
  w("")
end

w("## Summary")
w("")
for _, v in ipairs(verdicts) do
  w("- ", v)
end
w("")

-- the hand-written profile analysis (bench/PROFILE.md), kept next to the figures it explains
local prof = io.open((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/PROFILE.md")
if prof then
  w(prof:read("a"))
  prof:close()
end

io.write(table.concat(out, "\n"), "\n")
