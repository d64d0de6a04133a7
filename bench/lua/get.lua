-- GET the URL given to wrk; stops each thread after `max_requests` answers.
-- Argument (after `--`): max_requests.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

function init(args)
  max_requests = tonumber(args[1])
end

function response(status, headers, body)
  count(status)
  if answered >= max_requests then finish() end
end
