-- wrk script for bench/run.mjs. Configured by the environment:
--   WRK_METHOD      HTTP method (default GET)
--   WRK_AUTH        value of the Authorization header (optional)
--   WRK_BODY_FILE   a file whose content is sent as a JSON body (optional)
-- At the end it prints one line, `BENCH_JSON {...}`, that the driver parses: requests, duration
-- (us), bytes, errors by kind, and latency percentiles in microseconds.

wrk.method = os.getenv("WRK_METHOD") or "GET"

local auth = os.getenv("WRK_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

local body_file = os.getenv("WRK_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99), latency.max))
end
