"""The command line as a user meets it: validate names what is missing, Ctrl-C, summaries."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PREFECT_LOGGING_LEVEL="WARNING")


def cli(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "dmsfactory.cli", *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def _copy_specs(tmp_path: Path, *names: str) -> None:
    (tmp_path / "specs").mkdir()
    for n in names:
        shutil.copy(REPO / "specs" / n, tmp_path / "specs" / n)


def in_process(capsys, *args) -> subprocess.CompletedProcess:
    from dmsfactory.cli import main

    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, cap.out, cap.err)


def test_validate_and_run_name_the_command_for_a_missing_tiny_model(tmp_path, monkeypatch, capsys):
    """specs/diffusion-tiny.yaml before its model exists: validate exits 2 with the command that makes it,
    and run fails the same way before Prefect starts (no ERROR tracebacks)."""
    _copy_specs(tmp_path, "diffusion-tiny.yaml")
    monkeypatch.chdir(tmp_path)
    fix = "-m dmsfactory.generators.diffusion.tiny out/tiny-sd"
    v = in_process(capsys, "validate", "specs/diffusion-tiny.yaml")
    assert v.returncode == 2, v.stdout + v.stderr
    assert fix in v.stderr and "diffusion.model" in v.stderr and "'out/tiny-sd/sd' not found" in v.stderr
    assert v.stderr.count(fix) == 1  # one line for the two directories the one command makes
    assert "OK" not in v.stdout and "12 planned" in v.stdout
    r = in_process(capsys, "run", "specs/diffusion-tiny.yaml")
    assert r.returncode == 2, r.stdout + r.stderr
    assert fix in r.stderr and "Traceback" not in r.stderr and "ERROR" not in r.stderr
    assert not (tmp_path / "out" / "diffusion-tiny" / ".progress").exists()
    # the same from a fresh process, as a user meets it: exit 2, the line, no traceback
    p = cli("run", "specs/diffusion-tiny.yaml", cwd=tmp_path)
    assert p.returncode == 2 and fix in p.stderr and "Traceback" not in p.stderr


def test_train_names_the_spec_that_makes_the_private_set(tmp_path, monkeypatch, capsys):
    _copy_specs(tmp_path, "dp-demo.yaml", "dp-demo-private.yaml")
    monkeypatch.chdir(tmp_path)
    v = in_process(capsys, "validate", "specs/dp-demo.yaml")
    assert v.returncode == 0, v.stderr  # `run` needs nothing; `train` needs both datasets
    assert "before `dmsfactory train`: train.private_data" in v.stdout
    assert re.search(r"make it with: \S*dmsfactory run specs/dp-demo-private.yaml", v.stdout)
    assert re.search(r"train.dataset_dir: dataset 'out/dp-demo' not found; make it with: \S*dmsfactory run specs/dp-demo.yaml", v.stdout)
    r = in_process(capsys, "train", "specs/dp-demo.yaml", "--out", "out/t")
    assert r.returncode == 2 and "run specs/dp-demo-private.yaml" in r.stderr and "Traceback" not in r.stderr


def test_validate_counts_clips_and_frames_not_samples(capsys):
    v = in_process(capsys, "validate", str(REPO / "specs" / "clips-demo.yaml"))
    assert v.returncode == 0, v.stderr
    assert "24 planned (12 identities x 2), 720 frames each (24 s at 30 fps): 17,280 frames" in v.stdout
    assert "12 planned (12 identities x 1)" in v.stdout and "samples" not in v.stdout


def test_the_cli_freezes_the_garbage_collector_at_exit_after_the_exit_handlers_before_it():
    """A command's process skips the interpreter's final garbage collections (0.9-1.0 s with torch and
    MediaPipe loaded): ``gc.freeze`` runs as an exit handler, after the handlers registered later (run
    first) and before those registered earlier, and the command's output and exit code are unchanged."""
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen at the end:', gc.get_freeze_count() > 0, flush=True))\n"
        "from dmsfactory.cli import main\n"
        "print('frozen before main:', gc.get_freeze_count() > 0)\n"
        f"rc = main(['validate', {str(REPO / 'specs' / 'clips-demo.yaml')!r}])\n"
        "print('frozen after main:', gc.get_freeze_count() > 0)\n"
        "sys.exit(rc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "frozen before main: False" in r.stdout and "frozen after main: False" in r.stdout
    assert "frozen at the end: True" in r.stdout
    assert "planned" in r.stdout  # validate's own output


@pytest.mark.slow
def test_ctrl_c_prints_one_line_exits_130_and_the_rerun_keeps_finished_shards(tmp_path, tiny_spec_dict, write_spec):
    """SIGINT to the process group (what a terminal's Ctrl-C does) during a Prefect run."""
    tiny_spec_dict.update({"identities": {"count": 15, "images_per_identity": 2}, "image": {"size": 64},
                           "shards": {"size": 2}, "privacy": {"enabled": False}})
    p = write_spec(tiny_spec_dict)
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "dmsfactory.cli", "run", str(p), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    progress = out / ".progress"
    deadline = time.time() + 300
    while time.time() < deadline and not (progress.is_dir() and len(list(progress.glob("*.json"))) >= 2):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-3000:]
    m = re.search(r"^interrupted: (\d+) of (\d+) shards done; rerun the same command to resume$", stderr, re.M)
    assert m, stderr[-3000:]
    done, total = int(m.group(1)), int(m.group(2))
    assert total == 15 and 2 <= done < total
    assert done == len(list(progress.glob("*.json")))
    for noise in ("Traceback", "Crash detected", "KeyboardInterrupt", "ERROR"):
        assert noise not in stderr + stdout, (noise, stderr[-3000:], stdout[-1000:])
    assert not (out / "manifest.json").exists()

    r = subprocess.run(cmd + ["--no-prefect"], env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming: {done} of 15 shards are already done" in r.stderr
    assert f": 15 ({done} kept from an earlier run, {15 - done} made now)" in r.stdout, r.stdout
