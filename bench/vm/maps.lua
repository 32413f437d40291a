local m = {}
for i = 0, 199999 do m["k" .. tostring(i)] = i end
local total = 0
for round = 0, 4 do
  for i = 0, 199999 do total = total + m["k" .. tostring(i)] end
end
local n = 0
for k in pairs(m) do n = n + 1 end
print(total .. " " .. n)
