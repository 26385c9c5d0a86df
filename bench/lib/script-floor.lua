--[[
  The floor under src/limits/lua/sliding-window.lua, for bench:enforce and bench:limiter: the same
  arguments, the same commands (one HMGET and one HSET per hash, the XADD) and a reply of the same
  shape, and nothing else: no window arithmetic, no expiry, no decision. What this costs per call
  is what the Redis commands of a decision cost before any logic; the real script cannot get below
  it. Its counts go to HSET as text, as the script's do: Redis 7.0 formats a Lua number argument
  with printf's slow %.17g (~10k instructions for the four counts of an HSET here), which no
  script has to pay.

  `stage` stops it short, for the breakdown of that cost (bench/lib/enforce-script-floor.ts loads
  copies with this line changed): 'args' runs no command (what the call and its arguments cost),
  'reads' only the HMGETs, 'writes' the HMGETs and HSETs, 'all' everything. The reply is the same.
]]
local stage = 'all'
local rcall = redis.call
local n = tonumber(ARGV[1])
local h = tonumber(ARGV[7])
local s = tonumber(ARGV[8])
local groups = {}
local pos = 9
for q = 1, s do
  local m = tonumber(ARGV[pos])
  groups[q] = { m, pos + 1 }
  pos = pos + 1 + 7 * m
end
for g = 1, h do
  local group = groups[tonumber(ARGV[pos])]
  local m, names = group[1], group[2]
  if stage ~= 'args' then rcall('HMGET', KEYS[g], unpack(ARGV, names, names + 3 * m - 1)) end
  if stage == 'writes' or stage == 'all' then
    local writes = {}
    for i = 1, m do
      local a = names + 3 * (i - 1)
      writes[#writes + 1] = ARGV[a + 2]
      writes[#writes + 1] = '1'
      writes[#writes + 1] = ARGV[a + 1]
      writes[#writes + 1] = '1'
    end
    rcall('HSET', KEYS[g], unpack(writes))
  end
  pos = pos + 1 + m
end
if stage == 'all' then
  rcall('XADD', KEYS[h + 1], 'MAXLEN', '~', ARGV[6], '*', 'ok', '1', unpack(ARGV, pos))
end
local reply = { 1 }
for k = 1, n do
  reply[3 * k - 1] = 0
  reply[3 * k] = 0
  reply[3 * k + 1] = 0
end
return reply
