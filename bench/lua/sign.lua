-- POST /api/v1/letters/SLUG/signatures: a signature with a unique address per request,
-- PREFIX-tTHREADnCOUNTER@example.org, round-robin over the letters given.
-- Arguments (after `--`): max_requests (per thread), the prefix, and a comma-separated
-- list of slugs.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

function init(args)
  max_requests = tonumber(args[1])
  prefix = args[2]
  slugs = {}
  for slug in string.gmatch(args[3], "[^,]+") do table.insert(slugs, slug) end
  sent = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  sent = sent + 1
  local slug = slugs[(sent - 1) % #slugs + 1]
  local tag = "t" .. id .. "n" .. sent
  local body = string.format(
    '{"name": "Bench Signer %s", "email": "%s-%s@example.org", "title": "Engineer", ' ..
    '"organization": "Loopback Labs", "city": "127.0.0.1", "display": "%s", ' ..
    '"contact_ok": %s}',
    tag, prefix, tag, (sent % 4 == 0) and "anonymous" or "public",
    (sent % 3 == 0) and "true" or "false")
  return wrk.format(nil, "/api/v1/letters/" .. slug .. "/signatures", nil, body)
end

function response(status, headers, body)
  count(status)
  if answered >= max_requests then finish() end
end
