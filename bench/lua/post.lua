-- POST a fixed JSON body to the URL given to wrk (bench/floor.py); stops each thread
-- after `max_requests` answers.
-- Argument (after `--`): max_requests.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local body = '{"token": "floor-0123456789abcdefghijklmnopqrstuvwxyz"}'

function init(args)
  max_requests = tonumber(args[1])
end

function request()
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  count(status)
  if answered >= max_requests then finish() end
end
