-- registry.lua: service discovery; one partition per service instance.
--
-- Events (text):
--   register <service> <address> <ttl-ms>   announce an instance
--   heartbeat                               keep it alive for another ttl
--   deregister                              remove it
--   expire                                  remove it if its ttl passed
-- Output: 1 if the instance is (still) registered after the event, else 0.
-- Tags:   "service:<name>" while registered, so
--         LEGION.SEARCH service:web EXACT lists the instances of web, and
--         "expires:<16-digit ms>" for sweeping dead instances.
-- Query:  "address" returns the address while alive, nil otherwise;
--         "alive" returns 1 or 0.

local function alive(state, now)
  return state ~= nil and state.expires > now
end

function apply(event, state, ctx)
  local cmd, rest = string.match(event, "^(%a+)%s*(.*)$")
  if cmd == "register" then
    local service, address, ttl = string.match(rest, "^(%S+) (%S+) (%d+)$")
    if not service then error("usage: register <service> <address> <ttl-ms>") end
    ttl = tonumber(ttl)
    if ttl < 1 then error("ttl must be at least 1 ms") end
    return 1, { service = service, address = address, ttl = ttl, expires = ctx.time + ttl, registered = ctx.time }
  elseif cmd == "heartbeat" then
    if not alive(state, ctx.time) then
      -- An instance that missed its deadline must register again.
      return 0, state
    end
    state.expires = ctx.time + state.ttl
    return 1, state
  elseif cmd == "deregister" then
    return 0, nil
  elseif cmd == "expire" then
    if state ~= nil and not alive(state, ctx.time) then return 0, nil end
    return state ~= nil and 1 or 0, state
  end
  error("unknown event (want register, heartbeat, deregister or expire)")
end

function index(state, key)
  if state == nil then return {} end
  return { "service:" .. state.service, string.format("expires:%016d", state.expires) }
end

function query(request, state, ctx)
  if request == "alive" then return alive(state, ctx.time) and 1 or 0 end
  if request == "address" then return alive(state, ctx.time) and state.address or nil end
  return { err = "ERR unknown request (want alive or address)" }
end
