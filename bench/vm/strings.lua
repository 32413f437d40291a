local parts = {}
for i = 0, 299999 do parts[#parts + 1] = "item " .. tostring(i) .. ";" end
local s = table.concat(parts, ",")
local acc = ""
for i = 0, 19999 do acc = acc .. "ab" end
local words = {}
for w in string.gmatch(s, "[^,]+") do words[#words + 1] = w end
print(#s .. " " .. #acc .. " " .. #words .. " " .. string.upper(words[12346]))
