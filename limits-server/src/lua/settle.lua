-- Replaces reservations with what a request really used. KEYS[i]: ticket i's key.
-- ARGV: request id, then per ticket kind, step, reserved, actual.
-- A key that expired meanwhile (window over) is left alone: recreating it would count twice.
local id = ARGV[1]
for i = 1, #KEYS do
  local b = 1 + (i - 1) * 4
  local kind, step = ARGV[b + 1], ARGV[b + 2]
  local delta = tonumber(ARGV[b + 4]) - tonumber(ARGV[b + 3])
  local key = KEYS[i]
  if kind == 'concurrent' then
    redis.call('ZREM', key, id)
  elseif kind == 'tpm' then
    if delta ~= 0 and redis.call('HEXISTS', key, step) == 1 then
      redis.call('HINCRBY', key, step, delta)
    end
  elseif kind == 'usd_day' or kind == 'usd_month' then
    if delta ~= 0 and redis.call('EXISTS', key) == 1 then
      redis.call('INCRBY', key, delta)
    end
  end
end
return 1
