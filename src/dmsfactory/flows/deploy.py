"""Helpers to run the factory's deployments on a local Prefect server (``make serve``, tests).

Everything here drives the real Prefect command line (``prefect server start``, ``prefect deploy``,
``prefect worker start``) in child processes; nothing is mocked. A :class:`LocalServer` binds
127.0.0.1 only, keeps its database and settings in its own ``PREFECT_HOME`` (never ``~/.prefect``)
and stops every process it started.

``python -m dmsfactory.flows.deploy serve`` starts a server on 127.0.0.1:4200, creates the work
pools named in ``prefect.yaml``, deploys every deployment in it and runs a process worker until
Ctrl-C (see docs/orchestration.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from dmsfactory.env import DEFAULT_ENV

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_PREFECT_FILE = REPO_ROOT / "prefect.yaml"

# measured on these machines (DESIGN.md): no analytics host, a patient ephemeral start, quiet logs
QUIET_ENV = dict(DEFAULT_ENV)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def prefect_bin() -> str:
    """The ``prefect`` executable of this interpreter's environment."""
    cand = Path(sys.executable).with_name("prefect")
    if cand.is_file():
        return str(cand)
    found = shutil.which("prefect")
    if not found:
        raise FileNotFoundError("the 'prefect' command was not found next to this Python nor on PATH")
    return found


def _default_signals() -> None:  # in the child: a shell's background job may have inherited SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the process group we started, then SIGKILL what is left."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


class LocalServer:
    """A real ``prefect server start`` on 127.0.0.1 with a private PREFECT_HOME.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. :attr:`env` is the environment a
    child process (worker, flow run, Dask worker) needs to talk to this server.
    """

    def __init__(
        self,
        port: int | None = None,
        home: str | Path | None = None,
        ui: bool = False,
        startup_timeout: float = 120.0,
        log_path: str | Path | None = None,
    ):
        self.port = port or free_port()
        self._own_home = home is None
        self.home = Path(home) if home else Path(tempfile.mkdtemp(prefix="dmsf-prefect-home-"))
        self.ui = ui
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else self.home / "server.log"
        self.proc: subprocess.Popen | None = None
        self._children: list[subprocess.Popen] = []

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(QUIET_ENV)
        env["PREFECT_HOME"] = str(self.home)
        env["PREFECT_API_URL"] = self.api_url
        env.pop("PREFECT_PROFILES_PATH", None)
        return env

    def settings(self) -> dict:
        """Settings for ``prefect.settings.temporary_settings`` to talk to this server in-process."""
        from prefect.settings import PREFECT_API_URL  # heavy: prefect (the rest of this module runs without it)

        return {PREFECT_API_URL: self.api_url}

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def start(self) -> "LocalServer":
        self.home.mkdir(parents=True, exist_ok=True)
        env = self.env
        env.pop("PREFECT_API_URL")  # the server itself must not look for another server
        env["PREFECT_SERVER_API_HOST"] = "127.0.0.1"
        env["PREFECT_SERVER_API_PORT"] = str(self.port)
        env["PREFECT_SERVER_UI_ENABLED"] = "true" if self.ui else "false"
        cmd = [prefect_bin(), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd.append("--ui" if self.ui else "--no-ui")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_default_signals,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with {self.proc.returncode}; log: {self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"prefect server on port {self.port} not healthy after {self.startup_timeout:.0f} s")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def run_cli(self, *args: str, timeout: float = 120.0, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
        """Run ``prefect <args>`` against this server; raise with its output if it fails."""
        r = subprocess.run(
            [prefect_bin(), "--no-prompt", *args],
            env=self.env,
            cwd=str(cwd) if cwd else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if r.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r

    def popen(self, cmd: list[str], log_name: str, cwd: str | Path | None = None, **env: str) -> subprocess.Popen:
        """Start a child process (own process group) with this server's environment; stopped by :meth:`stop`."""
        e = self.env
        e.update(env)
        log = open(self.home / log_name, "ab")
        p = subprocess.Popen(
            cmd, env=e, cwd=str(cwd) if cwd else None, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_default_signals,
        )
        self._children.append(p)
        return p

    def start_worker(self, pool: str, run_once: bool = False, cwd: str | Path | None = None, name: str | None = None) -> subprocess.Popen:
        cmd = [prefect_bin(), "--no-prompt", "worker", "start", "--pool", pool, "--type", "process",
               "--install-policy", "never"]
        if name:
            cmd += ["--name", name]
        if run_once:
            cmd.append("--run-once")
        return self.popen(cmd, f"worker-{pool}.log", cwd=cwd)

    def stop(self) -> None:
        for p in reversed(self._children):
            stop_process(p)
        self._children.clear()
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()
            self._log = None
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def work_pools(prefect_file: str | Path = DEFAULT_PREFECT_FILE) -> dict[str, str]:
    """Work pool name -> type for every deployment in ``prefect_file``."""
    data = yaml.safe_load(Path(prefect_file).read_text())
    pools: dict[str, str] = {}
    for d in data.get("deployments") or []:
        wp = d.get("work_pool") or {}
        name = wp.get("name")
        if not name:
            raise ValueError(f"{prefect_file}: deployment {d.get('name')!r} has no work_pool.name")
        pools[name] = wp.get("type", "process")
    return pools


def create_pools(server: LocalServer, prefect_file: str | Path = DEFAULT_PREFECT_FILE) -> dict[str, str]:
    """Create the work pools ``prefect_file`` names (type from our ``work_pool.type`` key; default process).

    ``work_pool.type`` is our own documentation key: ``prefect deploy`` ignores keys it does not know.
    """
    pools = work_pools(prefect_file)
    for name, typ in pools.items():
        server.run_cli("work-pool", "create", name, "--type", typ, "--overwrite")
    return pools


def deploy(server: LocalServer, prefect_file: str | Path = DEFAULT_PREFECT_FILE, names: list[str] | None = None) -> str:
    """``prefect deploy`` the deployments of ``prefect_file`` (all, or ``names``) from the repo root."""
    prefect_file = Path(prefect_file).resolve()
    args = ["deploy", "--prefect-file", str(prefect_file)]
    if names:
        for n in names:
            args += ["--name", n]
    else:
        args.append("--all")
    return server.run_cli(*args, cwd=prefect_file.parent, timeout=300).stdout


_SHARED: dict[str, Any] = {}


def shared_server(startup_timeout: float = 120.0) -> LocalServer:
    """One :class:`LocalServer` per process (test sessions), stopped at interpreter exit."""
    srv = _SHARED.get("server")
    if srv is None or srv.proc is None or srv.proc.poll() is not None:
        import atexit

        srv = LocalServer(startup_timeout=startup_timeout).start()
        _SHARED["server"] = srv
        _SHARED.pop("deployed", None)
        atexit.register(srv.stop)
    return srv


def shared_deployments(srv: LocalServer, prefect_file: str | Path = DEFAULT_PREFECT_FILE) -> str:
    """Create pools and deploy ``prefect_file`` on ``srv`` once per process; returns the deploy output."""
    key = ("deployed", srv.port, str(prefect_file))
    if key not in _SHARED:
        create_pools(srv, prefect_file)
        _SHARED[key] = deploy(srv, prefect_file)
    return _SHARED[key]


def serve(port: int = 4200, prefect_file: str | Path = DEFAULT_PREFECT_FILE, home: str | None = None) -> int:
    """Server + pools + deployments + one process worker in the foreground until Ctrl-C."""
    home = home or str(Path.home() / ".dmsfactory" / "prefect")

    def _interrupt(signum, frame):  # SIGTERM (and SIGINT even where a shell ignored it) stop everything
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    srv = LocalServer(port=port, home=home, ui=True)
    srv._own_home = False
    print(f"starting prefect server on http://127.0.0.1:{port} (PREFECT_HOME={home}) ...", flush=True)
    srv.start()
    try:
        pools = create_pools(srv, prefect_file)
        print(deploy(srv, prefect_file), flush=True)
        local = [n for n, t in pools.items() if t == "process"]
        if not local:
            raise SystemExit(f"{prefect_file}: no process work pool to run a local worker on")
        worker = srv.start_worker(local[0], cwd=Path(prefect_file).resolve().parent)
        print(
            f"UI: http://127.0.0.1:{port}  worker on pool {local[0]!r} (log {srv.home / f'worker-{local[0]}.log'})\n"
            f"trigger a run:  PREFECT_API_URL={srv.api_url} prefect deployment run 'dmsfactory-factory/factory-nightly'\n"
            "Ctrl-C stops server and worker.",
            flush=True,
        )
        while worker.poll() is None and srv.proc is not None and srv.proc.poll() is None:
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        srv.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dmsfactory.flows.deploy")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="local server + work pools + deployments + a process worker")
    s.add_argument("--port", type=int, default=4200)
    s.add_argument("--prefect-file", default=str(DEFAULT_PREFECT_FILE))
    s.add_argument("--home", help="PREFECT_HOME for the server (default ~/.dmsfactory/prefect)")
    pools = sub.add_parser("pools", help="print the work pools prefect.yaml needs")
    pools.add_argument("--prefect-file", default=str(DEFAULT_PREFECT_FILE))
    a = p.parse_args(argv)
    if a.cmd == "serve":
        return serve(a.port, a.prefect_file, a.home)
    print(json.dumps(work_pools(a.prefect_file)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
