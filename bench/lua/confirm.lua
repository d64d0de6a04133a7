-- POST /api/v1/signatures/verify once per token of a file (one token a line). Thread i
-- of n takes lines i, i+n, i+2n...; before each request a connection reserves a token
-- in `delay` (wrk asks it before every request), a connection with none left waits
-- until the end, and the thread stops when every one of its tokens has been answered.
-- Arguments (after `--`): the tokens file, the number of wrk threads (-t).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

function init(args)
  local nthreads = tonumber(args[2])
  mine = {}
  local line_no = 0
  for line in io.lines(args[1]) do
    if #line > 0 then
      line_no = line_no + 1
      if (line_no - 1) % nthreads + 1 == id then table.insert(mine, line) end
    end
  end
  reserved = 0
  sent = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function delay()
  if reserved >= #mine then return 24 * 3600 * 1000 end -- out of work: idle until the end
  reserved = reserved + 1
  return 0
end

function request()
  -- wrk also calls this once before the run to check the request (thread 1, nothing
  -- reserved yet): that call only looks at the next token.
  if sent < reserved then sent = sent + 1 end
  local token = mine[math.max(sent, 1)] or ""
  return wrk.format(nil, "/api/v1/signatures/verify", nil, '{"token": "' .. token .. '"}')
end

function response(status, headers, body)
  count(status)
  if answered >= #mine then finish() end
end
