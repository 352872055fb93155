"""Real HTTP servers on loopback for tests, soak runs and benchmarks.

In-process, in the caller's event loop::

    async with serving(hebei.create_app()) as base_url:   # http://127.0.0.1:PORT
        ...

Or as a separate process (what a kill-and-restart test needs)::

    port = free_port()
    process = spawn_sandbox("hebei", port, data_dir, ["--drop-rate", "0.1"])
    try:
        wait_ready(f"http://127.0.0.1:{port}", process=process)
        ...
    finally:
        stop(process)

Readiness is ``GET /_faults`` answering 200: every sandbox app has that route, and
it is never subject to faults (it answers even while the province hangs).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Generator, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from sandbox.faults import ADMIN_PATH

LOOPBACK = "127.0.0.1"


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the host's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serving(
    app: ASGIApp,
    *,
    host: str = LOOPBACK,
    port: int = 0,
    startup_timeout: float = 10.0,
    shutdown_timeout: float = 2.0,
    **config: Any,
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn in a task of the running loop; yield its base URL.

    ``port`` 0 takes a free one. The app's lifespan runs (a sandbox opens its
    database). On exit the server stops; requests still running after
    ``shutdown_timeout`` seconds (a hung one, say) are cancelled. ``config`` goes to
    `uvicorn.Config` (logging is left to the caller: ``log_config=None``).
    """
    options: dict[str, Any] = {
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": shutdown_timeout,
    }
    options.update(config)
    server = _Server(uvicorn.Config(app, host=host, port=port, **options))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(startup_timeout):
            while not server.started:
                if task.done():
                    task.result()  # raises what stopped it
                    raise RuntimeError("uvicorn exited during start-up")
                await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        try:
            async with asyncio.timeout(shutdown_timeout + 5):
                await task
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` now (another process could take it before you do)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def spawn_sandbox(
    name: str,
    port: int,
    data_dir: Path,
    extra_args: Sequence[str] = (),
    *,
    host: str = LOOPBACK,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """Start ``gongji sandbox NAME`` in a new process (this interpreter, so this venv).

    ``extra_args`` are more CLI flags (``--drop-rate 0.1``, ``--roster PATH``, ...);
    ``popen`` goes to `subprocess.Popen` (e.g. ``stderr=subprocess.DEVNULL``). It does
    not wait: call `wait_ready`.
    """
    args = [sys.executable, "-m", "gateway.edge.cli", "sandbox", name]
    args += ["--host", host, "--port", str(port), "--data-dir", str(data_dir), *extra_args]
    return subprocess.Popen(args, **popen)  # noqa: S603 (our own interpreter and CLI)


def spawn_gateway(
    config: Path,
    port: int,
    data_dir: Path,
    *,
    host: str = LOOPBACK,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """Start ``gongji --config CONFIG serve`` in a new process; wait for it with
    ``wait_ready(url, process=..., path="/readyz")``."""
    args = [sys.executable, "-m", "gateway.edge.cli", "--config", str(config), "serve"]
    args += ["--host", host, "--port", str(port), "--data-dir", str(data_dir)]
    return subprocess.Popen(args, **popen)  # noqa: S603 (our own interpreter and CLI)


def wait_ready(
    url: str,
    timeout: float = 20.0,
    *,
    process: subprocess.Popen[bytes] | None = None,
    path: str = ADMIN_PATH,
) -> None:
    """Block until the server at ``url`` (its base URL) answers ``GET path`` with 200
    (a sandbox's ``/_faults`` by default; the gateway's is ``/readyz``).

    Raises `TimeoutError` after ``timeout`` seconds, or `RuntimeError` as soon as
    ``process`` has exited.
    """
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while True:
            _check_alive(process)
            with contextlib.suppress(httpx.TransportError):
                if client.get(url.rstrip("/") + path).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout} s")
            time.sleep(0.05)


async def wait_ready_async(
    url: str,
    timeout: float = 20.0,  # noqa: ASYNC109 (the same arguments as wait_ready)
    *,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """`wait_ready` without blocking the event loop."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1.0) as client:
        while True:
            _check_alive(process)
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url.rstrip("/") + ADMIN_PATH)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout} s")
            await asyncio.sleep(0.05)


def _check_alive(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is not None:
        raise RuntimeError(f"{process.args!r} exited with {process.returncode}")


def stop(process: subprocess.Popen[bytes], *, kill: bool = False, timeout: float = 10.0) -> int:
    """End a spawned sandbox: SIGTERM (graceful), or SIGKILL with ``kill``; its exit code.

    After a graceful stop the code is -15: uvicorn shuts down, then re-raises the
    signal. A process that ignores SIGTERM for ``timeout`` seconds is killed.
    """
    if process.poll() is None:
        if kill:
            process.kill()
        else:
            process.terminate()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=timeout)
