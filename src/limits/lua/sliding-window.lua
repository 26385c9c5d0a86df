--[[
  Multi-dimension bucketed sliding window: check every window, then consume all or nothing, and
  optionally append a usage event, in one round trip. The pure model is src/limits/window.ts;
  the two must agree (test/limits/window.property.test.ts).

  Several windows may share one hash (the minute and the day window of one dimension, say), each
  under its own slot: its fields are then `<slot>:o`, `<slot>:t` and `<slot>:<bucket index>`. A
  window with the empty slot uses the bare names `o`, `t` and `<bucket index>`. Sharing a hash is
  what keeps a decision cheap: one HMGET and one HSET per hash, however many windows it holds.

  The number of keys varies (the hashes, plus an optional stream), so the file is not named
  -<numKeys>.

  `now` comes from ARGV, never from TIME: callers and tests drive the clock, and the decision
  is a pure function of the stored hashes and the arguments.

    Input:
      KEYS[1..h]      the hashes; per window: field <slot:>bucket index = count,
                      <slot:>t = total of the live buckets, <slot:>o = oldest non-empty bucket
      KEYS[h + 1]     usage stream (present only when ARGV[5] is not '')

      ARGV[1]         n, the number of windows
      ARGV[2]         now, ms
      ARGV[3]         cost, a non-negative integer (0 = pure lookup)
      ARGV[4]         mode: 'enforce' (consume only if every window admits) |
                            'record'  (consume even when denied)
      ARGV[5]         event: '' (none) | 'admitted' (append only when admitted) | 'always'
      ARGV[6]         stream MAXLEN, approximate (~)
      ARGV[7]         h, the number of hashes
      ARGV[8]         the n windows, each as `<hash index>,<slot>,<limit>,<windowMs>,<buckets>;`
                      (hash index 1..h; windowMs a multiple of buckets). One argument rather than
                      5n: every argument costs the client and the server a conversion each.
      ARGV[9 ..]      stream field, value, field, value ... (with 'always', the entry starts with
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

    Expiry: a hash lives as long as its newest bucket can still count in its longest window. Its
    TTL is set to max(W + B) over its windows whenever one of them opens a bucket.
]]

local rcall = redis.call

local n = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local mode = ARGV[4]
local eventWhen = ARGV[5]
local h = tonumber(ARGV[7])

if n == nil or h == nil or h < 1 or now == nil or cost == nil or cost < 0
  or (mode ~= 'enforce' and mode ~= 'record') then
  return -1
end

-- Field names as integers: tostring would switch to exponent notation past 14 digits.
local function field(index)
  return string.format('%d', index)
end

local hashes = {}
for g = 1, h do hashes[g] = { key = KEYS[g], members = {}, ttl = 0, writes = {}, fresh = false } end

local windows = {}
local k = 0
for g, slot, limit, windowMs, buckets in string.gmatch(ARGV[8], '(%d+),(%w*),(%d+),(%d+),(%d+);') do
  k = k + 1
  g, limit, windowMs, buckets = tonumber(g), tonumber(limit), tonumber(windowMs), tonumber(buckets)
  if hashes[g] == nil or buckets < 1 or windowMs % buckets ~= 0 then
    return -1
  end
  local width = windowMs / buckets
  -- fmod is exact; floor(now / width) can round a quotient just below k up to k.
  local offset = math.fmod(now, width)
  if offset < 0 then offset = offset + width end
  local hash = hashes[g]
  hash.members[#hash.members + 1] = k
  if windowMs + width > hash.ttl then hash.ttl = windowMs + width end
  windows[k] = {
    hash = hash, key = hash.key, p = slot == '' and '' or (slot .. ':'),
    limit = limit, windowMs = windowMs, buckets = buckets, width = width,
    current = (now - offset) / width
  }
end
if k ~= n then return -1 end

-- One read per hash serves the common case: for each window its oldest bucket, its total and the
-- current bucket's count, which lets the write below be a plain HSET and tells whether the bucket
-- is new (the only time the TTL has to move).
for g = 1, h do
  local hash = hashes[g]
  local names = {}
  for _, k in ipairs(hash.members) do
    local w = windows[k]
    names[#names + 1] = w.p .. 'o'
    names[#names + 1] = w.p .. 't'
    names[#names + 1] = w.p .. field(w.current)
  end
  if #names > 0 then
    local values = rcall('HMGET', hash.key, unpack(names))
    for i, k in ipairs(hash.members) do
      local w = windows[k]
      w.oldest = tonumber(values[3 * i - 2])
      w.total = tonumber(values[3 * i - 1]) or 0
      w.currentCount = tonumber(values[3 * i])
      -- `o` and `t` changed here and must be written back, consumed or not.
      w.dirty = false
    end
  end
end

-- Forgets a window: its buckets from..to (every field it can hold there) and its `o` and `t`.
-- A hash that holds only this window goes at once.
local function clearWindow(w, from, to)
  if #w.hash.members == 1 then
    rcall('DEL', w.key)
  else
    local names = { w.p .. 'o', w.p .. 't' }
    for b = from, to do names[#names + 1] = w.p .. field(b) end
    rcall('HDEL', w.key, unpack(names))
  end
  w.oldest, w.total, w.currentCount = nil, 0, nil
end

for k = 1, n do
  local w = windows[k]
  -- Expire buckets older than current - N. `oldest` only moves forward, so each bucket index is
  -- walked once over the window's life: amortised O(1) per check.
  local cutoff = w.current - w.buckets
  local oldest = w.oldest
  if oldest ~= nil and oldest < cutoff then
    if cutoff - oldest > w.buckets then
      -- Every field lies in [oldest, oldest + N]: nothing survives a larger gap.
      clearWindow(w, oldest, oldest + w.buckets)
    else
      -- Buckets oldest .. cutoff - 1 go; `cutoff` is read along, as it is usually the next oldest.
      local walked = {}
      for b = oldest, cutoff do walked[#walked + 1] = w.p .. field(b) end
      local counts = rcall('HMGET', w.key, unpack(walked))
      local gone = {}
      local total = w.total
      for i = 1, #walked - 1 do
        if counts[i] then
          total = total - tonumber(counts[i])
          gone[#gone + 1] = walked[i]
        end
      end
      if total <= 0 then
        clearWindow(w, oldest, cutoff)
      else
        if #gone > 0 then rcall('HDEL', w.key, unpack(gone)) end
        w.total = total
        local last = oldest + w.buckets
        if counts[#walked] then
          w.oldest = cutoff
          w.dirty = true
        else
          local rest = {}
          for b = cutoff + 1, last do rest[#rest + 1] = w.p .. field(b) end
          local found = nil
          if #rest > 0 then
            local more = rcall('HMGET', w.key, unpack(rest))
            for i = 1, #rest do
              if more[i] then
                found = cutoff + i
                break
              end
            end
          end
          if found == nil then
            -- total > 0 promises a field in range; an inconsistent window is dropped, not looped on.
            clearWindow(w, oldest, last)
          else
            w.oldest = found
            w.dirty = true
          end
        end
      end
    end
  end
  w.usedBefore = w.total
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
    local writes = w.hash.writes
    -- A skewed, earlier `now` must not write below `oldest`: that field would never be walked.
    local bucket = w.current
    if w.oldest ~= nil and w.oldest > bucket then bucket = w.oldest end
    if bucket == w.current then
      if w.currentCount == nil then w.hash.fresh = true end
      writes[#writes + 1] = w.p .. field(bucket)
      writes[#writes + 1] = field((w.currentCount or 0) + cost)
    elseif tonumber(rcall('HINCRBY', w.key, w.p .. field(bucket), cost)) == cost then
      w.hash.fresh = true
    end
    w.total = w.total + cost
    writes[#writes + 1] = w.p .. 't'
    writes[#writes + 1] = field(w.total)
    if w.oldest == nil then
      w.oldest = bucket
      writes[#writes + 1] = w.p .. 'o'
      writes[#writes + 1] = field(bucket)
    elseif w.dirty then
      writes[#writes + 1] = w.p .. 'o'
      writes[#writes + 1] = field(w.oldest)
    end
    w.dirty = false
  end
end

for k = 1, n do
  local w = windows[k]
  if w.dirty then
    local writes = w.hash.writes
    writes[#writes + 1] = w.p .. 'o'
    writes[#writes + 1] = field(w.oldest)
    writes[#writes + 1] = w.p .. 't'
    writes[#writes + 1] = field(w.total)
  end
end

for g = 1, h do
  local hash = hashes[g]
  if #hash.writes > 0 then rcall('HSET', hash.key, unpack(hash.writes)) end
  -- Idle hashes vanish once their newest bucket can no longer count. A bucket set up at `now`
  -- counts until at most now + W + B, so setting the TTL when a bucket appears keeps the hash
  -- alive exactly as long as its newest bucket needs; later writes to that bucket change nothing.
  if hash.fresh then rcall('PEXPIRE', hash.key, field(hash.ttl)) end
end

-- Ms until the count of window w is at most target, expiring its oldest buckets first.
local function msUntilAtMost(w, target)
  local need = w.total - target
  -- `oldest` always holds a positive count, so it alone frees one: the usual case reads nothing.
  if need <= 1 then return (w.oldest + w.buckets + 1) * w.width - now end
  local freed = 0
  local bucket = w.oldest
  for _ = 0, w.buckets do
    local count = rcall('HGET', w.key, w.p .. field(bucket))
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
  rcall('XADD', KEYS[h + 1], 'MAXLEN', '~', ARGV[6], '*', unpack(ARGV, 9))
elseif eventWhen == 'always' then
  -- The caller cannot know the outcome when it builds the event: `ok` records it.
  rcall('XADD', KEYS[h + 1], 'MAXLEN', '~', ARGV[6], '*', 'ok', admitted and '1' or '0', unpack(ARGV, 9))
end

return reply
