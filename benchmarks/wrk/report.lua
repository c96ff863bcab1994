-- The last line of stdout of every wrk script here: the run's figures as one JSON object after "wrk-json: ",
--   wrk-json: {"requests": ..., "duration_us": ..., "bytes": ..., "errors": {...}, "latency_us": {...}[, ...]}
-- parsed by benchmarks/serve_bench.py and benchmarks/soak.py; errors.status counts answers of status >= 400.
-- A script loads it with `dofile(<the folder of its own source> .. "report.lua")` and calls
-- report.write(summary, latency, extra) in its done(); extra is further '"name": value' members, or "".

local M = {}

function M.write(summary, latency, extra)
  local e = summary.errors
  local p = {}
  for _, q in ipairs({50, 90, 99, 99.9}) do
    p[#p + 1] = string.format('"p%s": %d', (tostring(q):gsub("%.", "_")), latency:percentile(q))
  end
  io.write(string.format(
    'wrk-json: {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"mean": %.1f, "max": %d, %s}%s}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, table.concat(p, ", "), extra ~= "" and ", " .. extra or ""))
end

return M
