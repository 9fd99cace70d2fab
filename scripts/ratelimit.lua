-- ratelimit.lua: a token bucket per key (a user, an API key, an IP).
--
-- The bucket holds at most CAPACITY tokens and refills RATE tokens per
-- second. Events (text):
--   take            take one token
--   take <n>        take n tokens at once
-- Output: { allowed (1/0), remaining tokens (rounded down), ms until n
--         tokens are available (0 when allowed) } — a Redis array.
-- Tags:   "ratelimit:throttled" when the last request was refused, so
--         LEGION.SEARCH ratelimit:throttled EXACT lists who is being held back.
-- Query:  "tokens" returns the tokens available now (rounded down).
--
-- Refill is computed from ctx.time, the acceptance time of each event, so
-- every replica agrees on every decision.

local CAPACITY = 10
local RATE = 5 -- tokens per second

local function refill(state, now)
  local elapsed = math.max(0, now - state.at)
  state.tokens = math.min(CAPACITY, state.tokens + elapsed * RATE / 1000)
  state.at = math.max(state.at, now)
end

function apply(event, state, ctx)
  local n = 1
  local arg = string.match(event, "^take%s*(%d*)$")
  if not arg then error("unknown event (want take or take <n>)") end
  if arg ~= "" then n = tonumber(arg) end
  if n < 1 or n > CAPACITY then error("n must be between 1 and " .. CAPACITY) end
  state = state or { tokens = CAPACITY, at = ctx.time }
  refill(state, ctx.time)
  if state.tokens >= n then
    state.tokens = state.tokens - n
    state.throttled = false
    return { 1, math.floor(state.tokens), 0 }, state
  end
  state.throttled = true
  local wait = math.ceil((n - state.tokens) * 1000 / RATE)
  return { 0, math.floor(state.tokens), wait }, state
end

function index(state, key)
  if state.throttled then return { "ratelimit:throttled" } end
  return {}
end

function query(request, state, ctx)
  if request ~= "tokens" then return { err = "ERR unknown request (want tokens)" } end
  if state == nil then return CAPACITY end
  local s = { tokens = state.tokens, at = state.at }
  refill(s, ctx.time)
  return math.floor(s.tokens)
end
