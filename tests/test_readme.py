"""The README's commands, run as written (with small limits), and what they print against what the
README says they print.

The commands are read from the README itself, so a README edit that breaks a command breaks this
test. Each runs in a fresh working directory holding a link to the repository's ``specs/``, so the
README's relative paths (``out/...``) resolve there.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
ENV = dict(os.environ, PREFECT_LOGGING_LEVEL="WARNING")


def readme_commands() -> list[list[str]]:
    """Every ``dmsfactory`` command line of the README's bash blocks (comments dropped)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            cmd = line.split("#", 1)[0].strip()
            if cmd.startswith((".venv/bin/dmsfactory ", "dmsfactory ")):
                out.append(shlex.split(cmd)[1:])
    return out


def command(*head: str) -> list[str]:
    hits = [c for c in readme_commands() if c[: len(head)] == list(head)]
    assert hits, f"the README has no `dmsfactory {' '.join(head)}` command"
    return hits[0]


def block_after(marker: str) -> str:
    """The first plain code block after ``marker`` in the README (a printed output)."""
    rest = README[README.index(marker):]
    return re.search(r"```\n(.*?)```", rest, re.S).group(1)


def run(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    if args and args[0] in ("-m",):
        argv = [sys.executable, *args]
    else:
        argv = [sys.executable, "-m", "dmsfactory.cli", *args]
    return subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def with_limit(args: list[str], n: int) -> list[str]:
    args = list(args)
    if "--limit" in args:
        args[args.index("--limit") + 1] = str(n)
    else:
        args += ["--limit", str(n)]
    return args


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    (d / "specs").symlink_to(REPO / "specs")
    return d


@pytest.fixture(scope="module")
def gallery(ws):
    """What `make demo` makes first (Makefile): the real-face gallery of specs/demo.yaml."""
    r = run(["-m", "dmsfactory.privacy.testgallery", "out/real-gallery"], ws)
    assert r.returncode == 0, r.stderr
    return ws / "out" / "real-gallery"


def test_validate_prints_what_the_readme_shows(ws):
    args = command("validate", "specs/demo.yaml")
    if not (ws / "out" / "real-gallery").exists():  # before `make demo`: the missing gallery and its command
        r = run(args, ws)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert "galleries[0]" in r.stderr and "python -m dmsfactory.privacy.testgallery out/real-gallery" in r.stderr
    r = run(["-m", "dmsfactory.privacy.testgallery", "out/real-gallery"], ws)
    assert r.returncode == 0, r.stderr
    r = run(args, ws)
    assert r.returncode == 0, r.stderr
    assert r.stdout == block_after("`validate specs/demo.yaml`")


def test_readme_names_the_commands_validate_names(ws):
    """The tiny SD model's command (README) is the one validate prints; train's prerequisites likewise."""
    tiny = re.search(r"python -m dmsfactory\.generators\.diffusion\.tiny \S+", README).group(0)
    r = run(["validate", "specs/diffusion-tiny.yaml"], ws)
    assert r.returncode == 2 and tiny.split("python", 1)[1] in r.stderr
    assert command("run", "specs/diffusion-tiny.yaml") == ["run", "specs/diffusion-tiny.yaml"]
    train = command("train")
    r = run(["validate", train[1]], ws)
    for spec in re.findall(r"after `run (\S+)` and `run (\S+)`", README)[0]:
        assert f"dmsfactory run {spec}" in r.stdout  # validate names the runs the README says come first


@pytest.mark.slow
def test_quick_preview_resume_reading_and_contact_sheet(ws, gallery):
    """`run ... --limit N` (N = 12 here): every split and class, the summary lines the README shows,
    the rerun keeps every shard, the README's reading snippet, `preview --split val`. At N = 6 the
    training split held one identity, and under renderer 0.5.0 the privacy gate finds it within the
    same-person threshold of the demo gallery and quarantines all its images: no training shard for
    the snippet to read. 12 renders give the training split two identities (measured: 9 images kept)."""
    from dmsfactory.datasets import iter_records, load_manifest

    args = with_limit(command("run", "specs/demo.yaml", "--out"), 12)
    out = ws / args[args.index("--out") + 1]
    r = run(args, ws)
    assert r.returncode == 0, r.stderr[-3000:]
    c = load_manifest(out)["counts"]
    labels = [line.split()[0] for line in r.stdout.splitlines()]
    shown = [line.split()[0] for line in block_after("A run ends with a summary").splitlines()]
    assert labels == [x for x in shown if x != "quarantined:" or c["quarantined"]], (labels, shown)
    written = c["train"] + c["val"] + c["test"] + c["quarantined"]
    assert re.search(rf"^done in .+: 12 renders \(a preview of 400\) -> {written} images \(train {c['train']}, "
                     rf"val {c['val']}, test {c['test']}, quarantined {c['quarantined']}\); [\d.]+ images/s made now$",
                     r.stdout, re.M), r.stdout
    assert written == 24  # each render and its augmented view
    docs = [d for d, _ in iter_records(out)]
    assert {d["split"] for d in docs} == {"train", "val", "test"}  # "from every split and class"
    assert len({d["labels"]["class"] for d in docs}) == 6
    assert f"{out.resolve()}: 3 (all made now)" in r.stdout  # train, val and test batches

    again = run(args, ws)  # the README: the same command resumes, keeping finished shards
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming: 3 of 3 shards are already done" in again.stderr
    assert f"{out.resolve()}: 3 (3 kept from an earlier run, 0 made now)" in again.stdout

    snippet = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    snippet = snippet.replace('"out/demo"', repr(str(out)))
    body = snippet.split("for s in ds:")[0] + (
        "seen = []\nfor s in ds:\n    lm = s['json']['landmarks']\n"
        "    seen.append((s['image'].dtype.name, s['image'].shape[2], tuple(sorted(lm)), len(lm['xy']), len(lm['visible']),"
        " 'class' in s['json']['labels']))\n")
    ns: dict = {}
    exec(compile(body, "README.md", "exec"), ns)  # noqa: S102 - the README's own code
    assert ns["seen"] and set(ns["seen"]) == {("uint8", 3, ("format", "visible", "xy"), 478, 478, True)}
    assert '"xy": 478 [x, y] pixels, "visible": 478 bools' in README

    p = command("preview")
    p = [str(out) if a == "out/preview" else a for a in p]
    r = run(p, ws)
    assert r.returncode == 0, r.stderr
    assert (out / "card" / "preview-val.png").is_file() and "preview-val.png" in r.stdout


@pytest.mark.slow
def test_clip_demo_preview_and_openlabel_export(ws):
    """`run specs/clips-demo.yaml` with --limit 1 (one clip of 720 frames and one still; --no-prefect to
    keep it short; that every split gets clips from --limit 3 is tests/test_clips.py's), then the
    README's `export-openlabel`."""
    from dmsfactory.clips.shards import open_clip_shards
    from dmsfactory.datasets import open_shards

    args = with_limit(command("run", "specs/clips-demo.yaml"), 1) + ["--no-prefect"]
    r = run(args, ws)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "clips:       1 clip (720 frames), quarantined 0; 1 clip shard" in r.stdout, r.stdout
    out = ws / "out" / "clips-demo"
    card = (out / "README.md").read_text()
    assert "- renders: 1 planned (a stratified preview of the spec's 12)" in card
    assert "- clips: 1 planned (a stratified preview of the spec's 24); written: 1 clip of 720 frames in all" in card
    assert len(list(open_shards(out, "train"))) == 1
    assert len(list(open_clip_shards(out, "train", with_frames=False))) == 1
    e = run(command("export-openlabel"), ws)
    assert e.returncode == 0, e.stderr
    assert "1 clip (720 frames) and 1 single image: 721 OpenLABEL frames" in e.stdout, e.stdout
    assert (ws / "labels.json").is_file()
