"""`switchyard workers up` and `python -m simulator.worker` as real processes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from features.catalog import load_catalog
from features.deployment import load_deployment
from simulator.fleet import free_port_range

ROOT = Path(__file__).resolve().parents[2]
# registered as switchyard_cli.main registers it, without importing the other sub-commands
CLI = (
    "import typer; from switchyard_cli.workers import workers_app; "
    "app = typer.Typer(); app.add_typer(workers_app, name='workers'); app()"
)


def wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the deployment map was not written"
        time.sleep(0.1)


def test_workers_up_serves_the_deployment_map_and_stops_on_sigterm(tmp_path: Path) -> None:
    apac = load_catalog().in_region("apac")
    base_port = free_port_range(len(apac))
    deployment_file = tmp_path / "deployment.json"
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "workers", "up",
         "--region", "apac", "--processes", "2", "--time-scale", "0", "--base-port", str(base_port),
         "--deployment-file", str(deployment_file)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(deployment_file, process)
        deployment = load_deployment(deployment_file)
        assert set(deployment.skus_in("apac")) == {sku.name for sku in apac}
        assert deployment.skus_in("us") == ()
        for sku in apac:
            [endpoint] = deployment.endpoints(sku.name, "apac")
            response = httpx.post(
                f"{endpoint}/v1/messages",
                json={"model": sku.name, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
                timeout=5,
            )
            assert response.status_code == 200 and response.json()["model"] == sku.name
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "claude-sonnet-3-5" in stdout and "workers stopped" in stdout
    assert not deployment_file.exists()
    for sku_index in range(len(apac)):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", base_port + sku_index)) != 0, "a worker outlived the fleet"


def test_single_worker_module_entry_point() -> None:
    port = free_port_range(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator.worker", "--sku", "claude-haiku-3", "--port", str(port),
         "--time-scale", "0"],
        cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).json()
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert [model["id"] for model in models["data"]] == ["claude-haiku-3"]
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
