"""The fork server that the pool's worker processes are forked from (:class:`~dmsfactory.pipeline.ShardPool`).

Light on purpose (standard library only): ``dmsfactory run`` starts the server before it loads the spec
(~0.5 s) and the pipeline, so that the server's imports (:mod:`dmsfactory.preload`, ~2.7 s on one
core) run while the run's own process starts, validates and plans.
"""

from __future__ import annotations

import os
import threading
from typing import Any

PRELOAD = "dmsfactory.preload"  # what the fork server imports before it forks a worker
SERVER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_SERVER_STOP_REGISTERED = False


def pool_context() -> Any:
    """Where the platform has it (Linux, macOS), multiprocessing's ``forkserver`` with :data:`PRELOAD`:
    workers are forked from one server process that imported torch, MediaPipe, dlib, albumentations
    and the renderer once (:mod:`dmsfactory.preload`), instead of each importing them (2-3 s) after
    it starts. Elsewhere ``spawn``. Never plain ``fork``: the run's own process runs threads."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover - Windows
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([PRELOAD])
    return ctx


def start_pool_server(workers: int) -> None:
    """Start the fork server now when the run will use ``workers`` > 1 processes, so that its imports
    (~2 s on one core) run while this process validates, plans and opens the output, not after.
    Main thread (SIGINT is ignored while the server starts, as for spawned workers: a Ctrl-C while it
    imports prints no traceback). The server runs BLAS/OpenMP on one thread (:data:`SERVER_ENV`):
    libraries that start thread pools on import would otherwise start them in a process that forks;
    workers get the run's environment back (``pipeline._pool_init``) and keep BLAS on one thread, as the
    renderer does anyway. Safe to call more than once; a no-op for one worker or without forkserver."""
    import signal

    if workers <= 1 or pool_context().get_start_method() != "forkserver":
        return
    if threading.current_thread() is not threading.main_thread():
        return
    from multiprocessing import forkserver

    saved = {k: os.environ.get(k) for k in SERVER_ENV}
    prev = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.environ.update(SERVER_ENV)
        forkserver.ensure_running()
        global _SERVER_STOP_REGISTERED
        if not _SERVER_STOP_REGISTERED:
            import atexit

            atexit.register(stop_pool_server)
            _SERVER_STOP_REGISTERED = True
    finally:
        signal.signal(signal.SIGINT, prev)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def stop_pool_server() -> None:
    """End the fork server and wait for it (at exit: :func:`start_pool_server` registers it). Left
    alone, the server outlives the run's process by its own exit (or, still importing, by up to ~2 s),
    and neither its CPU time nor its workers' is counted to the run (``RUSAGE_CHILDREN``: the
    benchmark's ``cpu_s``). Uses multiprocessing's ``_forkserver._stop`` (CPython 3.8+); a no-op where
    it is missing or no server runs."""
    import signal
    from multiprocessing import forkserver

    fs = getattr(forkserver, "_forkserver", None)
    pid = getattr(fs, "_forkserver_pid", None)
    if pid is None or not hasattr(fs, "_stop"):
        return
    try:
        os.kill(pid, signal.SIGTERM)  # at once, even while it still imports (it forks nothing now)
    except ProcessLookupError:  # pragma: no cover - already gone
        pass
    try:
        fs._stop()  # closes the alive pipe, waits for the server, removes its socket
    except (OSError, ChildProcessError):  # pragma: no cover - reaped elsewhere
        pass
