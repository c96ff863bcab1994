-- POST one body, read from a file, on every request; at the end print the run's figures as one JSON line.
--
--   wrk -t1 -c8 -d5s -s benchmarks/wrk/post.lua URL -- BODY_FILE CONTENT_TYPE ['Name: value' ...]
--
-- The body file is sent byte for byte (JSON or binary alike: wrk's Lua strings hold any bytes), with its
-- Content-Type and any further headers given (e.g. 'Accept: application/octet-stream' or the KServe V2
-- 'Inference-Header-Content-Length: 123'). The request is built once per thread (wrk.init formats it
-- after this init), so the script costs nothing per request. The last line of stdout is
--   wrk-json: {"requests": ..., "duration_us": ..., "errors": {...}, "latency_us": {...}}
-- (benchmarks/wrk/report.lua) which benchmarks/serve_bench.py parses.

local report = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

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
  report.write(summary, latency, "")
end
