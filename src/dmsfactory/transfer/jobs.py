"""The report's independent trainings on several processes (``dmsfactory transfer --jobs``).

A report trains many models that do not depend on one another: the synthetic-only model of every
training seed (and the shuffled-label control), and per real fold the real-trained reference, the
fine-tunes and the DP-SGD rows. Each is a function of its seed and its data only (every model seeds
its own initialisation and its own batch order; nothing reads the global random state that another
training left behind), so they can run side by side and give the numbers they give one after the
other. ``Jobs(1)`` runs them inline, in order, in this process; ``Jobs(n)`` on ``n`` spawned worker
processes with ``threads`` torch threads each, results in submission order. Each call's CPU time is
measured where it runs and summed in :attr:`Jobs.cpu_seconds`, so a report's CPU figure counts its
workers too.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from dmsfactory.errors import UserError


class JobsError(UserError, RuntimeError):
    """A worker process died (killed for memory, or a script without a ``__main__`` guard)."""


def _init_worker(threads: int) -> None:
    import torch  # heavy: torch

    torch.set_num_threads(max(1, int(threads)))


def _timed(fn: Callable[..., Any], kwargs: dict[str, Any]) -> tuple[Any, float]:
    c0 = time.process_time()
    out = fn(**kwargs)
    return out, time.process_time() - c0


class StderrProgress:
    """A progress callback a worker process can use (it pickles): one stderr line per epoch."""

    def __init__(self, label: str):
        self.label = label

    def __call__(self, step: int, total: int) -> None:
        print(f"  {self.label}: step {step}/{total}", file=sys.stderr, flush=True)


class Jobs:
    """Run independent calls inline (``n == 1``) or on ``n`` worker processes (spawned once, reused)."""

    def __init__(self, n: int = 1, threads: int = 1):
        if int(n) < 1:
            raise ValueError(f"jobs must be >= 1 (got {n})")
        self.n = int(n)
        self.threads = max(1, int(threads))
        self.cpu_seconds = 0.0  # CPU time of the calls run on workers (inline calls count in this process)
        self._pool: ProcessPoolExecutor | None = None

    @property
    def parallel(self) -> bool:
        return self.n > 1

    def spreads(self, n_calls: int) -> bool:
        """Does :meth:`map` run ``n_calls`` calls on worker processes (so their arguments must pickle)?
        Otherwise it runs them inline, one after the other."""
        return self.parallel and n_calls > 1

    def map(self, fn: Callable[..., Any], calls: list[dict[str, Any]],
            done: Callable[[int], None] | None = None) -> list[Any]:
        """``[fn(**kw) for kw in calls]``; ``fn`` must be a module-level function (it is pickled).
        ``done(i)`` is called as call ``i`` finishes (in completion order on workers)."""
        if not self.spreads(len(calls)):
            out = []
            for i, kw in enumerate(calls):
                out.append(fn(**kw))
                if done is not None:
                    done(i)
            return out
        if self._pool is None:
            import multiprocessing as mp

            # spawn, not fork: the parent has torch (and its thread pools) loaded already
            self._pool = ProcessPoolExecutor(self.n, mp_context=mp.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.threads,))
        futures = [self._pool.submit(_timed, fn, kw) for kw in calls]
        index = {f: i for i, f in enumerate(futures)}
        try:
            for f in as_completed(futures):
                if f.exception() is None:
                    self.cpu_seconds += f.result()[1]
                if done is not None:
                    done(index[f])
            return [f.result()[0] for f in futures]  # re-raises a worker's exception here
        except BrokenProcessPool as e:
            self.close()
            raise JobsError(
                f"a worker process of --jobs {self.n} died before it finished ({e}). The usual causes: it ran out "
                "of memory (each worker holds a copy of the training crops: try fewer jobs, or --jobs 1), or a "
                "Python script that calls run_transfer(jobs > 1) has no `if __name__ == \"__main__\":` guard "
                "(the workers are spawned and import the main script)") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "Jobs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
