"""End to end on the embedded renderer: spec -> shards + manifest + card; determinism; resume."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from dmsfactory import pipeline
from dmsfactory.datasets import iter_records, load_manifest, open_shards
from dmsfactory.plan import make_plan
from dmsfactory.spec import parse_spec


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from conftest import TINY_SPEC

    spec = parse_spec(TINY_SPEC)
    out = tmp_path_factory.mktemp("ds")
    res = pipeline.run_plain(spec, out)
    return spec, out, res


def test_every_planned_key_exactly_once(built):
    spec, out, res = built
    keys = Counter(doc["key"] for doc, _ in iter_records(out))
    planned = [e["key"] for e in make_plan(spec)]
    assert sorted(keys) == sorted(planned) and set(keys.values()) == {1}
    m = load_manifest(out)
    assert m["counts"]["planned"] == len(planned)
    assert m["counts"]["train"] + m["counts"]["val"] + m["counts"]["test"] + m["counts"]["quarantined"] == len(planned)
    assert m["spec_hash"] == spec.content_hash() and m["schema_version"]
    assert len(m["landmark_format"]["ibug68_from_mediapipe"]) == 68


def test_splits_identity_disjoint_in_the_written_shards(built):
    _, out, _ = built
    ids = {}
    for split in ("train", "val", "test"):
        ids[split] = {s["json"]["identity"] for s in open_shards(out, split)}
        assert ids[split]
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]


def test_plain_webdataset_and_torch_dataloader_read_it(built):
    _, out, _ = built
    m = load_manifest(out)
    urls = [str(out / s["path"]) for s in m["shards"] if s["split"] == "train"]
    n = 0
    for s in wds.WebDataset(urls, shardshuffle=False).decode("rgb8"):
        assert s["jpg"].shape == (96, 96, 3) and s["json"]["labels"]["schema_version"]
        n += 1
    assert n == m["counts"]["train"]
    ds = open_shards(out, "train", transform=lambda s: (torch.from_numpy(s["image"]).permute(2, 0, 1), s["json"]["labels"]["kss"]))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 3, 96, 96) and batch[0].dtype == torch.uint8


def test_labels_and_landmarks_are_exact(built):
    spec, out, _ = built
    plan = {e["key"]: e for e in make_plan(spec)}
    for doc, img in iter_records(out, include_quarantine=False, with_images=True):
        e = plan[doc["key"]]
        lab = doc["labels"]
        assert lab["class"] == e["class"] and lab["eyes"]["right"]["openness"] == e["state"]["eye_openness_right"]
        xy = np.array(doc["landmarks"]["xy"])
        assert xy.shape == (478, 2)
        vis = np.array(doc["landmarks"]["visible"])
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < img.shape[1]) & (xy[:, 1] >= 0) & (xy[:, 1] < img.shape[0])
        assert inside[vis].all(), "a visible landmark lies outside the image"
        x0, y0, x1, y1 = doc["bbox"]
        assert x0 < x1 and y0 < y1
        # the image agrees with the recorded params: re-rendering the params gives the same pixels
    from dmsfactory.generators.procedural import render

    e = plan[doc["key"]]
    again = render(e, spec.procedural)
    assert np.allclose(again.landmarks, xy, atol=1e-3)


def test_card_and_plots(built):
    import cv2

    spec, out, res = built
    card = (out / "README.md").read_text()
    assert "class x lighting" in card and "card/sample_grid.png" in card
    assert (out / "card" / "class_balance.png").stat().st_size > 1000
    assert (out / "card" / "sample_grid.png").stat().st_size > 1000
    assert card.count("## Euro NCAP coverage") == 1
    c = load_manifest(out)["counts"]
    assert f"- renders: {spec.total_samples} planned; images written: train {c['train']}, val {c['val']}, test {c['test']}" in card
    assert "samples:" not in card.split("## Reading it")[0]
    # the grid fills its rows: 30 renders of 10 identities give 18 tiles, 3 full rows of 6, no black padding
    grid = cv2.imread(str(out / "card" / "sample_grid.png"))
    assert grid.shape[:2] == (3 * 160, 6 * 160)
    assert min(grid[r * 160:(r + 1) * 160, k * 160:(k + 1) * 160].mean() for r in range(3) for k in range(6)) > 15
    # a contact sheet per split with images, linked from the card
    for split in ("train", "val", "test"):
        assert f"(card/preview-{split}.png)" in card and (out / "card" / f"preview-{split}.png").stat().st_size > 1000
    if c["quarantined"]:
        head, _, rest = card.partition("## Quarantine reasons")
        assert rest and "| check | images | example reason |" in rest


def test_same_spec_and_seed_give_identical_shards(built, tmp_path):
    spec, out, _ = built
    res2 = pipeline.run_plain(spec, tmp_path / "again", limit=None)
    a = {s["path"]: s["sha256"] for s in load_manifest(out)["shards"]}
    b = {s["path"]: s["sha256"] for s in res2["manifest"]["shards"]}
    assert a == b


def test_prefect_flow_writes_the_same_dataset_and_an_artifact(built, tmp_path, write_spec):
    from prefect.testing.utilities import prefect_test_harness

    from conftest import TINY_SPEC
    from dmsfactory.flows.factory import factory_flow

    spec, out, _ = built
    p = write_spec(TINY_SPEC)
    with prefect_test_harness(server_startup_timeout=120):
        res = factory_flow(spec_path=str(p), out=str(tmp_path / "flow"))
    def reasons(d):
        return {p.name: json.loads(p.read_text())["quarantine_reasons"] for p in sorted((d / ".progress").glob("*.json"))}

    assert res["counts"] == load_manifest(out)["counts"], (reasons(out), reasons(tmp_path / "flow"))
    a = {s["path"]: s["sha256"] for s in load_manifest(out)["shards"]}
    b = {s["path"]: s["sha256"] for s in load_manifest(tmp_path / "flow")["shards"]}
    assert a == b


def test_resume_after_sigkill(tmp_path, tiny_spec_dict, write_spec):
    tiny_spec_dict.update(
        {"identities": {"count": 40, "images_per_identity": 5}, "image": {"size": 128}, "shards": {"size": 4}}
    )
    p = write_spec(tiny_spec_dict)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dmsfactory.cli", "run", str(p), "--out", str(out)]
    env = dict(os.environ, PREFECT_LOGGING_LEVEL="ERROR")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    progress = out / ".progress"
    while time.time() < deadline:
        if progress.is_dir() and len(list(progress.glob("*.json"))) >= 3:
            break
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the run finished before the kill"
    done = {p.stem: json.loads(p.read_text()) for p in progress.glob("*.json")}
    kept = {n: (out / r["shard"]["path"]).stat().st_mtime_ns for n, r in done.items() if r.get("shard")}
    assert kept
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    for n, mtime in kept.items():  # finished shards were kept, not rewritten
        assert (out / done[n]["shard"]["path"]).stat().st_mtime_ns == mtime
    keys = Counter(doc["key"] for doc, _ in iter_records(out))
    spec = parse_spec(tiny_spec_dict)
    assert sorted(keys) == sorted(e["key"] for e in make_plan(spec)) and set(keys.values()) == {1}
    assert not list(out.rglob("*.partial"))


def test_preview_writes_a_contact_sheet_for_any_split(built, tmp_path, capsys):
    import cv2

    from dmsfactory.cli import main
    from dmsfactory.datasets.preview import tile_lines

    _, out, _ = built
    target = tmp_path / "val.png"
    assert main(["preview", str(out), "--split", "val", "--n", "5", "--out", str(target)]) == 0
    assert str(target) in capsys.readouterr().out
    sheet = cv2.imread(str(target))
    assert sheet.shape[1] == 5 * (160 + 4) + 4  # 5 tiles in a row
    n_val = load_manifest(out)["counts"]["val"]
    assert main(["preview", str(out), "--split", "val", "--n", "500", "--out", str(target)]) == 0
    assert f"({n_val} val images" in capsys.readouterr().out  # never more than the split holds
    doc = next(iter_records(out, include_quarantine=False))[0]
    lines = tile_lines(doc)
    assert doc["labels"]["class"] in lines[1] and doc["labels"]["lighting"] in lines[2] and lines[4].startswith("eyes L/R")
    assert main(["preview", str(out), "--split", "nope"]) == 2
    assert "--split" in capsys.readouterr().err


def test_run_summary_reads_what_the_stages_wrote(built):
    import time as _time

    from dmsfactory.summary import run_summary, run_summary_lines

    spec, out, _ = built
    m = load_manifest(out)
    d = run_summary(out, started=0.0, ended=20.0)  # every shard newer than "started": all made now
    n_shards = len(list((out / ".progress").glob("*.json")))
    assert d["shards"] == {"total": n_shards, "kept": 0, "made": n_shards}
    assert d["images"] == {k: m["counts"][k] for k in ("train", "val", "test", "quarantined")}
    assert d["images_made"] == sum(d["images"].values()) == spec.total_samples
    lines = run_summary_lines(d)
    assert lines[0] == (f"done in 20.0 s: {spec.total_samples} renders -> {spec.total_samples} images "
                        f"(train {m['counts']['train']}, val {m['counts']['val']}, test {m['counts']['test']}, "
                        f"quarantined {m['counts']['quarantined']}); {spec.total_samples / 20:.2f} images/s made now")
    later = run_summary(out, started=_time.time() + 1, ended=_time.time() + 2)  # nothing written since
    assert later["shards"]["kept"] == n_shards and later["images_made"] == 0
    assert "privacy" not in later and "verify" not in later  # reports of an earlier run are not this run's
    q = sum(g["images"] for g in d["quarantine"])
    assert q == m["counts"]["quarantined"]


def _first_n_identities(stream, n, cap=None):
    """The selection rule of the contact sheets and the sample grid, written out plainly: samples with an
    image in reading order until ``n`` identities are in hand or ``cap`` (default 50 n) samples are read."""
    cap = cap or 50 * n
    out, ids = [], set()
    for doc, raw in stream:
        if raw is None:
            continue
        out.append((doc, raw))
        ids.add(doc.get("identity"))
        if len(ids) >= n or len(out) >= cap:
            break
    return out


def test_candidates_fed_one_at_a_time_pick_what_reading_the_shards_picks(built):
    import random

    from dmsfactory.datasets.preview import Candidates, _docs, candidates, pick
    from dmsfactory.datasets.reader import iter_raw_split, shard_paths

    # random identity streams (runs of one identity, interleavings, images missing), small n and caps:
    # the collector keeps fewer samples (it drops what pick can no longer choose) and picks the same
    rng = random.Random(3)
    dropped = 0
    for trial in range(400):
        n = rng.randint(1, 9)
        cap = rng.choice([None, rng.randint(1, 40)])
        ids = [f"id{rng.randint(0, rng.randint(1, 12))}" for _ in range(rng.randint(0, 80))]
        if trial % 2:
            ids.sort(key=lambda s: (rng.random() < 0.2, s))  # mostly grouped, like shards of whole identities
        stream = [({"identity": i, "k": j}, None if rng.random() < 0.1 else b"%d" % j) for j, i in enumerate(ids)]
        ref = _first_n_identities(stream, n, cap)
        c = Candidates(n, cap)
        for doc, raw in stream:
            c.add(doc, raw)
        assert c.read == len(ref) and c.pick() == pick(ref, n), (trial, n, cap, ids)
        assert c.full == (len(ref) < len([s for s in stream if s[1] is not None]) or len({d["identity"] for d, _ in ref}) >= n or len(ref) >= (cap or 50 * n))
        dropped += len(ref) - len(c.samples)
    assert dropped > 0  # the pruning ran

    # the fixture's shards: candidates() (the CLI's read) and a collector fed from finalize's reader agree
    _, out, _ = built
    for split in ("train", "val", "test"):
        paths = shard_paths(out, split)
        for n in (1, 2, 3, 5, 32):
            ref = pick(_first_n_identities(_docs(paths), n), n)
            assert pick(candidates(paths, n), n) == ref
            c = Candidates(n)
            for doc, raw, quarantined, s in iter_raw_split(out):
                if s == split and not quarantined:
                    c.add(doc, raw)
            assert c.pick() == ref and len(ref) == min(n, sum(1 for _ in _docs(paths)))


def test_finalize_opens_each_shard_once_and_draws_what_reading_the_shards_draws(built, tmp_path, monkeypatch):
    """The sample grid and the contact sheets come from finalize's one pass over the shards (no second
    read), and are the images `dmsfactory preview` / pick_grid_samples read from the shards. The privacy
    report's pair figures fetch their few images afterwards (their keys are known only at the end)."""
    import shutil
    import tarfile

    import dmsfactory.privacy.report as privacy_report
    from dmsfactory.datasets.card import pick_grid_samples, sample_grid
    from dmsfactory.datasets.preview import contact_sheet

    spec, src, _ = built
    out = tmp_path / "ds"
    shutil.copytree(src, out)
    records = [pipeline.process_shard(spec, job, out) for job in pipeline.plan_jobs(spec)]
    assert all(r["resumed"] for r in records)
    # a train batch becomes a quarantine shard: the quarantine sheet is collected apart from its split's
    r = [r for r in records if r["split"] == "train" and r.get("shard")][-1]
    (out / "quarantine").mkdir(exist_ok=True)
    moved = {**r["shard"], "path": f"quarantine/{Path(r['shard']['path']).name}"}
    (out / r["shard"]["path"]).rename(out / moved["path"])
    r["quarantine"], r["shard"] = moved, None

    opened: Counter = Counter()
    fetched: Counter = Counter()
    in_fetch = []
    real_open, real_fetch = tarfile.open, privacy_report.fetch_images

    def counting_open(name=None, *a, **k):
        (fetched if in_fetch else opened)[Path(name).resolve()] += 1
        return real_open(name, *a, **k)

    def fetch(dataset_dir, keys, locate=None):
        in_fetch.append(len(keys))
        try:
            return real_fetch(dataset_dir, keys, locate)
        finally:
            in_fetch.pop()

    monkeypatch.setattr(tarfile, "open", counting_open)
    monkeypatch.setattr(privacy_report, "fetch_images", fetch)
    pipeline.finalize(spec, out, records, None)
    monkeypatch.undo()
    m = load_manifest(out)
    tars = [(out / e["path"]).resolve() for e in m["shards"] + m["quarantine"]]
    assert m["counts"]["quarantined"] > 0 and len(tars) > 4
    assert opened == Counter(tars), "finalize read a shard more than once (or one it does not list)"
    assert set(fetched) <= set(tars) and max(fetched.values(), default=1) == 1

    for split in ("train", "val", "test", "quarantine"):
        ref = contact_sheet(out, split, 32, out=tmp_path / f"{split}.png")
        assert ref["images"] > 0
        assert (out / "card" / f"preview-{split}.png").read_bytes() == (tmp_path / f"{split}.png").read_bytes(), split
    sample_grid(pick_grid_samples(out), tmp_path / "grid.png")
    assert (out / "card" / "sample_grid.png").read_bytes() == (tmp_path / "grid.png").read_bytes()


def test_draw_tile_sets_one_pixel_per_landmark_the_later_on_top(built):
    """draw_tile's vectorised landmarks are the pixels a landmark-by-landmark loop draws (rounded half to
    even, clipped to the tile, the later landmark over an earlier one), occluded ones red."""
    import cv2

    from dmsfactory.datasets.preview import draw_tile
    from dmsfactory.datasets.reader import iter_raw
    from dmsfactory.datasets.shards import decode_image

    _, out, _ = built
    n = 0
    for doc, raw, _ in iter_raw(out):
        img = decode_image(raw)
        doc = {**doc, "landmarks": {**doc["landmarks"], "visible": [bool(i % 3) for i in range(478)]}}
        for tile in (160, 24):  # 24: many landmarks share a pixel
            ref = draw_tile(img, {"key": doc["key"]}, tile)  # the scaled image alone
            xy = np.asarray(doc["landmarks"]["xy"], np.float64) * [tile / img.shape[1], tile / img.shape[0]]
            for (x, y), v in zip(xy, doc["landmarks"]["visible"]):
                ref[int(np.clip(round(y), 0, tile - 1)), int(np.clip(round(x), 0, tile - 1))] = (0, 255, 0) if v else (255, 0, 0)
            for c in (468, 473):
                cv2.circle(ref, (int(round(xy[c, 0])), int(round(xy[c, 1]))), max(2, tile // 64), (0, 255, 255), 1, cv2.LINE_AA)
            x0, y0, x1, y1 = doc["bbox"]
            sx, sy = tile / img.shape[1], tile / img.shape[0]
            cv2.rectangle(ref, (int(round(x0 * sx)), int(round(y0 * sy))), (int(round(x1 * sx)), int(round(y1 * sy))), (255, 160, 0), 1)
            assert np.array_equal(draw_tile(img, doc, tile), ref)
            n += 1
        if n >= 12:
            break
    assert n == 12
