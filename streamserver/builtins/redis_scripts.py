"""The Lua scripts of the ``redis`` stream store (``redis_stream_store.py``): each runs atomically in
Redis, so what they check and what they change cannot be interleaved with another instance's
writes. Keys and arguments are listed with each."""

from __future__ import annotations

APPEND = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'live' then return -1 end
local start, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local written = tonumber(redis.call('HGET', KEYS[1], 'w') or '0')
if start < written then return 0 end
if start > written then return -2 end
local closed = ARGV[5] == '1'
if closed then
  redis.call('XADD', KEYS[2], (start + 1) .. '-0', 'n', n, 'z', ARGV[3], 'd', ARGV[4], 'c', 1)
else
  redis.call('XADD', KEYS[2], (start + 1) .. '-0', 'n', n, 'z', ARGV[3], 'd', ARGV[4])
end
local size = string.len(ARGV[4])
redis.call('RPUSH', KEYS[3], start .. ' ' .. size)
local total = redis.call('HINCRBY', KEYS[1], 'bytes', size)
redis.call('HSET', KEYS[1], 'w', start + n)
local budget = tonumber(ARGV[8])
if budget > 0 and total > budget and redis.call('LLEN', KEYS[3]) > 1 then
  while total > budget and redis.call('LLEN', KEYS[3]) > 1 do
    total = total - tonumber(string.match(redis.call('LPOP', KEYS[3]), ' (%d+)$'))
  end
  local base = tonumber(string.match(redis.call('LINDEX', KEYS[3], 0), '^(%d+)'))
  redis.call('XTRIM', KEYS[2], 'MINID', (base + 1) .. '-0')
  redis.call('HSET', KEYS[1], 'base', base, 'bytes', total)
end
if closed then
  redis.call('HSET', KEYS[1], 'state', 'done', 'end', start + n)
  if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'record', ARGV[9]) end
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
  redis.call('ZADD', KEYS[5], ARGV[11], ARGV[10])
elseif redis.call('PTTL', KEYS[2]) < 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
end
return 1
"""
"""Append one entry to a live stream's log, once: an entry that starts below what is stored
is a retry of a write that did reach Redis (0, skipped); one above it would leave a gap (-2);
a stream no longer live (ended, or marked lost) takes nothing (-1). It keeps the byte budget
(``RPUSH`` of each entry's size, ``XTRIM MINID`` of the oldest), and a closing entry ends the
stream: state, end, record, retention, the list of finished streams.
KEYS: meta, log, sizes, readers, finished; ARGV: start, n, z, d, closed, live_ms, retain_ms,
max_bytes, record, stream id, now (ms)."""

CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
if ARGV[1] ~= '' then
  local earlier = redis.call('GET', KEYS[2])
  if earlier and redis.call('EXISTS', ARGV[5] .. ':{' .. earlier .. '}:m') == 1 then
    return earlier
  end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
end
redis.call('HSET', KEYS[1], 'meta', ARGV[2], 'base', 0, 'w', 0, 'state', 'live')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return false
"""
"""Publish a stream and, with an ``Idempotency-Key``, claim it in the same step: an earlier
claim whose stream is still kept wins (its id is returned); one whose stream is gone is taken
over. A stream already published (a retried write that had reached Redis) is left as it is.
KEYS: meta, claim; ARGV: stream id (or '' without a key), meta JSON, live_ms, -, prefix.
(The claim and the meta are on two slots: like the list of finished streams, this needs a
standalone Redis, not Cluster.)"""

RENEW = """
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return 1
"""
"""Keep one running stream's keys for ``live_ms`` more: one call and one reply per stream, not
one per key. KEYS: meta, log, sizes, readers; ARGV: live_ms."""

MARK_LOST = """
if redis.call('HGET', KEYS[1], 'state') ~= 'live' then return 0 end
local at = tonumber(redis.call('HGET', KEYS[1], 'w') or '0')
redis.call('HSET', KEYS[1], 'state', 'lost', 'end', at)
redis.call('XADD', KEYS[2], (at + 1) .. '-0', 'n', 0, 'c', 1, 'x', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""
"""Mark a live stream lost (once) after what is stored, with a last log entry that says so."""

EVICT = """
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if excess <= 0 then return {} end
return redis.call('ZPOPMIN', KEYS[1], excess)
"""
"""Take the oldest finished streams beyond ``max_streams`` off the list of finished ones, and
return them (with their scores) for their keys to be deleted. In one step: two instances
evicting at once (each renews its lease with an eviction) take the excess once between them,
where a count read before another's removal would take twice as many. KEYS: done; ARGV:
max_streams."""
