-- template: fills the file skeletons in templates/. A placeholder is {{name}} (letters, digits,
-- underscore). Every placeholder must be given and every given value must be used: either
-- mistake is an error, so templates and emitter cannot drift apart silently.

local host = require("kg_host")
local util = require("util")

local template = {}

function template.fill(path, values)
  local text = host.resource(path)
  if not text then error("template " .. path .. " not found") end
  local used = {}
  local out = util.gsub(text, "{{([%w_]*)}}", function(name)
    local v = values[name]
    if v == nil then error(path .. ": unknown placeholder {{" .. name .. "}}") end
    used[name] = true
    return v
  end)
  for name in pairs(values) do
    if not used[name] then error(path .. ": value '" .. name .. "' has no placeholder") end
  end
  return out
end

return template
