-- cache.lua: a cache entry per key with an optional time to live.
--
-- Events (text):
--   set <ttl-ms> <value>   store value; ttl 0 means it never expires
--   touch <ttl-ms>         give a live entry a new ttl from now
--   del                    remove the entry
--   expire                 remove the entry if its ttl has passed (what a
--                          sweeper sends to the keys SEARCH expires: finds)
-- Output: "OK" for set; 1 or 0 (whether something happened) otherwise.
-- Tags:   "expires:<16-digit ms>" for entries with a ttl, so
--         LEGION.SEARCH expires: COUNT 100 lists the entries that expire
--         first; "cache:permanent" for entries without one.
-- Query:  "get" returns the value, nil if absent or expired; "pttl" the ms
--         left, -1 without a ttl, -2 if absent or expired (as Redis's PTTL).
--
-- Time is ctx.time: the moment the event was accepted, the same on every
-- replica, so expiry is deterministic.

local function live(state, now)
  return state ~= nil and (state.expires == nil or state.expires > now)
end

local function ttl_arg(s)
  local ttl = tonumber(s)
  if not ttl or ttl < 0 or ttl ~= math.floor(ttl) then
    error("ttl must be a non-negative integer of milliseconds")
  end
  return ttl
end

function apply(event, state, ctx)
  local cmd, rest = string.match(event, "^(%a+)%s*(.*)$")
  if cmd == "set" then
    local ttl, value = string.match(rest, "^(%d+) (.*)$")
    if not ttl then error("usage: set <ttl-ms> <value>") end
    ttl = ttl_arg(ttl)
    local entry = { value = value }
    if ttl > 0 then entry.expires = ctx.time + ttl end
    return { ok = "OK" }, entry
  elseif cmd == "touch" then
    local ttl = ttl_arg(rest)
    if not live(state, ctx.time) then return 0, state end
    state.expires = ttl > 0 and ctx.time + ttl or nil
    return 1, state
  elseif cmd == "del" then
    return live(state, ctx.time) and 1 or 0, nil
  elseif cmd == "expire" then
    if state ~= nil and not live(state, ctx.time) then return 1, nil end
    return 0, state
  end
  error("unknown event (want set, touch, del or expire)")
end

function index(state, key)
  if state == nil then return {} end
  if state.expires == nil then return { "cache:permanent" } end
  return { string.format("expires:%016d", state.expires) }
end

function query(request, state, ctx)
  if request == "get" then
    return live(state, ctx.time) and state.value or nil
  elseif request == "pttl" then
    if not live(state, ctx.time) then return -2 end
    if state.expires == nil then return -1 end
    return state.expires - ctx.time
  end
  return { err = "ERR unknown request (want get or pttl)" }
end
