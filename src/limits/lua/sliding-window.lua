--[[
  Multi-dimension bucketed sliding window: check every window, then consume all or nothing, and
  optionally append a usage event, in one round trip. The pure model is src/limits/window.ts;
  the two must agree (test/limits/window.property.test.ts).

  The number of keys varies (one hash per dimension x window, plus an optional stream), so the
  file is not named -<numKeys>.

  `now` comes from ARGV, never from TIME: callers and tests drive the clock, and the decision
  is a pure function of the stored hashes and the arguments.

    Input:
      KEYS[1..n]      one hash per (dimension, window): field <bucket index> = count,
                      `t` = total of the live buckets, `o` = oldest non-empty bucket
      KEYS[n + 1]     usage stream (present only when ARGV[5] is not '')

      ARGV[1]         n, the number of limit hashes
      ARGV[2]         now, ms
      ARGV[3]         cost, a non-negative integer (0 = pure lookup)
      ARGV[4]         mode: 'enforce' (consume only if every window admits) |
                            'record'  (consume even when denied)
      ARGV[5]         event: '' (none) | 'admitted' (append only when admitted) | 'always'
      ARGV[6]         stream MAXLEN, approximate (~)
      ARGV[7 + 3(k - 1) .. 9 + 3(k - 1)]
                      limit, windowMs, buckets of KEYS[k]; windowMs is a multiple of buckets
      ARGV[7 + 3n ..] stream field, value, field, value ... (with 'always', the entry starts with
                      an `ok` field: '1' admitted, '0' denied)

    Output:
      { decision, violated, used_1, remaining_1, reset_ms_1, ..., used_n, remaining_n, reset_ms_n }
        decision    1 admitted, 0 denied
        violated    0-based index of the first limit the request does not fit, -1 if none
        used_k      count of window k after this call (cost included only if consumed)
        remaining_k max(0, limit_k - used_k)
        reset_ms_k  ms until remaining_k rises if the request fits window k; if not, ms until a
                    request of the same cost would fit; windowMs if cost > limit_k (never fits)
      -1  malformed arguments (the caller validates first; this only guards the hashes)
]]

local rcall = redis.call

local n = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local mode = ARGV[4]
local eventWhen = ARGV[5]

if n == nil or now == nil or cost == nil or cost < 0 or (mode ~= 'enforce' and mode ~= 'record') then
  return -1
end

-- Field names as integers: tostring would switch to exponent notation past 14 digits.
local function field(index)
  return string.format('%d', index)
end

local windows = {}
for k = 1, n do
  local base = 6 + 3 * (k - 1)
  local limit = tonumber(ARGV[base + 1])
  local windowMs = tonumber(ARGV[base + 2])
  local buckets = tonumber(ARGV[base + 3])
  if limit == nil or windowMs == nil or buckets == nil or buckets < 1 or windowMs % buckets ~= 0 then
    return -1
  end
  local width = windowMs / buckets
  -- fmod is exact; floor(now / width) can round a quotient just below k up to k.
  local offset = math.fmod(now, width)
  if offset < 0 then offset = offset + width end
  local current = (now - offset) / width

  local key = KEYS[k]
  -- One read per key serves the common case: the current bucket's count lets the write below be a
  -- single HSET and tells whether the bucket is new (the only time the TTL has to move).
  local meta = rcall('HMGET', key, 'o', 't', field(current))
  local oldest = tonumber(meta[1])
  local total = tonumber(meta[2]) or 0
  local currentCount = tonumber(meta[3])
  -- `o` and `t` changed here and must be written back, consumed or not.
  local dirty = false

  -- Expire buckets older than current - N. `oldest` only moves forward, so each bucket index is
  -- walked once over the key's life: amortised O(1) per check.
  local cutoff = current - buckets
  if oldest ~= nil and oldest < cutoff then
    if cutoff - oldest > buckets then
      -- Every field lies in [oldest, oldest + N]: nothing survives a larger gap.
      rcall('DEL', key)
      oldest, total, currentCount = nil, 0, nil
    else
      -- Buckets oldest .. cutoff - 1 go; `cutoff` is read along, as it is usually the next oldest.
      local walked = {}
      for b = oldest, cutoff do walked[#walked + 1] = field(b) end
      local counts = rcall('HMGET', key, unpack(walked))
      local gone = {}
      for i = 1, #walked - 1 do
        if counts[i] then
          total = total - tonumber(counts[i])
          gone[#gone + 1] = walked[i]
        end
      end
      if total <= 0 then
        rcall('DEL', key)
        oldest, total, currentCount = nil, 0, nil
      else
        if #gone > 0 then rcall('HDEL', key, unpack(gone)) end
        local last = oldest + buckets
        if counts[#walked] then
          oldest = cutoff
        else
          local rest = {}
          for b = cutoff + 1, last do rest[#rest + 1] = field(b) end
          local found = nil
          if #rest > 0 then
            local more = rcall('HMGET', key, unpack(rest))
            for i = 1, #rest do
              if more[i] then
                found = cutoff + i
                break
              end
            end
          end
          if found == nil then
            -- total > 0 promises a field in range; an inconsistent hash is dropped, not looped on.
            rcall('DEL', key)
            oldest, total, currentCount = nil, 0, nil
          else
            oldest = found
          end
        end
        if oldest ~= nil then dirty = true end
      end
    end
  end

  windows[k] = {
    key = key, limit = limit, windowMs = windowMs, buckets = buckets, width = width,
    current = current, oldest = oldest, total = total, usedBefore = total,
    currentCount = currentCount, dirty = dirty
  }
end

-- Decide on every window before consuming from any: all or nothing.
local violated = -1
for k = 1, n do
  local w = windows[k]
  if w.total + cost > w.limit then
    violated = k - 1
    break
  end
end
local admitted = violated == -1

if cost > 0 and (admitted or mode == 'record') then
  for k = 1, n do
    local w = windows[k]
    -- A skewed, earlier `now` must not write below `oldest`: that field would never be walked.
    local bucket = w.current
    if w.oldest ~= nil and w.oldest > bucket then bucket = w.oldest end
    local fresh
    local writes = {}
    if bucket == w.current then
      fresh = w.currentCount == nil
      writes = { field(bucket), field((w.currentCount or 0) + cost) }
    else
      fresh = tonumber(rcall('HINCRBY', w.key, field(bucket), cost)) == cost
    end
    w.total = w.total + cost
    writes[#writes + 1] = 't'
    writes[#writes + 1] = field(w.total)
    if w.oldest == nil then
      w.oldest = bucket
      writes[#writes + 1] = 'o'
      writes[#writes + 1] = field(bucket)
    elseif w.dirty then
      writes[#writes + 1] = 'o'
      writes[#writes + 1] = field(w.oldest)
    end
    w.dirty = false
    rcall('HSET', w.key, unpack(writes))
    -- Idle keys vanish once their newest bucket can no longer count. A bucket set up at `now`
    -- counts until at most now + W + B, so setting the TTL when a bucket appears keeps the key
    -- alive exactly as long as its newest bucket needs; later writes to that bucket change nothing.
    if fresh then rcall('PEXPIRE', w.key, field(w.windowMs + w.width)) end
  end
end

for k = 1, n do
  local w = windows[k]
  if w.dirty then rcall('HSET', w.key, 'o', field(w.oldest), 't', field(w.total)) end
end

-- Ms until the count of window w is at most target, expiring its oldest buckets first.
local function msUntilAtMost(w, target)
  local need = w.total - target
  -- `oldest` always holds a positive count, so it alone frees one: the usual case reads nothing.
  if need <= 1 then return (w.oldest + w.buckets + 1) * w.width - now end
  local freed = 0
  local bucket = w.oldest
  for _ = 0, w.buckets do
    local count = rcall('HGET', w.key, field(bucket))
    if count then freed = freed + tonumber(count) end
    if freed >= need then break end
    bucket = bucket + 1
  end
  return (bucket + w.buckets + 1) * w.width - now
end

local reply = { admitted and 1 or 0, violated }
for k = 1, n do
  local w = windows[k]
  local fits = w.usedBefore + cost <= w.limit
  local resetMs
  if not fits and cost > w.limit then
    resetMs = w.windowMs
  elseif w.total == 0 then
    resetMs = 0
  elseif fits then
    resetMs = msUntilAtMost(w, w.total - 1)
  else
    resetMs = msUntilAtMost(w, w.limit - cost)
  end
  local remaining = w.limit - w.total
  if remaining < 0 then remaining = 0 end
  reply[#reply + 1] = w.total
  reply[#reply + 1] = remaining
  reply[#reply + 1] = resetMs
end

if eventWhen == 'admitted' and admitted then
  rcall('XADD', KEYS[n + 1], 'MAXLEN', '~', ARGV[6], '*', unpack(ARGV, 7 + 3 * n))
elseif eventWhen == 'always' then
  -- The caller cannot know the outcome when it builds the event: `ok` records it.
  rcall('XADD', KEYS[n + 1], 'MAXLEN', '~', ARGV[6], '*', 'ok', admitted and '1' or '0', unpack(ARGV, 7 + 3 * n))
end

return reply
