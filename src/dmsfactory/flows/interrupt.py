"""What a Ctrl-C'd flow run leaves behind in Prefect (wiring for :mod:`dmsfactory.interrupt`).

:func:`abandon_flow_run` runs in the SIGINT handler, in the main thread where the flow runs: it tells
the API that the flow run crashed ("interrupted (Ctrl-C)"; so the UI does not show it running for
ever), waiting at most ``timeout`` seconds (a terminal's Ctrl-C also reaches Prefect's temporary
server, which may already be gone), then stops the temporary server this process started.
"""

from __future__ import annotations

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
