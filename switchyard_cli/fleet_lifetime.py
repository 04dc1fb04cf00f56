"""A worker fleet's lifetime in the foreground, shared by ``workers up`` and ``workers vllm up``.

Start the processes, let the command wait for them and write its deployment map, then run
until SIGINT / SIGTERM or until a process dies; always stop the fleet, remove the map and
restore the signal handlers.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import typer


class Fleet(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def dead(self) -> Sequence[object]: ...


def run_fleet(fleet: Fleet, ready: Callable[[], Path], *, name: str, dead: Callable[[], str]) -> None:
    """``ready`` waits for health, writes and announces the deployment map and returns its path;
    ``dead`` names the processes that exited (for the error line); ``name`` is what stopped."""
    stop_requested = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop_requested.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    written: Path | None = None
    try:
        fleet.start()
        written = ready()
        while not stop_requested.wait(0.5):
            if fleet.dead():
                typer.echo(f"error: {dead()} exited; stopping", err=True)
                raise typer.Exit(1)
    except RuntimeError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    finally:
        fleet.stop()
        if written is not None:
            written.unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        typer.echo(f"{name} stopped")
