--[[
  Multi-dimension bucketed sliding window: check every window, then consume all or nothing, and
  optionally append a usage event, in one round trip. The pure model is src/limits/window.ts;
  the two must agree (test/limits/window.property.test.ts).

  Several windows may share one hash (the minute and the day window of one dimension, say), each
  under its own slot: its fields are then `<slot>:o`, `<slot>:t`, `<slot>:c` and
  `<slot>:<bucket index>`. A window with the empty slot uses the bare names. Sharing a hash is
  what keeps a decision cheap: one HMGET and one HSET per hash, however many windows it holds.

  The newest bucket i is kept apart: its count in `c`, its index packed into `o` with the oldest
  bucket, as -(oldest * 1024 + (i - oldest)) - 1 (i - oldest <= N <= 1000; negative, so it cannot
  be taken for the plain index an older version wrote there). Bucket b counts field <b>, or `c`
  when b = i (which then has no field of its own); a new newest bucket moves `c` to its field.
  Why: a small hash is a listpack, which Redis searches field by field from its start, and a day
  window of 96 buckets makes it ~110 fields long. New fields go to its end, so reading and writing
  the current bucket by its index scanned the whole hash four times per window and call, while
  `o`, `t` and `c` are written first and stay near the start: a window emptied in a shared hash
  keeps them in place, with `t` = 0 (which is what marks it empty). A window written by an older
  version (a plain `o`, no `c`) is read as it is and moves to this form at its next new bucket.

  This runs on every API call, and in Redis's Lua every table and every string built here (a
  concatenation, a format, a tostring) costs several times what one more argument does. So the
  caller sends the windows grouped by hash, with field names and bucket indexes ready-made: the
  read of a hash is an HMGET of a range of ARGV, and strings are built only on the rare paths
  (expiring buckets, walking for a reset time) and for the counts HSET writes.

  Numbers cross between strings and Lua in the cheapest way measured (instructions Redis 7.0 ran
  per decision under callgrind, `npm run bench:limiter -- --callgrind`). An argument is read with
  `s + 0`, not tonumber(s), which is a C call that parses its argument twice (lua_isnumber, then
  lua_tonumber); `s + 0` raises a script error on a string that is not a number, and the caller
  has validated every argument. What the hashes hold is still read with tonumber: a field written
  by anything else then counts as empty, rather than failing every decision on that hash until it
  expires (`s + 0` there too would save another ~3%). A count goes to HSET as
  string.format('%d', n): Redis turns a Lua number argument into text with printf's %.17g, which
  takes its slow multi-precision path for every value. Together ~8% fewer instructions (691k ->
  637k a decision for counters used a moment ago). `npm run bench:enforce` reports the Redis CPU
  per decision.

  The number of keys varies (the hashes, plus an optional stream), so the file is not named
  -<numKeys>.

  `now` comes from ARGV, never from TIME: callers and tests drive the clock, and the decision
  is a pure function of the stored hashes and the arguments.

    Input:
      KEYS[1..h]      the hashes; per window: field <slot:>bucket index = count,
                      <slot:>t = total of the live buckets, <slot:>o = oldest non-empty bucket
                      and newest bucket (packed, above), <slot:>c = the newest bucket's count
      KEYS[h + 1]     usage stream (present only when ARGV[5] is not '')

      ARGV[1]         n, the number of windows
      ARGV[2]         now, ms
      ARGV[3]         cost, a non-negative integer (0 = pure lookup)
      ARGV[4]         mode: 'enforce' (consume only if every window admits) |
                            'record'  (consume even when denied)
      ARGV[5]         event: '' (none) | 'admitted' (append only when admitted) | 'always'
      ARGV[6]         stream MAXLEN, approximate (~)
      ARGV[7]         h, the number of hashes
      ARGV[8]         s, the number of window groups
      ARGV[9 ..]      per group: m, the number of its windows (at least 1); then for each of them
                      the field names <prefix>o, <prefix>t and <prefix>c; then for each of them
                      windowMs, buckets (windowMs a multiple of it), the current bucket index
                      ⌊now / (windowMs / buckets)⌋ and the field prefix ('' or '<slot>:')
      then            per hash, in KEYS order: its group's number (1..s), then the limit of each
                      of the group's windows, in the group's order. Windows are numbered 1..n in
                      this order.
      then            stream field, value, field, value ... (with 'always', the entry starts with
                      an `ok` field: '1' admitted, '0' denied)

    A group is what several hashes share: the key's, the user's and the device's hash usually
    hold the same windows (a minute and a day, say) under the same slots, and differ only in
    their limits. Each argument costs Redis a string to parse and another to make for ARGV, and
    sent once per group rather than once per hash, the windows of a five-dimension decision with
    a minute and a day window take 31 arguments instead of 85 (the call: 69 instead of 123).
    Redis runs ~7% fewer instructions per decision for it (`npm run bench:limiter -- --callgrind`:
    637k -> 591k for counters used a moment ago, 5-7% in every state), and parses each group's
    lengths and bucket indexes once.

    Output:
      { decision, used_1, remaining_1, reset_ms_1, ..., used_n, remaining_n, reset_ms_n }
        decision    1 admitted, 0 denied
        used_k      count of window k after this call (cost included only if consumed)
        remaining_k max(0, limit_k - used_k)
        reset_ms_k  ms until remaining_k rises if the request fits window k; if not, ms until a
                    request of the same cost would fit; windowMs if cost > limit_k (never fits)
      -1  malformed arguments (the caller validates first; this only guards the hashes); a
          window's limit, length, bucket count or index that is not a number is a script error

    Expiry: a hash lives as long as its newest bucket can still count in its longest window. Its
    TTL is set to max(W + B) over its windows when one of them opens a bucket that would otherwise
    outlive it. Invariant: the TTL ends no earlier than the last moment any stored bucket counts.
    A bucket opened at `now` counts until at most now + W + B, so setting the TTL then keeps the
    invariant; later writes to that bucket change nothing. And when another window of the hash
    already stores its current bucket c (of width B'), that bucket counts until
    (c + N' + 1) * B' > now + W', so the TTL already ends after now + W': a bucket opened in a
    window with W + B <= W' needs no PEXPIRE. That is the usual case of a minute window beside a
    day window, where the minute window opens a bucket every few seconds and the day window one an
    hour.
]]


local rcall = redis.call
local tonumber = tonumber
local floor = math.floor
local fmt = string.format

local n = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local mode = ARGV[4]
local eventWhen = ARGV[5]
local h = tonumber(ARGV[7])
local s = tonumber(ARGV[8])

if n == nil or h == nil or h < 1 or s == nil or s < 1 or now == nil or cost == nil or cost < 0
  or (mode ~= 'enforce' and mode ~= 'record') then
  return -1
end

-- A window's state, in an array (one allocation; named slots would cost a hash insert each).
local HASH, LIMIT, WINDOW_MS, BUCKETS, WIDTH, CURRENT, PREFIX, NAMES = 1, 2, 3, 4, 5, 6, 7, 8
local OLDEST, TOTAL, DIRTY, USED_BEFORE, HOT, HOT_COUNT, HOT_DIRTY, LEGACY = 9, 10, 11, 12, 13, 14, 15, 16
local CLEARED = 17

-- Field names as integers, on the rare paths: tostring would switch to exponent notation past 14
-- digits.
local function field(w, index)
  return w[PREFIX] .. string.format('%d', index)
end

-- The groups, each read once however many hashes share it: { m, first name's ARGV index, the
-- TTL its windows need, then per window its length, buckets, width, current bucket and prefix }.
local groups = {}
local pos = 9
for q = 1, s do
  local m = tonumber(ARGV[pos])
  if m == nil or m < 1 then return -1 end
  local names = pos + 1
  local params = names + 3 * m
  local group = { m, names, 0 }
  local ttl = 0
  for i = 1, m do
    local a = params + 4 * (i - 1)
    local windowMs, buckets = ARGV[a] + 0, ARGV[a + 1] + 0
    if buckets < 1 or windowMs % buckets ~= 0 then
      return -1
    end
    local width = windowMs / buckets
    if windowMs + width > ttl then ttl = windowMs + width end
    local b = 3 + 5 * (i - 1)
    group[b + 1], group[b + 2], group[b + 3], group[b + 4], group[b + 5] =
      windowMs, buckets, width, ARGV[a + 2] + 0, ARGV[a + 3]
  end
  group[3] = ttl
  groups[q] = group
  pos = params + 4 * m
end

-- One read per hash serves the common case: for each window its oldest bucket, its total and the
-- current bucket's count, which lets the write below be a plain HSET and tells whether the bucket
-- is new (the only time the TTL has to move).
local windows, nwin = {}, 0
local hashOf = {}   -- hash index -> { first window, last window, ttl }
for g = 1, h do
  local group = groups[tonumber(ARGV[pos])]
  if group == nil then return -1 end
  local m, names = group[1], group[2]
  local values = rcall('HMGET', KEYS[g], unpack(ARGV, names, names + 3 * m - 1))
  for i = 1, m do
    local total = tonumber(values[3 * i - 1]) or 0
    local packed = tonumber(values[3 * i - 2])
    local hotCount = tonumber(values[3 * i]) or 0
    local oldest, hot, legacy = packed, nil, false
    if packed == nil or total == 0 then
      -- Empty (a window emptied in a shared hash keeps its `o`, `t` = 0 and `c` = 0 in place).
      oldest, hotCount = nil, 0
    elseif packed < 0 then
      local v = -packed - 1
      oldest = floor(v / 1024)
      if hotCount > 0 then hot = oldest + v % 1024 end
    else
      -- Written by an older version: every bucket under its own field.
      legacy, hotCount = true, 0
    end
    local b = 3 + 5 * (i - 1)
    nwin = nwin + 1
    windows[nwin] = {
      g, ARGV[pos + i] + 0, group[b + 1], group[b + 2], group[b + 3], group[b + 4], group[b + 5],
      names + 3 * (i - 1), oldest, total, false, total, hot, hotCount, false, legacy, false
    }
  end
  hashOf[g] = { nwin - m + 1, nwin, group[3] }
  pos = pos + 1 + m
end
if nwin ~= n then return -1 end

-- Forgets a window: its buckets from..to (every field it can hold there; below the newest
-- bucket, which has none). A hash that holds only this window goes at once; in a shared hash `o`,
-- `t` and `c` stay where they are, near its start, and `t` = 0 marks the window empty.
local function clearWindow(w, from, to)
  local hash = hashOf[w[HASH]]
  if hash[1] == hash[2] then
    rcall('DEL', KEYS[w[HASH]])
  else
    if w[HOT] ~= nil and w[HOT_COUNT] > 0 and w[HOT] <= to then to = w[HOT] - 1 end
    if from <= to then
      local names = {}
      for b = from, to do names[#names + 1] = field(w, b) end
      rcall('HDEL', KEYS[w[HASH]], unpack(names))
    end
  end
  w[OLDEST], w[TOTAL], w[HOT], w[HOT_COUNT], w[LEGACY], w[DIRTY] = nil, 0, nil, 0, false, false
  -- In a shared hash `t` and `c` are written back as 0 (`o` may stay: `t` = 0 says empty).
  w[CLEARED] = hash[1] ~= hash[2]
  w[HOT_DIRTY] = w[CLEARED]
end

-- `o` as stored: the oldest and the newest bucket (a window still in the older form: the oldest).
local function packedOldest(w)
  if w[LEGACY] then return w[OLDEST] end
  local d = 0
  if w[HOT] ~= nil and w[HOT_COUNT] > 0 then d = w[HOT] - w[OLDEST] end
  return -(w[OLDEST] * 1024 + d) - 1
end

-- For a window in the older form, about to write `bucket`: the count its own field holds, to be
-- carried into `c`; or nil while a bucket newer than `bucket` exists (a caller whose clock ran
-- ahead), which keeps the window in that form for now, since `c` may only hold the newest bucket.
-- Once per window, at its first new bucket after an upgrade.
local function legacyCount(w, g, bucket)
  local names = {}
  for b = bucket, w[OLDEST] + w[BUCKETS] do names[#names + 1] = field(w, b) end
  local counts = rcall('HMGET', KEYS[g], unpack(names))
  for i = 2, #names do
    if counts[i] then return nil end
  end
  return tonumber(counts[1]) or 0
end

-- The part of bucket b's count held in `c`.
local function hotPart(w, b)
  if w[HOT] == b then return w[HOT_COUNT] end
  return 0
end

for k = 1, n do
  local w = windows[k]
  -- Expire buckets older than current - N. `oldest` only moves forward, so each bucket index is
  -- walked once over the window's life: amortised O(1) per check.
  local cutoff = w[CURRENT] - w[BUCKETS]
  local oldest = w[OLDEST]
  if oldest ~= nil and oldest < cutoff then
    local key = KEYS[w[HASH]]
    if cutoff - oldest > w[BUCKETS] then
      -- Every field lies in [oldest, oldest + N]: nothing survives a larger gap.
      clearWindow(w, oldest, oldest + w[BUCKETS])
    else
      -- Buckets oldest .. cutoff - 1 go; `cutoff` is read along, as it is usually the next oldest.
      local walked = {}
      for b = oldest, cutoff do walked[#walked + 1] = field(w, b) end
      local counts = rcall('HMGET', key, unpack(walked))
      local gone = {}
      local total = w[TOTAL]
      for i = 1, #walked - 1 do
        if counts[i] then
          total = total - tonumber(counts[i])
          gone[#gone + 1] = walked[i]
        end
        local hot = hotPart(w, oldest + i - 1)
        if hot > 0 then
          -- Only when every bucket goes (`i` is the newest), but kept exact whatever the state.
          total = total - hot
          w[HOT], w[HOT_COUNT], w[HOT_DIRTY], w[DIRTY] = nil, 0, true, true
        end
      end
      if total <= 0 then
        clearWindow(w, oldest, cutoff)
      else
        if #gone > 0 then rcall('HDEL', key, unpack(gone)) end
        w[TOTAL] = total
        local last = oldest + w[BUCKETS]
        if counts[#walked] or hotPart(w, cutoff) > 0 then
          w[OLDEST] = cutoff
          w[DIRTY] = true
        else
          local rest = {}
          for b = cutoff + 1, last do rest[#rest + 1] = field(w, b) end
          local found = nil
          if #rest > 0 then
            local more = rcall('HMGET', key, unpack(rest))
            for i = 1, #rest do
              if more[i] or hotPart(w, cutoff + i) > 0 then
                found = cutoff + i
                break
              end
            end
          end
          if found == nil then
            -- total > 0 promises a field in range; an inconsistent window is dropped, not looped on.
            clearWindow(w, oldest, last)
          else
            w[OLDEST] = found
            w[DIRTY] = true
          end
        end
      end
    end
    w[USED_BEFORE] = w[TOTAL]
  end
end

-- Decide on every window before consuming from any: all or nothing.
local admitted = true
for k = 1, n do
  local w = windows[k]
  if w[TOTAL] + cost > w[LIMIT] then
    admitted = false
    break
  end
end

-- Counts and packed indexes go to HSET as '%d' text: Lua 5.1 formats %d from a 64-bit integer,
-- exact for every integer a window can hold.
local consume = cost > 0 and (admitted or mode == 'record')
for g = 1, h do
  local hash = hashOf[g]
  -- Made at the size two windows' usual writes take, and filled by count: a table grown one
  -- `#t + 1` at a time is resized at 1, 2, 4 and 8 entries, and `#` is a search of its own
  -- (~2x the cost of this, measured in Redis's Lua).
  local writes, nw = nil, 0
  -- The most W + B among windows opening a bucket here, and the most W among windows whose
  -- current bucket was already stored (see Expiry below).
  local freshNeed, covered = 0, 0
  for k = hash[1], hash[2] do
    local w = windows[k]
    local names = w[NAMES]
    if consume then
      writes = writes or { nil, nil, nil, nil, nil, nil, nil, nil }
      -- A skewed, earlier `now` must not write below `oldest`: that field would never be walked.
      local bucket = w[CURRENT]
      if w[OLDEST] ~= nil and w[OLDEST] > bucket then bucket = w[OLDEST] end
      local opened = false
      local hot = w[HOT]
      -- A window in the older form has no `c` (hot is nil) until its count can be carried there.
      local carried = 0
      if w[LEGACY] then carried = legacyCount(w, g, bucket) end
      if hot ~= nil and bucket == hot then
        -- The usual call: the newest bucket grows, in `c`.
        w[HOT_COUNT] = w[HOT_COUNT] + cost
      elseif carried ~= nil and (hot == nil or bucket > hot) then
        -- A new newest bucket: the last one's count moves to its own field (which it did not have
        -- while in `c`), once a bucket.
        if hot ~= nil then
          writes[nw + 1], writes[nw + 2] = field(w, hot), fmt('%d', w[HOT_COUNT])
          nw = nw + 2
        elseif carried > 0 then
          rcall('HDEL', KEYS[g], field(w, bucket))
        end
        w[LEGACY] = false
        w[HOT], w[HOT_COUNT] = bucket, carried + cost
        w[DIRTY] = true -- `o` holds the newest bucket too
        opened = carried == 0
      else
        -- A skewed, earlier `now` below the newest bucket, or a window still in the older form:
        -- straight to the bucket's own field.
        opened = tonumber(rcall('HINCRBY', KEYS[g], field(w, bucket), cost)) == cost
      end
      if w[HOT] == bucket then w[HOT_DIRTY] = true end
      if opened then
        if w[WINDOW_MS] + w[WIDTH] > freshNeed then freshNeed = w[WINDOW_MS] + w[WIDTH] end
      elseif w[WINDOW_MS] > covered then
        covered = w[WINDOW_MS]
      end
      w[TOTAL] = w[TOTAL] + cost
      if w[OLDEST] == nil then
        w[OLDEST] = bucket
        w[DIRTY] = true
      end
    end
    -- `c`, `t` and `o` in that order: a hash's first write puts them at its start.
    if w[HOT_DIRTY] then
      writes = writes or { nil, nil, nil, nil, nil, nil, nil, nil }
      writes[nw + 1], writes[nw + 2] = ARGV[names + 2], fmt('%d', w[HOT_COUNT])
      nw = nw + 2
    end
    if consume or w[DIRTY] or w[CLEARED] then
      -- Expiry moved `o` and `t` (or emptied `c`): they are written back, consumed or not.
      writes = writes or { nil, nil, nil, nil, nil, nil, nil, nil }
      writes[nw + 1], writes[nw + 2] = ARGV[names + 1], fmt('%d', w[TOTAL])
      nw = nw + 2
    end
    if w[DIRTY] then
      writes[nw + 1], writes[nw + 2] = ARGV[names], fmt('%d', packedOldest(w))
      nw = nw + 2
    end
  end
  if nw > 0 then rcall('HSET', KEYS[g], unpack(writes, 1, nw)) end
  if freshNeed > covered then rcall('PEXPIRE', KEYS[g], hash[3]) end
end

-- Ms until the count of window w is at most target, expiring its oldest buckets first.
local function msUntilAtMost(w, target)
  local need = w[TOTAL] - target
  -- `oldest` always holds a positive count, so it alone frees one: the usual case reads nothing.
  if need <= 1 then return (w[OLDEST] + w[BUCKETS] + 1) * w[WIDTH] - now end
  local freed = 0
  local bucket = w[OLDEST]
  for _ = 0, w[BUCKETS] do
    local count = rcall('HGET', KEYS[w[HASH]], field(w, bucket))
    if count then freed = freed + tonumber(count) end
    freed = freed + hotPart(w, bucket)
    if freed >= need then break end
    bucket = bucket + 1
  end
  return (bucket + w[BUCKETS] + 1) * w[WIDTH] - now
end

local reply = { admitted and 1 or 0 }
for k = 1, n do
  local w = windows[k]
  local total, limit = w[TOTAL], w[LIMIT]
  local fits = w[USED_BEFORE] + cost <= limit
  local resetMs
  if not fits and cost > limit then
    resetMs = w[WINDOW_MS]
  elseif total == 0 then
    resetMs = 0
  elseif fits then
    resetMs = msUntilAtMost(w, total - 1)
  else
    resetMs = msUntilAtMost(w, limit - cost)
  end
  local remaining = limit - total
  if remaining < 0 then remaining = 0 end
  reply[3 * k - 1] = total
  reply[3 * k] = remaining
  reply[3 * k + 1] = resetMs
end

if eventWhen == 'admitted' and admitted then
  rcall('XADD', KEYS[h + 1], 'MAXLEN', '~', ARGV[6], '*', unpack(ARGV, pos))
elseif eventWhen == 'always' then
  -- The caller cannot know the outcome when it builds the event: `ok` records it.
  rcall('XADD', KEYS[h + 1], 'MAXLEN', '~', ARGV[6], '*', 'ok', admitted and '1' or '0', unpack(ARGV, pos))
end

return reply
