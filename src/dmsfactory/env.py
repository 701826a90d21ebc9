"""Environment defaults measured on these machines (DESIGN.md), in one place.

The CLI applies them at start (``setdefault``: a user's setting wins), the local Prefect server of
:mod:`dmsfactory.flows.deploy` runs with them, and the test suite's ``conftest.py`` applies them too;
``Makefile`` and ``prefect.yaml`` export the same values for processes started outside Python.
:func:`available_cores` is the one place that asks the OS how many cores a run may use.
"""

from __future__ import annotations

import os
from typing import MutableMapping


def available_cores() -> int:
    """Cores this process may use (its CPU affinity where the OS tells, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


DEFAULT_ENV: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # the server otherwise tries to reach an analytics host
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",  # the default 20 s timed out on a cold start
    "ORT_DISABLE_TELEMETRY": "1",  # onnxruntime sends telemetry otherwise
    "HF_HUB_OFFLINE": "1",  # nothing is downloaded at run time
    "GLOG_minloglevel": "2",  # MediaPipe's C++ logging
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def apply_defaults(environ: MutableMapping[str, str] | None = None) -> None:
    """Set every :data:`DEFAULT_ENV` variable that is not set yet (``os.environ`` by default)."""
    environ = os.environ if environ is None else environ
    for k, v in DEFAULT_ENV.items():
        environ.setdefault(k, v)
