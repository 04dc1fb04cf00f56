"""Stage costs measured by other benchmarks (with servers), quoted into ``bench/stage_costs.py``'s file.

Each entry names the file that holds the measurement and the text it was copied from;
:func:`check_quotes` reports entries whose text is no longer in that file (the measurement was
re-run or edited), so a stale copy shows in the JSON rather than living on silently. Figures
are µs per request unless the key says otherwise; ``cpu_us`` is the gateway's CPU, ``wall_us``
the latency a request sees.
"""

from __future__ import annotations

import re
from pathlib import Path

QUOTED: dict[str, dict] = {
    "gateway_cpu_per_request": {
        "cpu_us": {"p50": 1214.0},
        "what": "the whole gateway process tree (uvicorn, static prior, event log on, no Feast, state in "
        "memory), non-streaming realistic bodies, 32 connections, median of 6 rounds",
        "source": "bench/results/cpu_per_request.txt",
        "quote": "32 conn  main        1.214 ms CPU/req",
    },
    "gateway_cpu_per_request_nonstreaming_small": {
        "cpu_us": {"p50": 1350.0},
        "what": "whole gateway, small bodies, non-streaming, 32 connections (peers run)",
        "source": "bench/results/peers.txt",
        "quote": "switchyard       740 req/s    1.35 ms CPU/req",
    },
    "gateway_cpu_per_request_streaming_small": {
        "cpu_us": {"p50": 1810.0},
        "what": "whole gateway, small bodies, streaming (64 output tokens: ~10 SSE events), 32 connections",
        "source": "bench/results/peers.txt",
        "quote": "switchyard       554 req/s    1.81 ms CPU/req",
    },
    "gateway_cpu_per_request_shared_state": {
        "cpu_us": {"p50": 2170.0},
        "what": "whole gateway with its shared state in Redis (admission, live stats, prompt cache, pacer), "
        "1 process, 200 req/s offered; the same run in memory: 1,780 µs",
        "source": "bench/results/process_scaling.txt",
        "quote": "2.17 ms gateway CPU per auto request (gateway 44% of a core, Redis 0.248 ms per request",
    },
    "gateway_cpu_per_request_in_memory": {
        "cpu_us": {"p50": 1780.0},
        "what": "whole gateway with its state in memory, the same run as the shared-state row (its baseline)",
        "source": "bench/results/process_scaling.txt",
        "quote": "561 req per gateway CPU-second = 1.78 ms gateway CPU per auto request",
    },
    "redis_server_per_request": {
        "cpu_us": {"p50": 248.0},
        "what": "the Redis server's own CPU per gateway request with all shared state in Redis "
        "(~12 commands, 2 of them admission scripts)",
        "source": "bench/results/process_scaling.txt",
        "quote": "Redis 0.248 ms per request, worker 0.46 ms per request",
    },
    "admission_redis": {
        "cpu_us": {"p50": 148.2},
        "wall_us": {"p50": 141.1, "p99": 262.7},
        "what": "admit + release through RedisAdmission (lean RESP client), one at a time; wall = the admit "
        "(release p50 151 µs, off the reply's path); Redis server CPU 123.5 µs per admit + release",
        "source": "bench/results/admission_redis_latency.txt",
        "quote": "gateway CPU per admit+release: 148.2 µs; Redis CPU: 123.5 µs",
    },
    "admission_redis_concurrent": {
        "cpu_us": {"p50": 32.6},
        "wall_us": {"p50": 844.5, "p99": 2713.3},
        "what": "the same at 32 concurrent requests (releases batched per loop iteration); Redis server CPU "
        "32.4 µs per admit + release; wall = the admit, queueing on one connection included",
        "source": "bench/results/admission_redis_latency.txt",
        "quote": "gateway CPU per admit+release: 32.6 µs; Redis CPU: 32.4 µs",
    },
    "feast_read_cache_hit": {
        "wall_us": {"p50": 16.8, "p99": 29.8},
        "what": "store features of 12 candidates, every key fresh in the in-process TTL cache",
        "source": "bench/results/store_features_latency.txt",
        "quote": "hit, read_now                                n= 20,000  p50     16.8 µs  p99     29.8 µs",
    },
    "feast_read_live_miss_sqlite": {
        "wall_us": {"p50": 986.9, "p99": 1916.5},
        "what": "the 12 (SKU, region) live-stats keys expired (their 2 s TTL): one get_online_features "
        "call on the SQLite online store, in process (so ~all CPU)",
        "source": "bench/results/store_features_latency.txt",
        "quote": "live miss (12 keys, 1 view), read_now        n=  1,000  p50    986.9 µs  p99   1916.5 µs",
    },
    "feast_read_full_miss_sqlite": {
        "wall_us": {"p50": 2011.2, "p99": 3628.6},
        "what": "every key expired: one get_online_features call, 25 keys of 3 views, SQLite online store",
        "source": "bench/results/store_features_latency.txt",
        "quote": "full miss (25 keys, 3 views), read_now       n=  1,000  p50   2011.2 µs  p99   3628.6 µs",
    },
    "feast_read_redis": {
        "wall_us": None,
        "what": "not measured yet: Feast's Redis online store (serving/feast_redis.py) has no latency benchmark",
        "source": None,
        "quote": None,
    },
    "proxy_reply": {
        "cpu_us": {"p50": 128.0},
        "what": "the worker call: HTTP client, replica choice, breakers (py-spy share × CPU per request, "
        "32 connections)",
        "source": "bench/results/cpu_per_request.txt",
        "quote": "10.9%    128 µs  worker call (HTTP client, replica choice, breakers)",
    },
    "http_server": {
        "cpu_us": {"p50": 78.0 + 56.0},
        "what": "uvicorn (78 µs) and the event loop's I/O and scheduling (56 µs), per request",
        "source": "bench/results/cpu_per_request.txt",
        "quote": "6.6%     78 µs  HTTP server (uvicorn)",
    },
    "relay_stream_event": {
        "cpu_us": {"p50": 46.0},
        "what": "streaming surcharge per SSE event: (1,810 − 1,350) µs per request over ~10 events "
        "(64 output tokens at ≤ 16 per delta + 6 framing events); an upper bound (it includes the stream reply's set-up)",
        "source": "bench/results/peers.txt (derived from the two gateway_cpu_per_request_*_small rows)",
        "quote": "switchyard       554 req/s    1.81 ms CPU/req",
    },
    "eventlog_write": {
        "cpu_us": {"p50": 96.0},
        "what": "the event log's writer thread: records to Arrow, Parquet, write (per request)",
        "source": "bench/results/cpu_per_request.txt",
        "quote": "8.2%     96 µs  event log: convert + write (writer thread)",
    },
    "rejection": {
        "cpu_us": {"p50": 309.0},
        "what": "gateway CPU per shed (529) request under 2× overload, gateway-CPU-bound",
        "source": "bench/results/overload.txt",
        "quote": "gateway CPU per rejection 0.309 ms",
    },
}


def _normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def check_quotes(root: Path) -> list[str]:
    """Keys whose quoted text is no longer in their source file (whitespace-insensitive)."""
    stale = []
    for key, entry in QUOTED.items():
        if entry["quote"] is None:
            continue
        path = root / entry["source"].split(" ")[0]
        if not path.exists() or _normalized(entry["quote"]) not in _normalized(
            path.read_text(encoding="utf-8")
        ):
            stale.append(key)
    return stale
