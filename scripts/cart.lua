-- cart.lua: one shopping cart per key.
--
-- Events are JSON objects:
--   {"op":"add","sku":"A1","qty":2,"price":350}  add units (price in cents per unit)
--   {"op":"remove","sku":"A1","qty":1}           remove units; without qty, the whole line
--   {"op":"clear"}                               empty the cart
-- Output: the cart's total in cents after the event.
-- Tags:   "sku:<sku>" for every line in the cart, and "cart:empty" or
--         "cart:nonempty" — LEGION.SEARCH sku:A1 EXACT finds the carts
--         holding A1.
-- Query:  "total" (cents), "units" (items in the cart), "lines" (a flat
--         array sku, qty, price, ... in SKU order).

local function positive_integer(v, what)
  if type(v) ~= "number" or v < 1 or v ~= math.floor(v) then
    error(what .. " must be a positive integer")
  end
  return v
end

local function recount(state)
  local total, units = 0, 0
  for _, line in pairs(state.items) do
    total = total + line.qty * line.price
    units = units + line.qty
  end
  state.total, state.units = total, units
end

function apply(event, state, ctx)
  state = state or { items = {}, total = 0, units = 0 }
  local ok, ev = pcall(cjson.decode, event)
  if not ok or type(ev) ~= "table" then
    error("event must be a JSON object")
  end
  if ev.op == "add" then
    if type(ev.sku) ~= "string" or ev.sku == "" then error("sku must be a non-empty string") end
    local qty = positive_integer(ev.qty, "qty")
    local price = ev.price
    if type(price) ~= "number" or price < 0 or price ~= math.floor(price) then
      error("price must be a non-negative integer (cents)")
    end
    local line = state.items[ev.sku]
    if line then
      line.qty, line.price = line.qty + qty, price
    else
      state.items[ev.sku] = { qty = qty, price = price }
    end
  elseif ev.op == "remove" then
    local line = state.items[ev.sku]
    if not line then error("no line for sku " .. tostring(ev.sku)) end
    if ev.qty == nil or positive_integer(ev.qty, "qty") >= line.qty then
      state.items[ev.sku] = nil
    else
      line.qty = line.qty - ev.qty
    end
  elseif ev.op == "clear" then
    state.items = {}
  else
    error("op must be add, remove or clear")
  end
  recount(state)
  return state.total, state
end

function index(state, key)
  local tags = {}
  for sku in pairs(state.items) do
    tags[#tags + 1] = "sku:" .. sku
  end
  tags[#tags + 1] = next(state.items) and "cart:nonempty" or "cart:empty"
  return tags
end

function query(request, state, ctx)
  if not state then state = { items = {}, total = 0, units = 0 } end
  if request == "total" then return state.total end
  if request == "units" then return state.units end
  if request == "lines" then
    local skus = {}
    for sku in pairs(state.items) do skus[#skus + 1] = sku end
    table.sort(skus)
    local out = {}
    for _, sku in ipairs(skus) do
      local line = state.items[sku]
      out[#out + 1] = sku
      out[#out + 1] = line.qty
      out[#out + 1] = line.price
    end
    return out
  end
  return { err = "ERR unknown request (want total, units or lines)" }
end
