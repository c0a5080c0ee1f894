"""Lua scripts of :mod:`.redis`: each multi-key operation runs as one script, so it is atomic
across nodes (Redis runs a script to completion before any other command).

Times inside scripts come from the server's ``TIME``, so nodes with skewed clocks agree on
expiry. Scripts build no key names from data except ``LIVE_NODES`` (node keys from the node
set), so the bus targets one Redis primary, not Redis Cluster.
"""

from __future__ import annotations

__all__ = [
    "CHAT_APPEND",
    "CHAT_DROP",
    "CHAT_SINCE",
    "CLAIM_HOME",
    "ENSURE_EPOCH",
    "LIVE_NODES",
    "PRESENCE_ADD",
    "PRESENCE_LIST",
    "PRESENCE_REFRESH",
    "QUEUE_CLAIM",
    "QUEUE_ENTRIES",
    "QUEUE_PUT",
    "QUEUE_REMOVE",
    "RAISE_FLOORS",
    "REFRESH_HOME",
    "REGISTER_NODE",
    "RELEASE_HOME",
]

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: KEYS: seq, log (stream), dedupe (zset key -> seq), bytes (record JSON bytes in the log).
#: ARGV: dedupe key, record JSON, max records, ttl s, floor (highest seq the caller knows),
#: publish channel or '', max bytes.
#: Returns {created 0/1, seq, record JSON or nil, records dropped to stay within the bounds}.
CHAT_APPEND = """
local found = redis.call('ZSCORE', KEYS[3], ARGV[1])
if found then
  local id = found .. '-0'
  local hit = redis.call('XRANGE', KEYS[2], id, id)
  if #hit > 0 then return {0, found, hit[1][2][2], 0} end
  return {0, found, false, 0}
end
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[5])
if floor > cur then cur = floor end
-- The counter can vanish while the log survives (eviction): never reuse an id.
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #top > 0 then
  local last = tonumber(string.match(top[1][1], '^(%d+)-'))
  if last > cur then cur = last end
end
local seq = cur + 1
local ttl = tonumber(ARGV[4])
-- The byte count can vanish too: count the retained log again (it is bounded).
if redis.call('EXISTS', KEYS[4]) == 0 then
  local sum = 0
  for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '-', '+')) do
    sum = sum + string.len(entry[2][2])
  end
  redis.call('SET', KEYS[4], sum)
end
redis.call('SET', KEYS[1], seq, 'EX', ttl)
redis.call('XADD', KEYS[2], seq .. '-0', 'r', ARGV[2])
local total = redis.call('INCRBY', KEYS[4], string.len(ARGV[2]))
local max_records = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[7])
local count = redis.call('XLEN', KEYS[2])
local dropped = 0
-- The oldest go first, never the newest: the retained log stays within both bounds.
while count > 1 and (count > max_records or total > max_bytes) do
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
  redis.call('XDEL', KEYS[2], oldest[1][1])
  total = redis.call('DECRBY', KEYS[4], string.len(oldest[1][2][2]))
  count = count - 1
  dropped = dropped + 1
end
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[4], ttl)
redis.call('ZADD', KEYS[3], seq, ARGV[1])
-- Dedupe keys are kept as long as their records are.
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local first_seq = tonumber(string.match(first[1][1], '^(%d+)-'))
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. first_seq)
redis.call('EXPIRE', KEYS[3], ttl)
-- Published in the same script as the seq is taken: subscribers see seq order.
if ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[6], '{"type":"chat","seq":' .. seq .. ',' .. string.sub(ARGV[2], 2))
end
return {1, seq, false, dropped}
"""

#: KEYS: seq, log, dedupe, bytes. Forgets a finished room's chat.
CHAT_DROP = """
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
"""

#: KEYS: seq, log. ARGV: after (0 = no floor), start id, count, ttl s.
#: A client that has seen ``after`` proves the room reached it: the counter is raised so a log
#: that Redis lost never hands out those numbers again.
CHAT_SINCE = """
local after = tonumber(ARGV[1])
if after > 0 then
  local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
  if after > cur then redis.call('SET', KEYS[1], after, 'EX', ARGV[4]) end
end
return redis.call('XRANGE', KEYS[2], ARGV[2], '+', 'COUNT', ARGV[3])
"""

#: KEYS: seq keys. ARGV: ttl s, then one floor per key.
RAISE_FLOORS = """
for i, key in ipairs(KEYS) do
  local floor = tonumber(ARGV[i + 1])
  local cur = tonumber(redis.call('GET', key) or '0')
  if floor > cur then redis.call('SET', key, floor, 'EX', ARGV[1]) end
end
return #KEYS
"""

# Presence values are "<expiry ms> <node id> <participant JSON>".

#: KEYS: presence hash. ARGV: participant id, participant JSON, node id, ttl ms.
PRESENCE_ADD = (
    _NOW_MS
    + """
local ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], (now + ttl) .. ' ' .. ARGV[3] .. ' ' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""
)

#: KEYS: presence hash. Returns the live values; drops expired ones.
PRESENCE_LIST = (
    _NOW_MS
    + """
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local expiry = tonumber(string.match(all[i + 1], '^(%d+) '))
  if expiry and expiry > now then
    live[#live + 1] = all[i + 1]
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return live
"""
)

#: KEYS: presence hash. ARGV: node id, ttl ms, then pairs (participant id, JSON).
#: Extends this node's entries and re-creates missing ones (expired during a stall, or lost
#: with Redis's data); an entry another node wrote since (the participant moved) is left alone.
PRESENCE_REFRESH = (
    _NOW_MS
    + """
local ttl = tonumber(ARGV[2])
local kept = 0
for i = 3, #ARGV, 2 do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  local owner = value and string.match(value, '^%d+ (%S+) ')
  if not value or owner == ARGV[1] then
    redis.call('HSET', KEYS[1], ARGV[i], (now + ttl) .. ' ' .. ARGV[1] .. ' ' .. ARGV[i + 1])
    kept = kept + 1
  end
end
if kept > 0 and redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return kept
"""
)

#: KEYS: queue zset, entries hash. ARGV: case id, waiting since, entry JSON.
QUEUE_PUT = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""

#: KEYS: queue zset, entries hash. ARGV: case id.
QUEUE_REMOVE = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return removed
"""

#: KEYS: queue zset, entries hash. Returns flat {case, score, JSON, ...}, longest wait first.
QUEUE_ENTRIES = """
local ranked = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #ranked, 2 do
  out[#out + 1] = ranked[i]
  out[#out + 1] = ranked[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], ranked[i]) or '{}'
end
return out
"""

#: KEYS: queue zset, entries hash, claim marker. ARGV: case id, claim token, marker ttl s.
#: The marker lets a caller whose first attempt won but whose reply was lost (connection
#: dropped) recognise its own win on retry instead of reporting a loss.
QUEUE_CLAIM = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
  return 1
end
if redis.call('GET', KEYS[3]) == ARGV[2] then return 1 end
return 0
"""

#: KEYS: epoch. ARGV: a fresh token. Returns the epoch in force (creating it if missing): a
#: changed epoch means Redis lost its data since the caller last looked.
ENSURE_EPOCH = """
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""

#: KEYS: node key, node set. ARGV: node id, info JSON, ttl ms.
REGISTER_NODE = """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

#: KEYS: node set. ARGV: node key prefix. Returns flat {id, info JSON, ...}; forgets dead ids.
LIVE_NODES = """
local ids = redis.call('SMEMBERS', KEYS[1])
local out = {}
for _, id in ipairs(ids) do
  local info = redis.call('GET', ARGV[1] .. id)
  if info then
    out[#out + 1] = id
    out[#out + 1] = info
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
"""

#: KEYS: home key. ARGV: node id, ttl ms. Returns the home (the caller's if it was free).
CLAIM_HOME = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return ARGV[1] end
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return cur
"""

#: KEYS: home key. ARGV: node id, ttl ms. Returns 1 while the node holds the room (taking it
#: again if the key vanished), 0 once another node has it.
REFRESH_HOME = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

#: KEYS: home key. ARGV: node id. Deletes the home only if that node holds it.
RELEASE_HOME = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
