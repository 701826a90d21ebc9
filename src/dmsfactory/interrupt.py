"""Ctrl-C ends a run with one line and exit status 130, never with a traceback.

Every finished shard is already safe on disk when Ctrl-C arrives (``datasets/shards.py``: tars are
written as ``*.partial`` and renamed, the progress record is written last), so the run can stop at
once: :func:`exit_on_interrupt` installs a SIGINT handler that runs the cleanup callbacks (e.g.
telling the Prefect server that the flow run crashed, stopping Prefect's temporary server; each
bounded in time), prints the caller's line (how many shards are done, how to resume), and ends the process with ``os._exit(130)``. Exiting from the handler instead of raising
``KeyboardInterrupt`` keeps the exception away from the flow engine, whose crash handling would
otherwise log "Crash detected!" with a traceback, and from the worker threads, which the interpreter
would wait for. A second Ctrl-C while the handler runs exits immediately.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a process ended by Ctrl-C


def _silence() -> int | None:
    """Mute this process for the rest of its life and return a file descriptor for the one last line.

    Python logging is disabled, other threads' uncaught exceptions are dropped, ``sys.stdout`` and
    ``sys.stderr`` go to /dev/null, and so do file descriptors 1 and 2 (native libraries' output);
    the returned descriptor is a duplicate of where ``sys.stderr`` wrote before."""
    logging.disable(logging.CRITICAL)
    threading.excepthook = lambda args: None
    out = None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
    try:
        out = os.dup(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        try:
            out = os.dup(2)
        except OSError:
            out = None
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(devnull, fd)
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives until os._exit
    except OSError:  # pragma: no cover
        pass
    return out


@contextmanager
def exit_on_interrupt(
    message: Callable[[], str],
    cleanup: list[Callable[[], None]] | None = None,
) -> Iterator[None]:
    """Within the block, SIGINT prints ``message()`` on its own line and ends the process with 130.

    ``cleanup`` callables run in the main thread before the line and the exit; each must bound its
    own time (see :func:`dmsfactory.flows.interrupt.abandon_flow_run`). Only from the main thread
    (signal handlers can only be installed there); elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    busy = threading.Event()

    def handler(signum, frame):  # noqa: ARG001
        if busy.is_set():
            os._exit(EXIT_INTERRUPTED)
        busy.set()
        out = _silence()  # from here on nothing but our line reaches the terminal
        for fn in cleanup or []:
            try:
                fn()
            except Exception:  # noqa: BLE001 - exiting is all that matters now
                pass
        _stop_children()  # worker processes write progress records too: end them before counting
        try:  # counted last: worker threads may finish a shard while the cleanup runs
            line = message()
        except Exception as e:  # noqa: BLE001 - the line must come out whatever happened
            line = f"interrupted ({type(e).__name__} while counting shards); rerun the same command to resume"
        if out is not None:
            try:
                os.write(out, ("\n" + line + "\n").encode())
            except OSError:
                pass
        _stop_children()
        os._exit(EXIT_INTERRUPTED)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_children() -> None:
    """Terminate this process's multiprocessing children (worker pools), which would outlive ``os._exit``."""
    try:
        import multiprocessing

        kids = multiprocessing.active_children()
        for child in kids:
            child.terminate()
        deadline = time.monotonic() + 3.0  # gone before anyone counts what they wrote
        for child in kids:
            child.join(max(0.0, deadline - time.monotonic()))
    except Exception:  # noqa: BLE001
        pass


def ignore_sigint() -> None:
    """For worker-process initializers: Ctrl-C is the main process's to handle (one line, no worker
    tracebacks); the main process ends its workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def interrupted_line(done: int, total: int) -> str:
    return f"interrupted: {done} of {total} shards done; rerun the same command to resume"
