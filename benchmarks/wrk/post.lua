-- POST one body, read from a file, on every request; at the end print the run's figures as one JSON line.
--
--   wrk -t1 -c8 -d5s -s benchmarks/wrk/post.lua URL -- BODY_FILE CONTENT_TYPE ['Name: value' ...]
--
-- The body file is sent byte for byte (JSON or binary alike: wrk's Lua strings hold any bytes), with its
-- Content-Type and any further headers given (e.g. 'Accept: application/octet-stream' or the KServe V2
-- 'Inference-Header-Content-Length: 123'). The request is built once per thread (wrk.init formats it
-- after this init), so the script costs nothing per request. The last line of stdout is
--   wrk-json: {"requests": ..., "duration_us": ..., "errors": {...}, "latency_us": {...}}
-- which benchmarks/serve_bench.py parses; errors.status counts answers with a status of 400 or more.

function init(args)
  if #args < 2 then
    error("usage: wrk ... -s post.lua URL -- BODY_FILE CONTENT_TYPE ['Name: value' ...]")
  end
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = args[2]
  for i = 3, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    if not name then
      error("header argument '" .. args[i] .. "' is not 'Name: value'")
    end
    wrk.headers[name] = value
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local p = {}
  for _, q in ipairs({50, 90, 99, 99.9}) do
    p[#p + 1] = string.format('"p%s": %d', tostring(q):gsub("%.", "_"), latency:percentile(q))
  end
  io.write(string.format(
    'wrk-json: {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"mean": %.1f, "max": %d, %s}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, table.concat(p, ", ")))
end
