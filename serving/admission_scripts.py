"""The two Lua scripts behind :class:`~serving.admission_redis.RedisAdmission`, and the bucket shape they take.

Keys per tenant: ``switchyard:adm:{<tenant>}:b`` — a hash: ``r`` requests, ``t`` tokens, ``ts``
refill time (Redis server seconds), ``x`` the hash's own expiry and ``cx`` the slot set's
expiry (server seconds) — and ``switchyard:adm:{<tenant>}:c``, a sorted set of reservation ids
scored by lease deadline. The ``{tenant}`` hash tag keeps both in one Redis Cluster slot and
every script touches one tenant only.

A missing bucket hash is a full bucket, so the hash may expire once refill would have filled
it. Expiry is set only when the recorded one (``x``, ``cx``) would come too soon, and then with
headroom (:data:`BUCKET_HEADROOM_S`, ``min(lease, 60 s)`` for the slot set), so a busy tenant's
keys get a ``PEXPIRE`` about once per headroom, not per call. The slot set holds a sentinel
member ``~`` scored ``+inf`` (not counted as a slot), so releasing its last slot does not make
Redis delete it and its expiry stays; a slot set created anew (``ZCARD`` 0) gets the sentinel
and its expiry with its first slot.

Commands per admit: ``TIME``, ``ZREMRANGEBYSCORE``, ``ZCARD``, ``HMGET``, ``HSET``, ``ZADD``
(+ the rare ``PEXPIRE``). Per release batch of one tenant: ``ZREM`` of every slot, then — when
any usage is known — ``HMGET``, ``TIME``, ``HSET`` once for the summed refund or charge
(``PEXPIRE`` only when a net charge could outlive the recorded expiry; a refund to a missing,
i.e. full, bucket writes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from serving.admission import AdmissionLimits
from serving.resp_client import LuaScript
from serving.tenants import Quotas

BUCKET_HEADROOM_S = 10.0
SLOT_SET_HEADROOM_MAX_S = 60.0

# Shared by both scripts. ARGV[1..4]: request rate, request capacity, token rate, token capacity.
_BUCKET = (
    """
local req_rate, req_cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local tok_rate, tok_cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(v) return string.format('%.17g', v) end
local function refilled(s, now)
  local r, tk, ts = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
  if not r then return req_cap, tok_cap, now end
  local elapsed = now - ts
  if elapsed > 0 then
    r = math.min(req_cap, r + elapsed * req_rate)
    tk = math.min(tok_cap, tk + elapsed * tok_rate)
    ts = now
  end
  return r, tk, ts
end
-- fields to write for r, tk, ts; appends x (and returns its ttl in ms) when the hash must live longer
local function bucket_fields(r, tk, ts, now, x)
  local fields = {'r', fmt(r), 't', fmt(tk), 'ts', fmt(ts)}
  local full_at = now + math.max((req_cap - r) / req_rate, (tok_cap - tk) / tok_rate) + 1
  if x and x >= full_at then return fields, nil end
  local expires = full_at + """
    + repr(BUCKET_HEADROOM_S)
    + """
  fields[#fields + 1] = 'x'
  fields[#fields + 1] = fmt(expires)
  return fields, math.ceil((expires - now) * 1000)
end
"""
)

# KEYS: bucket hash, slot set. ARGV[5..]: tokens to reserve, max concurrency, lease seconds,
# reservation id, request slack, token slack.
# Returns {"ok", now} | {"c"} (concurrency) | {"r", request wait, token wait} (seconds).
CHECK_AND_RESERVE = LuaScript.of(
    _BUCKET
    + """
local est, lease = tonumber(ARGV[5]), tonumber(ARGV[7])
local now = server_now()
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local members = redis.call('ZCARD', KEYS[2])
local held = math.max(0, members - 1)
if held >= tonumber(ARGV[6]) then return {'c'} end
local s = redis.call('HMGET', KEYS[1], 'r', 't', 'ts', 'x', 'cx')
local r, tk, ts = refilled(s, now)
local need = math.min(est, tok_cap)
if r < 1 - tonumber(ARGV[9]) or tk < need - tonumber(ARGV[10]) then
  local rw = math.max(0, (1 - r) / req_rate)
  local tw = math.max(0, (need - tk) / tok_rate)
  return {'r', fmt(rw), fmt(tw)}
end
local fields, bucket_ttl = bucket_fields(r - 1, tk - est, ts, now, tonumber(s[4]))
local cx, slots_ttl = tonumber(s[5]), nil
if members == 0 or not cx or cx < now + lease + 1 then
  local expires = now + lease + 1 + math.min(lease, """
    + repr(SLOT_SET_HEADROOM_MAX_S)
    + """)
  slots_ttl = math.ceil((expires - now) * 1000)
  fields[#fields + 1] = 'cx'
  fields[#fields + 1] = fmt(expires)
end
redis.call('HSET', KEYS[1], unpack(fields))
if bucket_ttl then redis.call('PEXPIRE', KEYS[1], bucket_ttl) end
if members == 0 then
  redis.call('ZADD', KEYS[2], now + lease, ARGV[8], '+inf', '~')
else
  redis.call('ZADD', KEYS[2], now + lease, ARGV[8])
end
if slots_ttl then redis.call('PEXPIRE', KEYS[2], slots_ttl) end
return {'ok', fmt(now)}
"""
)

# KEYS: bucket hash, slot set. ARGV[5]: n, ARGV[6..5+n]: reservation ids, ARGV[6+n]: the summed
# reserved − actual tokens of those with known usage ('' = none known: reservations stay charged).
# Returns how many of the slots were still held (the others' leases had expired).
RELEASE_AND_RECONCILE = LuaScript.of(
    _BUCKET
    + """
local n = tonumber(ARGV[5])
local freed = redis.call('ZREM', KEYS[2], unpack(ARGV, 6, 5 + n))
local delta = ARGV[6 + n]
if delta == '' then return freed end
local d = tonumber(delta)
local s = redis.call('HMGET', KEYS[1], 'r', 't', 'ts', 'x')
if d >= 0 and not s[1] then return freed end
local now = server_now()
local r, tk, ts = refilled(s, now)
tk = math.min(tok_cap, tk + d)
local x = tonumber(s[4])
if d >= 0 then x = math.huge end
local fields, bucket_ttl = bucket_fields(r, tk, ts, now, x)
redis.call('HSET', KEYS[1], unpack(fields))
if bucket_ttl then redis.call('PEXPIRE', KEYS[1], bucket_ttl) end
return freed
"""
)


@dataclass(frozen=True)
class BucketShape:
    """A tenant's bucket rates and capacities, as the scripts' first four arguments."""

    request_rate: float
    request_capacity: float
    token_rate: float
    token_capacity: float
    args: tuple[str, str, str, str]

    @classmethod
    def of(cls, quotas: Quotas, limits: AdmissionLimits) -> BucketShape:
        request_rate = quotas.requests_per_minute / 60.0
        token_rate = quotas.tokens_per_minute / 60.0
        request_capacity = max(1.0, request_rate * limits.request_burst_s)
        token_capacity = max(1.0, token_rate * limits.token_burst_s)
        args = (repr(request_rate), repr(request_capacity), repr(token_rate), repr(token_capacity))
        return cls(request_rate, request_capacity, token_rate, token_capacity, args)
