-- Takes every bucket or none, atomically: Redis runs a script alone, so replicas never race.
-- KEYS[i]: bucket i's key. ARGV: now_ms, request id, lease_ms, then per bucket
-- kind, limit, amount, ttl_s, window_end_s (budgets).
-- Returns {1, step, remaining...} or {0, refused bucket index, remaining, retry_after_s}.
local now_ms = tonumber(ARGV[1])
local id = ARGV[2]
local lease = tonumber(ARGV[3])
local now_s = math.floor(now_ms / 1000)
local n = #KEYS
local used = {}

-- Sliding 60 s window in 1 s steps: a hash of step -> amount; old steps are dropped.
local function window(key)
  local flat = redis.call('HGETALL', key)
  local sum, oldest, stale = 0, nil, {}
  for j = 1, #flat, 2 do
    local step = tonumber(flat[j])
    if step <= now_s - 60 then
      stale[#stale + 1] = flat[j]
    else
      sum = sum + tonumber(flat[j + 1])
      if oldest == nil or step < oldest then oldest = step end
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  return sum, oldest
end

for i = 1, n do
  local b = 3 + (i - 1) * 5
  local kind, limit, amount = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local window_end = tonumber(ARGV[b + 5])
  local key = KEYS[i]
  local u, fits, retry = 0, true, 1
  if kind == 'rpm' or kind == 'tpm' then
    local oldest
    u, oldest = window(key)
    -- Tokens admit while any are left (the last request may cross: the documented bound);
    -- requests count exactly.
    if kind == 'rpm' then fits = u + amount <= limit else fits = u < limit end
    if oldest then retry = math.max(1, oldest + 60 - now_s) end
  elseif kind == 'concurrent' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
    u = redis.call('ZCARD', key)
    fits = u + amount <= limit
  else
    u = tonumber(redis.call('GET', key) or '0')
    fits = u + amount <= limit
    retry = math.max(1, window_end - now_s)
  end
  if not fits then
    return {0, i, math.max(0, limit - u), retry}
  end
  used[i] = u
end

local out = {1, now_s}
for i = 1, n do
  local b = 3 + (i - 1) * 5
  local kind, limit, amount, ttl = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local key = KEYS[i]
  if kind == 'rpm' or kind == 'tpm' then
    redis.call('HINCRBY', key, now_s, amount)
    redis.call('EXPIRE', key, 61)
  elseif kind == 'concurrent' then
    redis.call('ZADD', key, now_ms + lease, id)
    redis.call('PEXPIRE', key, lease)
  else
    redis.call('INCRBY', key, amount)
    redis.call('EXPIRE', key, ttl)
  end
  out[#out + 1] = math.max(0, limit - used[i] - amount)
end
return out
