-- Chained POST /auth/refresh for wrk: every refresh token is presented exactly once, by the
-- request after the one that returned it, as a real client does. The chains start from the
-- tokens in REFRESH_TOKENS_FILE (one per line, from as many logins), which must outnumber
-- wrk's connections so that a connection never waits for a token. Run with -t1.
-- Env: BENCH_LUA_DIR (the harness's lua/, for common.lua), REFRESH_TOKENS_FILE, REFRESH_PATH.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local path = os.getenv("REFRESH_PATH") or "/auth/refresh"
local hdrs = { ["Content-Type"] = "application/json" }
local queue, head, tail = {}, 1, 0

function init(args)
  local file = assert(os.getenv("REFRESH_TOKENS_FILE"), "REFRESH_TOKENS_FILE env not set")
  for line in io.lines(file) do
    if line ~= "" then
      tail = tail + 1
      queue[tail] = line
    end
  end
end

function request()
  -- An empty queue means more requests in flight than chains: the request fails visibly.
  local token = queue[head] or "no-chain-left"
  queue[head] = nil
  head = head + 1
  return wrk.format("POST", path, hdrs, '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  local token = status == 200 and body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if token then
    tail = tail + 1
    queue[tail] = token
  else
    -- A broken chain is an error and is not resumed.
    non2xx = non2xx + 1
    if non2xx <= 3 then io.stderr:write("refresh failed ", status, ": ", string.sub(body or "", 1, 200), "\n") end
  end
end
