-- counter.lua: one integer counter per key.
--
-- Events: "incr", "decr", "incrby <n>", "reset".
-- Output: the new count.
-- Tags:   "count:<n>", so LEGION.SEARCH count:3 EXACT lists the keys at 3.
-- Query:  any request returns the count (0 for a key never written).

function apply(event, state, ctx)
  state = state or { count = 0 }
  if event == "incr" then
    state.count = state.count + 1
  elseif event == "decr" then
    state.count = state.count - 1
  elseif event == "reset" then
    state.count = 0
  else
    local n = string.match(event, "^incrby (%-?%d+)$")
    if not n then
      error("unknown event '" .. event .. "' (want incr, decr, incrby <n> or reset)")
    end
    state.count = state.count + tonumber(n)
  end
  return state.count, state
end

function index(state, key)
  return { "count:" .. state.count }
end

function query(request, state, ctx)
  return state and state.count or 0
end
