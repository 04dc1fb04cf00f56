"""Health checks and load scraping of worker endpoints: ``/health`` and vLLM's ``/metrics``.

A :class:`WorkerProbe` visits every endpoint each ``interval_s``, concurrently: ``GET /health``
(200 = healthy) and, when healthy, ``GET /metrics``, from which it keeps, per served model
name, the gauges and counters the router reads as load signals (:class:`ScrapedLoad`):

=====================================  =============================================
``vllm:num_requests_running``          sequences in the batch
``vllm:num_requests_waiting``          sequences queued for a batch slot
``vllm:kv_cache_usage_perc``           0..1
``vllm:prefix_cache_queries_total``    prompt tokens looked up in the prefix cache
``vllm:prefix_cache_hits_total``       of which found there
``vllm:prompt_tokens_total``           prompt tokens processed (cached included)
``vllm:generation_tokens_total``       tokens generated
=====================================  =============================================

vLLM and the simulated worker export the same names with a ``model_name`` label (vLLM adds
``engine``; samples of several engines are added up, KV-cache use is their maximum).

Health: an endpoint is unhealthy after ``unhealthy_after`` consecutive failed checks, or at
once when the connection is refused (nothing listens: the process is gone). One passing
check makes it healthy again. A request that cannot connect asks for an immediate check
(:meth:`check_soon`) instead of waiting for the next round. Before its first check an
endpoint counts as healthy; :meth:`start` runs the first round before returning, which is
the readiness check at start-up.

The scrape parser reads only the lines it needs (a simulated worker's ``/metrics`` is mostly
histogram buckets), so a scrape costs tens of microseconds of the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp

log = logging.getLogger("switchyard.worker_probe")

_FIELDS = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:prefix_cache_queries_total": "prefix_cache_queries",
    "vllm:prefix_cache_hits_total": "prefix_cache_hits",
    "vllm:prompt_tokens_total": "prompt_tokens",
    "vllm:generation_tokens_total": "generation_tokens",
}
_MODEL_LABEL = 'model_name="'


@dataclass(frozen=True, slots=True)
class ScrapedLoad:
    """One model's load signals from one scrape of one endpoint."""

    running: float = 0.0
    waiting: float = 0.0
    kv_cache_usage: float = 0.0
    prefix_cache_queries: float = 0.0
    prefix_cache_hits: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        """Hits / queries since the worker started (None before any query)."""
        return self.prefix_cache_hits / self.prefix_cache_queries if self.prefix_cache_queries else None


def parse_vllm_metrics(text: str) -> dict[str, ScrapedLoad]:
    """Load signals per ``model_name`` from a Prometheus text exposition."""
    values: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        brace = line.find("{")
        if brace < 0:
            continue
        attribute = _FIELDS.get(line[:brace])
        if attribute is None:
            continue
        close = line.rfind("}")
        labels = line[brace + 1 : close]
        start = labels.find(_MODEL_LABEL)
        if start < 0:
            continue
        start += len(_MODEL_LABEL)
        model = labels[start : labels.find('"', start)]
        try:
            value = float(line[close + 1 :].split()[0])
        except (ValueError, IndexError):
            continue
        row = values.setdefault(model, {})
        if attribute == "kv_cache_usage":
            row[attribute] = max(row.get(attribute, 0.0), value)
        else:
            row[attribute] = row.get(attribute, 0.0) + value
    return {model: ScrapedLoad(**row) for model, row in values.items()}


@dataclass(slots=True)
class EndpointHealth:
    """What the probe knows about one endpoint."""

    url: str
    healthy: bool | None = None  # None: not checked yet
    consecutive_failures: int = 0
    last_error: str | None = None
    checked_at: float | None = None
    scraped_at: float | None = None
    loads: dict[str, ScrapedLoad] = field(default_factory=dict)  # by model name, the latest scrape
    previous: dict[str, ScrapedLoad] = field(default_factory=dict)  # the scrape before it
    scrapes: int = 0

    def recent_hit_rate(self, model: str) -> float | None:
        """Prefix-cache hits / queries between the last two scrapes (None without new queries)."""
        now, before = self.loads.get(model), self.previous.get(model)
        if now is None or before is None:
            return None
        queries = now.prefix_cache_queries - before.prefix_cache_queries
        return (now.prefix_cache_hits - before.prefix_cache_hits) / queries if queries > 0 else None


class WorkerProbe:
    """Checks ``/health`` and scrapes ``/metrics`` of every endpoint in the background."""

    def __init__(
        self,
        urls: Iterable[str],
        *,
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
        unhealthy_after: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0 or timeout_s <= 0 or unhealthy_after < 1:
            raise ValueError("need interval_s > 0, timeout_s > 0 and unhealthy_after >= 1")
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.unhealthy_after = unhealthy_after
        self._clock = clock
        self.endpoints = {url: EndpointHealth(url) for url in dict.fromkeys(urls)}
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._checking: dict[str, asyncio.Task[None]] = {}
        self.rounds = 0

    # ------------------------------------------------------------------ what routing reads

    def healthy(self, url: str) -> bool:
        """False only when the endpoint failed its health check (unknown endpoints count as healthy)."""
        state = self.endpoints.get(url)
        return state is None or state.healthy is not False

    def load(self, url: str, model: str) -> ScrapedLoad | None:
        """The latest scraped load of ``model`` at ``url`` if it is at most 3 intervals old."""
        state = self.endpoints.get(url)
        if state is None or state.scraped_at is None:
            return None
        if self._clock() - state.scraped_at > 3 * self.interval_s + self.timeout_s:
            return None
        return state.loads.get(model)

    def waiting(self, url: str, model: str) -> float:
        load = self.load(url, model)
        return load.waiting if load is not None else 0.0

    def check_soon(self, url: str) -> None:
        """A request could not connect: check the endpoint now rather than at the next round."""
        state = self.endpoints.get(url)
        if state is None or self._task is None or url in self._checking:
            return
        task = asyncio.get_running_loop().create_task(self._check(state), name=f"worker-check {url}")
        self._checking[url] = task
        task.add_done_callback(lambda _: self._checking.pop(url, None))

    # ------------------------------------------------------------------ checking

    async def start(self) -> None:
        """Run the first round (start-up readiness), then keep probing in the background."""
        if self._task is None:
            await self.probe_all()
            self.start_background()

    def start_background(self) -> None:
        """Start the background loop without waiting for a first round (needs a running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="worker-probe")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for check in list(self._checking.values()):
            check.cancel()
        await asyncio.gather(*self._checking.values(), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            started = self._clock()
            try:
                await self.probe_all()
            except Exception:  # never let one bad round stop the probing
                log.exception("worker probe round failed")
            await asyncio.sleep(max(0.0, self.interval_s - (self._clock() - started)))

    async def probe_all(self) -> None:
        await asyncio.gather(*(self._check(state) for state in self.endpoints.values()))
        self.rounds += 1

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=4.0),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def _check(self, state: EndpointHealth) -> None:
        session = self._client()
        try:
            async with session.get(state.url + "/health") as response:
                await response.read()
                status = response.status
        except aiohttp.ClientConnectorError as error:
            self._failed(state, f"health: {type(error).__name__}", refused=True)
            return
        except (aiohttp.ClientError, TimeoutError) as error:
            self._failed(state, f"health: {type(error).__name__}", refused=False)
            return
        if status != 200:
            self._failed(state, f"health: HTTP {status}", refused=False)
            return
        if state.healthy is False:
            log.info("worker %s is healthy again", state.url)
        state.healthy, state.consecutive_failures, state.last_error = True, 0, None
        state.checked_at = self._clock()
        try:
            async with session.get(state.url + "/metrics") as response:
                text = await response.text() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
            text = None
        if text is not None:
            state.previous, state.loads = state.loads, parse_vllm_metrics(text)
            state.scraped_at = self._clock()
            state.scrapes += 1

    def _failed(self, state: EndpointHealth, reason: str, *, refused: bool) -> None:
        state.consecutive_failures += 1
        state.last_error = reason
        state.checked_at = self._clock()
        if (refused or state.consecutive_failures >= self.unhealthy_after) and state.healthy is not False:
            log.warning("worker %s failed its health check: %s", state.url, reason)
            state.healthy = False
