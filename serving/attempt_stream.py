"""The Redis side of shared live stats: one stream of attempt batches from every process, one leader lease.

Keys (``prefix`` holds a hash tag, so both live in one Redis Cluster slot):

- ``<prefix>attempts`` — a stream; each entry is one process's batch of attempts from one sync
  (fields ``id``: ``<instance>:<seq>``, ``rows``: Arrow IPC, zstd, ``ATTEMPT_SCHEMA``), trimmed to
  the last ``retain_s`` by the Redis server's clock (MINID) at every call that adds to it, and
  expiring ``retain_s`` after the last addition.
- ``<prefix>leader`` — the lease: the holder's instance id, ``PX lease_s``.
- ``<prefix>epoch`` — set by the first call that finds it missing, expiring with the stream: a
  change tells a process the stream was lost (Redis restarted empty, or failed over without it),
  and it sends again its batches of the last ``retain_s`` (kept after sending for that).

:meth:`AttemptStream.share_and_lease` is one script call per sync: add the kept batches, trim,
and take the lease if free (``SET NX PX``) or renew it if held. The leader then reads what it
has not read (:meth:`AttemptStream.read_new`). Every method here is blocking: the caller runs it
in a worker thread, on a client whose socket timeouts bound each call (``redis.RedisError`` or
``OSError`` when Redis is down or slow).
"""

from __future__ import annotations

import io
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl
import redis

from serving.live_push import ATTEMPT_SCHEMA

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveShareConfig:
    period_s: float = 5.0  # one sync (share, lease, and for the leader: merge, compute, push) per period
    lease_s: float = 15.0  # a silent leader is replaced after this
    retain_s: float = 17 * 60.0  # the stream's and kept batches' horizon (15-min window + slack)
    timeout_s: float = 0.05  # each Redis call; slower is a failure (degraded mode)
    max_rows: int = 1_000_000  # per buffer: own attempts, the leader's merged attempts, unsent rows
    read_count: int = 16  # stream entries per read
    max_send_bytes: int = 2_000_000  # kept batches sent per sync besides the newest one
    prefix: str = "switchyard:live:{sku_stats}:"


# KEYS: stream, lease, epoch. ARGV: holder, lease ms, retain ms, then (batch id, payload) pairs.
# Returns {1 if the caller holds the lease after the call else 0, the stream's epoch}.
_SHARE_AND_LEASE = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[1] .. ':' .. string.format('%d', now_ms)
  redis.call('SET', KEYS[3], epoch, 'PX', ARGV[3])
end
if #ARGV > 3 then
  for i = 4, #ARGV, 2 do
    redis.call('XADD', KEYS[1], '*', 'id', ARGV[i], 'rows', ARGV[i + 1])
  end
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', now_ms - tonumber(ARGV[3])))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {1, epoch}
end
if not holder then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return {1, epoch}
end
return {0, epoch}
"""

# KEYS: lease. ARGV: holder. Deletes the lease only if the caller holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def encode_attempts(frame: pl.DataFrame) -> bytes:
    """Attempt rows (``ATTEMPT_SCHEMA``) as one Arrow IPC file, zstd-compressed (~40 bytes a row)."""
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="zstd")
    return buffer.getvalue()


def decode_attempts(payload: bytes) -> pl.DataFrame:
    """The frame :func:`encode_attempts` wrote; ``ValueError`` unless it has ``ATTEMPT_SCHEMA``."""
    frame = pl.read_ipc(io.BytesIO(payload))
    if frame.schema != ATTEMPT_SCHEMA:
        raise ValueError(f"attempt batch with schema {dict(frame.schema)}")
    return frame


@dataclass(frozen=True, slots=True)
class _Batch:
    batch_id: bytes
    payload: bytes
    rows: int
    latest_end: float  # epoch s when its last attempt ended


class AttemptStream:
    """One process's end of the stream: its batches out (kept until sent), the lease, the leader's reads."""

    def __init__(self, client: redis.Redis, instance_id: str, config: LiveShareConfig) -> None:
        self._client = client
        self.instance_id = instance_id
        self.config = config
        self._share = client.register_script(_SHARE_AND_LEASE)
        self._release = client.register_script(_RELEASE)
        self.stream_key = f"{config.prefix}attempts"
        self.lease_key = f"{config.prefix}leader"
        self.epoch_key = f"{config.prefix}epoch"
        self._epoch: bytes | None = None
        self._unsent: deque[_Batch] = deque()
        self._sent: deque[_Batch] = deque()  # sent within retain_s: sent again if the stream is lost
        self._seq = 0
        self._cursor: bytes | None = None  # the last entry read; None: read from the start
        self._seen: dict[bytes, float] = {}  # batch ids read → when they may be forgotten
        self.dropped = 0  # kept rows dropped beyond max_rows
        self.duplicate_batches = 0  # batches read twice (a timed-out call Redis had applied), skipped
        self.bad_batches = 0  # entries that did not decode, skipped
        self.streams_lost = 0  # epoch changes seen (the batches of the last retain_s were sent again)

    @property
    def unsent_batches(self) -> int:
        return len(self._unsent)

    def add(self, frame: pl.DataFrame, latest_end: float) -> None:
        """Keep a batch of new attempts until a call sends it (``latest_end``: when its last attempt ended)."""
        self._seq += 1
        batch_id = f"{self.instance_id}:{self._seq}".encode()
        self._unsent.append(_Batch(batch_id, encode_attempts(frame), frame.height, latest_end))

    def prune(self, now: float) -> None:
        """Forget batches that ended before ``now - retain_s`` (no row needs them); drop the oldest
        unsent ones beyond ``max_rows``."""
        horizon = now - self.config.retain_s
        while self._sent and self._sent[0].latest_end < horizon:
            self._sent.popleft()
        kept = sum(batch.rows for batch in self._unsent)
        while self._unsent and (self._unsent[0].latest_end < horizon or kept > self.config.max_rows):
            batch = self._unsent.popleft()
            kept -= batch.rows
            if batch.latest_end >= horizon:
                self.dropped += batch.rows

    def share_and_lease(self) -> tuple[bool, int]:
        """Send the newest batch and kept ones (oldest first, up to ``max_send_bytes``), take or renew the lease.

        Returns (this process holds the lease, attempts sent). On failure nothing is dropped.
        When the call finds a new epoch, every batch sent in the last ``retain_s`` is queued to
        be sent again (same ids: a leader that already read one skips it).
        """
        sending = list(self._unsent)[-1:]
        size = sum(len(batch.payload) for batch in sending)
        for batch in list(self._unsent)[:-1]:
            if size + len(batch.payload) > self.config.max_send_bytes:
                break
            sending.append(batch)
            size += len(batch.payload)
        args: list[Any] = [
            self.instance_id,
            int(self.config.lease_s * 1000),
            int(self.config.retain_s * 1000),
        ]
        for batch in sending:
            args += [batch.batch_id, batch.payload]
        leading, epoch = self._share(keys=[self.stream_key, self.lease_key, self.epoch_key], args=args)
        sent = {batch.batch_id for batch in sending}
        self._unsent = deque(batch for batch in self._unsent if batch.batch_id not in sent)
        lost = self._epoch is not None and epoch != self._epoch
        self._epoch = epoch
        if lost:
            self.streams_lost += 1
            log.warning("live stats: the shared stream was lost; sending this process's last batches again")
            self._unsent.extendleft(reversed(self._sent))  # this call's batches are in the new stream
            self._sent.clear()
            self._cursor = None  # a leader reads the new stream from its start (skipping batches it has)
        self._sent.extend(sending)
        return bool(leading), sum(batch.rows for batch in sending)

    def release(self) -> bool:
        """Give up the lease if this process holds it; True if it did."""
        return bool(self._release(keys=[self.lease_key], args=[self.instance_id]))

    def restart_reading(self) -> None:
        """The next :meth:`read_new` reads the whole retained stream (a new leader)."""
        self._cursor = None
        self._seen = {}

    def read_new(self, now: float) -> list[pl.DataFrame]:
        """The batches added since the last read, each once (``count`` entries a call); on failure the
        batches read so far are lost to the caller, who restarts from the start."""
        frames = []
        start = b"-" if self._cursor is None else b"(" + self._cursor
        while True:
            entries = self._client.xrange(self.stream_key, min=start, max="+", count=self.config.read_count)
            for entry_id, fields in entries:
                frame = self._decoded(fields, now)
                if frame is not None:
                    frames.append(frame)
                self._cursor = entry_id
            if len(entries) < self.config.read_count:
                break
            start = b"(" + entry_id
        self._seen = {key: until for key, until in self._seen.items() if until > now}
        return frames

    def _decoded(self, fields: Mapping[bytes, bytes], now: float) -> pl.DataFrame | None:
        batch_id = fields.get(b"id", b"")
        if batch_id in self._seen:
            self.duplicate_batches += 1
            return None
        try:
            frame = decode_attempts(fields[b"rows"])
        except Exception:
            self.bad_batches += 1
            log.warning("live stats: skipped stream entry %r, not an attempt batch", batch_id, exc_info=True)
            return None
        self._seen[batch_id] = now + self.config.retain_s
        return frame
