-- Shared by bench/lua/*.lua (each loads it with dofile from its own directory).
--
-- wrk always sleeps for its whole -d before it reports, even when every thread has
-- stopped: so each thread notes when it started and when it ran out of work (a
-- monotonic clock through LuaJIT's ffi) and prints "BENCH-THREAD-DONE"; bench/load.py
-- then interrupts wrk (SIGINT), which reports at once, and `done` prints one JSON
-- line whose duration is the threads' own span when they all finished, wrk's otherwise.
-- Answers outside 200-299 are counted per thread (wrk's errors.status counts only
-- > 399); `setup` keeps the thread objects so that `done` can add the counters up.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local timespec = ffi.new("bench_timespec")

function now_us()
  ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
  return tonumber(timespec.tv_sec) * 1000000 + tonumber(timespec.tv_nsec) / 1000
end

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- per thread (each has its own Lua state)
started_us = now_us()
finished_us = nil
answered = 0 -- answers read
non2xx = 0 -- answers outside 200-299

function count(status)
  answered = answered + 1
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function finish()
  if finished_us == nil then
    finished_us = now_us()
    io.write("BENCH-THREAD-DONE\n")
    io.flush()
  end
  wrk.thread:stop()
end

function done(summary, latency, requests)
  local e = summary.errors
  local answers, bad = 0, 0
  local first, last, all_finished = nil, nil, true
  for _, t in ipairs(threads) do
    answers = answers + (t:get("answered") or 0)
    bad = bad + (t:get("non2xx") or 0)
    local s, f = t:get("started_us"), t:get("finished_us")
    if f == nil then all_finished = false else
      if first == nil or s < first then first = s end
      if last == nil or f > last then last = f end
    end
  end
  local duration = summary.duration
  if all_finished and first ~= nil then duration = last - first end
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %.0f, "wrk_duration_us": %d, "answers": %d, ' ..
    '"non2xx": %d, "errors_connect": %d, "errors_read": %d, "errors_write": %d, ' ..
    '"errors_timeout": %d, "errors_status": %d, "p50_us": %.0f, "p95_us": %.0f, ' ..
    '"p99_us": %.0f, "max_us": %.0f}\n',
    summary.requests, duration, summary.duration, answers, bad,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
