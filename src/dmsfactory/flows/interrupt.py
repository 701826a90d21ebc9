"""What a Ctrl-C'd flow run leaves behind in Prefect (wiring for :mod:`dmsfactory.interrupt`).

:func:`abandon_flow_run` runs in the SIGINT handler, in the main thread where the flow runs: it tells
the API that the flow run crashed ("interrupted (Ctrl-C)"; so the UI does not show it running for
ever), waiting at most ``timeout`` seconds (a terminal's Ctrl-C also reaches Prefect's temporary
server, which may already be gone), then stops the temporary server this process started.
:func:`quiet_temporary_server` sends that server's output to a log file, so that its own shutdown on
the same Ctrl-C cannot print a traceback over the run's one line.
"""

from __future__ import annotations

import os
import tempfile
import threading


def abandon_flow_run(timeout: float = 3.0) -> None:
    from prefect.context import FlowRunContext  # heavy: prefect

    ctx = FlowRunContext.get()
    run_id = ctx.flow_run.id if ctx is not None and ctx.flow_run is not None else None

    def report() -> None:
        from prefect.client.orchestration import get_client  # heavy: prefect
        from prefect.states import Crashed  # heavy: prefect

        try:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(run_id, Crashed(message="interrupted (Ctrl-C); rerun to resume"), force=True)
        except Exception:  # noqa: BLE001 - the server may be gone (a terminal's Ctrl-C reaches it too)
            pass

    if run_id is not None:
        t = threading.Thread(target=report, daemon=True, name="dmsfactory-interrupt")
        t.start()
        t.join(timeout)
    stop_temporary_servers()


def stop_temporary_servers() -> None:
    """Terminate the ephemeral API server subprocesses Prefect started in this process (if any)."""
    import sys

    mod = sys.modules.get("prefect.server.api.server")
    if mod is None:
        return
    for srv in list(getattr(mod.SubprocessASGIServer, "_instances", {}).values()):
        proc = getattr(srv, "server_process", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except Exception:  # noqa: BLE001
                proc.kill()


SERVER_LOG = os.path.join(tempfile.gettempdir(), "dmsfactory-prefect-server.log")


def quiet_temporary_server() -> None:
    """Start Prefect's temporary API server (the one a flow starts when no server is configured) with
    its output going to a log file, :data:`SERVER_LOG` (appended). A terminal's Ctrl-C goes to the whole
    foreground process group, the server included, and the server could print a shutdown traceback
    over the run's one line (uvicorn installs its own SIGINT handler, so starting it with SIGINT
    ignored does not help). It stays in the run's process group, so a killed run's group signal still
    ends it (a server in its own session outlived killed runs: tried and reverted). Prefect starts it
    with ``subprocess.Popen`` inside ``SubprocessASGIServer._run_uvicorn_command`` (prefect 3.x,
    DESIGN.md's pin) and reads nothing from its output; this wraps that one call. Idempotent."""
    import subprocess
    import types

    from prefect.server.api import server as mod  # heavy: prefect server (only when a run starts one)

    cls = mod.SubprocessASGIServer
    orig = cls._run_uvicorn_command
    if getattr(orig, "_dmsfactory_quiet", False):
        return

    def popen(*args, **kwargs):
        with open(SERVER_LOG, "ab") as log:  # the child keeps its own descriptor
            kwargs.setdefault("stdout", log)
            kwargs.setdefault("stderr", log)
            return subprocess.Popen(*args, **kwargs)

    def run_quiet(self):
        real = mod.subprocess
        mod.subprocess = types.SimpleNamespace(Popen=popen)  # only this call's Popen; restored at once
        try:
            return orig(self)
        finally:
            mod.subprocess = real

    run_quiet._dmsfactory_quiet = True  # type: ignore[attr-defined]
    cls._run_uvicorn_command = run_quiet
