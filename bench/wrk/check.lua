-- One row of `chat bench http` (bench/http.py) for wrk: the request comes from BENCH_*
-- variables, every response is checked, and `done` prints one line for the driver.
--   BENCH_METHOD, BENCH_PATH, BENCH_COOKIE; for a POST also BENCH_CSRF, BENCH_ORIGIN and
--   BENCH_POST_PREFIX (each post's body is "PREFIX THREAD-N", unique, so the driver
--   can count them in SQL afterwards).
--   BENCH_PRESENT / BENCH_ABSENT: strings, one a line, that every response's body must
--   (must not) contain; BENCH_STATUS: the status it must have (200).

local function lines(text)
  local found = {}
  for line in string.gmatch(text or "", "[^\n]+") do
    found[#found + 1] = line
  end
  return found
end

local present = lines(os.getenv("BENCH_PRESENT"))
local absent = lines(os.getenv("BENCH_ABSENT"))
local expected_status = tonumber(os.getenv("BENCH_STATUS") or "200")
local post_prefix = os.getenv("BENCH_POST_PREFIX")

wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.path = os.getenv("BENCH_PATH") or "/"
wrk.headers["Cookie"] = os.getenv("BENCH_COOKIE")
if wrk.method == "POST" then
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["HX-Request"] = "true"
  wrk.headers["X-CSRF-Token"] = os.getenv("BENCH_CSRF")
  wrk.headers["Origin"] = os.getenv("BENCH_ORIGIN")
end

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  threads[#threads + 1] = thread
end

sent, answered, bad, first_bad = 0, 0, 0, ""

if post_prefix then
  -- Defined only for posts: without it wrk sends one prepared request, unparsed.
  function request()
    sent = sent + 1
    local body = "body=" .. post_prefix .. "+" .. id .. "-" .. sent
    return wrk.format(nil, nil, nil, body)
  end
end

function response(status, headers, body)
  answered = answered + 1
  local ok = status == expected_status
  for _, text in ipairs(present) do
    if not ok then break end
    ok = string.find(body, text, 1, true) ~= nil
  end
  for _, text in ipairs(absent) do
    if not ok then break end
    ok = string.find(body, text, 1, true) == nil
  end
  if not ok then
    bad = bad + 1
    if first_bad == "" then
      first_bad = status .. " " .. string.sub(string.gsub(body, "%s+", " "), 1, 400)
    end
  end
end

function done(summary, latency, requests)
  local totals = { sent = 0, answered = 0, bad = 0 }
  local first = ""
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (thread:get(name) or 0)
    end
    if first == "" then first = thread:get("first_bad") or "" end
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "errors": %d, "non_2xx": %d, '
      .. '"p50_us": %d, "p99_us": %d, "max_us": %d, "sent": %d, "answered": %d, "bad": %d}\n',
    summary.requests, summary.duration,
    errors.connect + errors.read + errors.write + errors.timeout, errors.status,
    latency:percentile(50), latency:percentile(99), latency.max,
    totals.sent, totals.answered, totals.bad
  ))
  io.write("BENCH-FIRST-BAD " .. first .. "\n")
end
