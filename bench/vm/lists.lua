local l = {}
for i = 0, 999999 do l[#l + 1] = i end
local total = 0
for round = 0, 9 do
  for _, v in ipairs(l) do total = total + v % 7 end
end
local i = 1
while i <= #l do l[i] = l[i] * 2; i = i + 1 end
print(total .. " " .. l[1000000])
