-- Several request kinds sent in turn for wrk's -d duration; at the end one JSON line of figures.
--
--   wrk -t1 -cN -dSECONDS -s benchmarks/wrk/mix.lua URL -- PATH CONTENT_TYPE BODY_FILE [PATH CONTENT_TYPE BODY_FILE ...]
--
-- Each (PATH, CONTENT_TYPE, BODY_FILE) triple is one request kind, POSTed with its body byte for byte; the
-- kinds are sent in turn (give a kind twice to send it twice as often). The requests are formatted once,
-- in init. Answers are counted by status. (wrk 4.1's thread:stop() leaves the run waiting out -d and can
-- crash in done(), so the run is bounded by its duration only; benchmarks/soak.py sizes it.) The last line
-- of stdout is
--   wrk-json: {"requests": ..., "duration_us": ..., "bytes": ..., "errors": {...}, "latency_us": {...},
--              "statuses": {"200": ...}}
-- (benchmarks/wrk/report.lua) which benchmarks/soak.py parses.

local report = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

local requests_by_kind = {}
local next_kind = 0
statuses = {}

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  if #args < 3 or #args % 3 ~= 0 then
    error("usage: wrk ... -s mix.lua URL -- PATH CONTENT_TYPE BODY_FILE [...]")
  end
  for i = 1, #args, 3 do
    local f = assert(io.open(args[i + 2], "rb"))
    local body = f:read("*a")
    f:close()
    table.insert(requests_by_kind, wrk.format("POST", args[i], {["Content-Type"] = args[i + 1]}, body))
  end
end

function request()
  local k = next_kind % #requests_by_kind + 1
  next_kind = next_kind + 1
  return requests_by_kind[k]
end

function response(status, headers, body)
  local s = tostring(status)
  statuses[s] = (statuses[s] or 0) + 1
end

function done(summary, latency, requests)
  local all = {}
  for _, thread in ipairs(threads) do
    for s, n in pairs(thread:get("statuses")) do
      all[s] = (all[s] or 0) + n
    end
  end
  local parts = {}
  for s, n in pairs(all) do
    parts[#parts + 1] = string.format('"%s": %d', s, n)
  end
  report.write(summary, latency, string.format('"statuses": {%s}', table.concat(parts, ", ")))
end
