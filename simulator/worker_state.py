"""Everything one worker process-instance holds: its SKUs' engines, text tape, faults and ids."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from features.catalog import Sku
from features.prefix import PrefixHasher
from simulator.faults import WorkerFaults
from simulator.text import TextTape
from simulator.worker_engine import SkuEngine


@dataclass
class WorkerState:
    """The state behind one worker app; built by ``create_worker_app``, never at import."""

    served: Mapping[str, Sku]
    engines: Mapping[str, SkuEngine]
    tape: TextTape
    faults: WorkerFaults
    max_body_bytes: int
    time_scale: float
    region: str | None = None
    hasher: PrefixHasher = field(default_factory=PrefixHasher)
    created: int = field(default_factory=lambda: int(time.time()))
    id_prefix: str = field(default_factory=lambda: secrets.token_hex(6))
    fingerprint: str = field(default_factory=lambda: "fp_" + secrets.token_hex(5))
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def next_id(self) -> str:
        """A worker-unique id suffix (``msg_``/``req_``/``chatcmpl-`` are prefixed by callers)."""
        return f"{self.id_prefix}{next(self._counter):012x}"
