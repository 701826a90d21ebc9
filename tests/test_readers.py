"""Real readers on real shards written by `dmsfactory run` (docs/readers.md).

One module-scoped dataset, made by the CLI in a subprocess (images with augmentation, verification
with relabel + quarantine, clips), is read back with Hugging Face `datasets` (both entry points),
`wids`, `mlcroissant`, plain `webdataset` and our `open_shards`; the same subprocess run is the
check that the terminal stays free of MediaPipe/TFLite log lines.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import dmsfactory
from dmsfactory.datasets import hf, open_shards
from dmsfactory.datasets.croissant import croissant, field_rows
from dmsfactory.datasets.record_schema import PARAMS_MEMBER, SAMPLE_SCHEMA, check_clip, check_sample
from dmsfactory.datasets.wids_index import index_sets
from dmsfactory.labelers.params import SCHEMA_VERSION, make_labels
from dmsfactory.labelers.schema import (
    CLIP_LABELS_SCHEMA, CLIP_SCHEMA_FINGERPRINTS, LABEL_SCHEMA, SCHEMA_FINGERPRINTS, ListOf, check_labels,
    fingerprint, iter_leaves,
)

SPEC = {
    "name": "readers-test",
    "seed": 20,
    "backend": "procedural",
    "classes": {"alert": 1, "mild_fatigue": 1, "moderate_fatigue": 1, "severe_fatigue": 1, "distracted": 1, "phone": 1},
    "conditions": {"lighting": {"daylight": 2, "night_ir": 1, "tunnel": 1, "backlight": 1},
                   "accessory": {"none": 2, "glasses": 1, "sunglasses": 1, "mask": 1, "cap": 1}},
    "identities": {"count": 14, "images_per_identity": 2, "mixup_fraction": 0.15},
    "image": {"size": 128},
    "shards": {"size": 6},
    "splits": {"train": 0.5, "val": 0.25, "test": 0.25},
    "output": {"dir": "out/readers-test", "license": "CC-BY-4.0"},
    "augment": {"enabled": True, "views_per_image": 1},
    # 128 px renders: face mesh misses some faces (quarantined) and relabels some mouths; rate 1.0: every
    # image checked and acted on (the procedural backend's default is an audit that never acts)
    "verify": {"enabled": True, "rate": 1.0, "policy": {"face": "quarantine", "landmarks": "keep", "eyes": "keep", "mouth": "relabel",
                                            "gaze": "keep", "head_pose": "keep"}},
    "clips": {"fps": 5, "duration_s": 3, "clips_per_identity": 1, "image_size": 64, "clips_per_shard": 2,
              "scenarios": {"alert": 1, "drowsy": 1}, "coverage": {"min_per_cell": 0, "fail_on_gap": False}},
}
NATIVE_NOISE = re.compile(r"^[IW]\d{4} |XNNPACK delegate|absl::InitializeLog", re.M)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(dmsfactory.__file__).resolve().parents[1])  # this checkout's src/ first
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run_cli(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dmsfactory.cli", *args], capture_output=True, text=True,
                          env=_env(), timeout=timeout)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("readers")
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = root / "ds"
    r = _run_cli(["run", str(spec), "--out", str(out), "--limit", "16", "--no-prefect"])
    assert r.returncode == 0, r.stderr[-3000:]
    return {"out": out, "root": root, "proc": r, "manifest": json.loads((out / "manifest.json").read_text())}


def _tar_samples(path: Path) -> list[tuple[str, dict[str, bytes]]]:
    """(key, {member suffix: bytes}) in tar order, with the stdlib only."""
    out: list[tuple[str, dict[str, bytes]]] = []
    with tarfile.open(path) as tf:
        for m in tf:
            key, _, ext = m.name.partition(".")
            if not out or out[-1][0] != key:
                out.append((key, {}))
            out[-1][1][ext] = tf.extractfile(m).read()  # type: ignore[union-attr]
    return out


def _split_samples(made, split: str, quarantine: bool = False) -> list[tuple[str, dict[str, bytes]]]:
    entries = made["manifest"]["quarantine" if quarantine else "shards"]
    return [s for e in entries if e["split"] == split for s in _tar_samples(made["out"] / e["path"])]


def _same(node, hf_value, doc_value, path: str, problems: list[str]) -> None:
    """HF's decoded value equals the document's: exactly for typed fields, to 1e-9 for json ones."""
    if isinstance(node, dict):
        if doc_value is None:
            if hf_value is not None:
                problems.append(f"{path}: HF {hf_value!r:.80} for null")
            return
        for k, sub in node.items():
            _same(sub, (hf_value or {}).get(k), doc_value.get(k), f"{path}.{k}", problems)
        return
    if isinstance(node, ListOf):
        if doc_value is None or hf_value is None:
            if (doc_value is None) != (hf_value is None):
                problems.append(f"{path}: {hf_value!r:.80} vs {doc_value!r:.80}")
            return
        if len(hf_value) != len(doc_value):
            problems.append(f"{path}: {len(hf_value)} items vs {len(doc_value)}")
            return
        for i, (a, b) in enumerate(zip(hf_value, doc_value)):
            _same(node.item, a, b, f"{path}[{i}]", problems)
        return
    if node.dtype == "json":
        ok = _close(hf_value, doc_value)
    else:  # typed: equal, and of the same Python type (an int declared float64 may come back as a float)
        a, b = _first(hf_value), _first(doc_value)
        ok = hf_value == doc_value and (b is None or type(a) is type(b) or node.dtype == "float64" and isinstance(b, int))
    if not ok:
        problems.append(f"{path}: HF {hf_value!r:.80} != {doc_value!r:.80}")


def _first(v):
    while isinstance(v, list) and v:
        v = v[0]
    return v


def _close(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-9 * max(1.0, abs(b))
    return a == b


# ---------------- the dataset itself ----------------

def test_the_run_made_every_reader_file_and_a_quiet_terminal(made):
    out, m, r = made["out"], made["manifest"], made["proc"]
    assert m["counts"]["quarantined"] > 0 and m["clips"]["counts"]["clips"] > 0
    assert m["readers"]["croissant"] == "croissant.json" and (out / "croissant.json").is_file()
    assert set(m["readers"]["wids"]) == set(index_sets(m)) and all((out / f).is_file() for f in m["readers"]["wids"])
    assert (out / "README.md").read_text().startswith("---\n")
    # no MediaPipe/TFLite log lines on either stream (face mesh ran: verification is on) ...
    assert not NATIVE_NOISE.search(r.stdout) and not NATIVE_NOISE.search(r.stderr), r.stderr[-2000:]
    # ... while what the user needs stays: the counts, quarantine included
    assert f"quarantined {m['counts']['quarantined']}" in r.stdout
    assert "error" not in r.stderr.lower()


def test_every_document_is_declared(made):
    """A label/document field a stage adds without declaring it in the schema fails here."""
    from dmsfactory.clips.shards import open_clip_shards
    from dmsfactory.datasets.reader import iter_records

    docs = [d for d, _ in iter_records(made["out"])]
    assert docs and any("relabelled" in d["labels"] for d in docs) and any(d["aug"] for d in docs)
    assert [p for d in docs for p in check_sample(d)] == []
    clips = [c["json"] for c in open_clip_shards(made["out"], None, with_frames=False)]
    assert clips and [p for c in clips for p in check_clip(c)] == []


def test_labels_of_a_whole_plan_are_declared(tiny_spec_dict):
    """Every class, condition, mixup and phone case of a plan (labels without renderer geometry)."""
    from dmsfactory.plan import make_plan
    from dmsfactory.spec import DatasetSpec

    d = dict(tiny_spec_dict, identities={"count": 24, "images_per_identity": 5, "mixup_fraction": 0.25},
             splits={"train": 0.5, "val": 0.25, "test": 0.25})
    labels = [make_labels(e) for e in make_plan(DatasetSpec.model_validate(d))]
    assert any(lab["identity"]["mixup"] for lab in labels) and any(lab["phone"]["present"] for lab in labels)
    assert [p for lab in labels for p in check_labels(lab)] == []


def test_check_labels_finds_undeclared_and_mistyped_fields():
    good = {"kss": 5, "eyes": {"left": {"openness": 0.5}}, "gaze": {"in_head": {"distance_m": None}}}
    assert check_labels(good) == []
    assert check_labels({**good, "new_label": 1}) == ["labels.new_label: not declared in dmsfactory.labelers.schema.LABEL_SCHEMA"]
    assert check_labels({"kss": 5.5})[0].startswith("labels.kss: expected int64")
    assert check_labels({"lighting": "moonlight"})[0].startswith("labels.lighting: 'moonlight' is not one of")
    assert check_labels({"head_translation_m": [0.0, 1.0]}) == ["labels.head_translation_m: expected 3 items, got 2"]
    assert check_labels({"drowsy": 1})[0].startswith("labels.drowsy: expected bool")


def test_schema_change_needs_a_version_bump():
    from dmsfactory.clips.generate import CLIP_SCHEMA_VERSION

    assert SCHEMA_FINGERPRINTS.get(SCHEMA_VERSION) == fingerprint(), (
        f"LABEL_SCHEMA changed: bump SCHEMA_VERSION ({SCHEMA_VERSION}) and record fingerprint() in SCHEMA_FINGERPRINTS")
    assert CLIP_SCHEMA_FINGERPRINTS.get(CLIP_SCHEMA_VERSION) == fingerprint(CLIP_LABELS_SCHEMA)


# ---------------- Hugging Face datasets ----------------

def test_hf_features_are_generated_from_the_label_schema():
    import datasets

    f = hf.features()
    labels = f["json"]["labels"]

    def leaves(node, prefix=""):
        for k, v in node.items():
            if isinstance(v, dict):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    got = dict(leaves(labels))
    assert set(got) == {p for p, _ in iter_leaves(LABEL_SCHEMA)}
    assert got["kss"] == datasets.Value("int64") and got["gaze.in_head.distance_m"] == datasets.Value("float64")
    assert got["head_rotation_matrix"] == datasets.List(datasets.List(datasets.Value("float64"), length=3), length=3)
    assert got["identity.mixup.soft"] == datasets.Json()
    assert f["params.txt"] == datasets.Value("string") and isinstance(f["jpg"], datasets.Image)
    for kind, n in (("samples", 0), ("clips", 4)):  # our YAML writer agrees with datasets' own
        d = hf.feature_dict(kind, "jpg", n)
        assert hf.yaml_features(d) == datasets.Features.from_dict(d)._to_yaml_list()


def test_hf_load_dataset_dir_every_config_round_trips(made, tmp_path):
    import datasets

    out, m = made["out"], made["manifest"]
    cache = str(tmp_path / "hf")
    configs = {c["config_name"] for c in hf.configs(m)}
    assert {"default", "quarantine", "clips"} <= configs
    for config, quarantine in (("default", False), ("quarantine", True)):
        dd = datasets.load_dataset(str(out), config, cache_dir=cache)
        splits = {e["split"] for e in m["quarantine" if quarantine else "shards"]}
        assert set(dd) == splits
        for split in splits:
            ds = dd[split]
            assert ds.features == hf.features(dataset_dir=out)  # the declared features, not inferred ones
            tar = _split_samples(made, split, quarantine)
            assert ds["__key__"] == [k for k, _ in tar]
            raw = ds.cast_column("jpg", datasets.Image(decode=False))
            problems: list[str] = []
            for i, (key, parts) in enumerate(tar):
                row, doc = ds[i], json.loads(parts["json"])
                _same(SAMPLE_SCHEMA, row["json"], doc, key, problems)
                assert json.loads(row[PARAMS_MEMBER]) == doc["params"]  # exact, every float
                assert raw[i]["jpg"]["bytes"] == parts["jpg"]
                if quarantine:
                    assert any(v["verdict"] == "quarantine" for v in row["json"]["verdicts"])
            assert problems == []
    # one value, spelled out: a full-precision float and a null survive exactly
    ds = datasets.load_dataset(str(out), cache_dir=cache)["train"]
    key, parts = _split_samples(made, "train")[0]
    doc = json.loads(parts["json"])
    assert ds[0]["json"]["labels"]["head_rotation_matrix"] == doc["labels"]["head_rotation_matrix"]
    assert ds[0]["json"]["labels"]["gaze"]["in_head"] == doc["labels"]["gaze"]["in_head"]


def test_hf_clips_config(made, tmp_path):
    import datasets

    from dmsfactory.datasets.record_schema import CLIP_SCHEMA

    dd = datasets.load_dataset(str(made["out"]), "clips", cache_dir=str(tmp_path / "hf"))
    split = next(iter(dd))
    entries = [e for e in made["manifest"]["clips"]["shards"] if e["split"] == split]
    tar = [s for e in entries for s in _tar_samples(made["out"] / e["path"])]
    ds = dd[split]
    assert ds["__key__"] == [k for k, _ in tar]
    row, (key, parts) = ds[0], tar[0]
    doc = json.loads(parts["json"])
    problems: list[str] = []
    strip = {**doc, "frames": [{k: v for k, v in f.items() if k != "params"} for f in doc["frames"]]}
    _same(CLIP_SCHEMA, row["json"], strip, key, problems)
    assert problems == []
    n = len(doc["frames"])
    assert n == 15 and np.array_equal(np.asarray(row[f"f{n - 1:05d}.jpg"]),
                                      np.asarray(Image.open(io.BytesIO(parts[f"f{n - 1:05d}.jpg"]))))


def test_hf_webdataset_builder_with_declared_features(made, tmp_path):
    import datasets

    out = made["out"]
    files = {s: str(out / f"{s}-*.tar") for s in ("train", "val", "test")}
    dd = datasets.load_dataset("webdataset", data_files=files, features=hf.features(), cache_dir=str(tmp_path / "hf"))
    for split in files:
        tar = _split_samples(made, split)
        assert dd[split]["__key__"] == [k for k, _ in tar]
        doc = json.loads(tar[-1][1]["json"])
        problems: list[str] = []
        _same(SAMPLE_SCHEMA, dd[split][-1]["json"], doc, tar[-1][0], problems)
        assert problems == []
        assert json.loads(dd[split][-1][PARAMS_MEMBER]) == doc["params"]
    q = datasets.load_dataset("webdataset", data_files={"train": str(out / "quarantine" / "*.tar")},
                              features=hf.features(), cache_dir=str(tmp_path / "hf"))
    assert q["train"].num_rows == made["manifest"]["counts"]["quarantined"]


# ---------------- wids ----------------

def test_wids_random_access_equals_sequential_read(made):
    import wids

    out, m = made["out"], made["manifest"]
    for split in ("train", "val", "test"):
        seq = _split_samples(made, split)
        ds = wids.ShardListDataset(str(out / f"wids-{split}.json"), localname=lambda u: u, transformations=[])
        assert ds.cache_dir is None and len(ds) == len(seq) == m["counts"][split]
        order = list(range(len(ds)))
        random.Random(split).shuffle(order)
        for i in order:
            s = ds[i]
            key, parts = seq[i]
            assert s["__key__"] == key
            assert {k: s[k].getvalue() for k in s if k.startswith(".")} == {f".{k}": v for k, v in parts.items()}
    clips = json.loads((out / "wids-clips-train.json").read_text())
    assert sum(x["nsamples"] for x in clips["shardlist"]) == sum(
        e["count"] for e in m["clips"]["shards"] if e["split"] == "train")


# ---------------- Croissant ----------------

@pytest.fixture(scope="module")
def mlc(tmp_path_factory):
    cache = tmp_path_factory.mktemp("croissant-cache")
    with pytest.MonkeyPatch.context() as mp:
        # mlcroissant extracts each tar under $CROISSANT_CACHE/extract/<sha256(contentUrl)> and reuses it:
        # relative URLs of two datasets would collide, so a fresh cache per test session
        mp.setenv("CROISSANT_CACHE", str(cache))
        import mlcroissant
        from etils import epath
        from mlcroissant._src.operation_graph.operations import extract

        mp.setattr(extract, "EXTRACT_PATH", epath.Path(cache) / "extract")  # in case it was imported before
        yield mlcroissant


def test_croissant_validates_and_records_equal_the_tars(made, mlc):
    out, m = made["out"], made["manifest"]
    ds = mlc.Dataset(jsonld=str(out / "croissant.json"))
    issues = ds.metadata.issues
    assert not issues.errors
    assert [w for w in issues.warnings if "datePublished" not in w] == []
    meta = json.loads((out / "croissant.json").read_text())
    assert meta["license"] == "https://spdx.org/licenses/CC-BY-4.0.html" and m["spec_hash"] in meta["rai:dataCollection"]
    assert meta == croissant(m)  # derived from the manifest alone
    for rs, split, quarantine in (("train", "train", False), ("val", "val", False), ("quarantine-train", "train", True)):
        tar = _split_samples(made, split, quarantine)
        if not tar:
            continue
        by_key = dict(tar)
        recs = list(ds.records(rs))
        assert sorted(r[f"{rs}/key"].decode() for r in recs) == sorted(by_key)
        first = recs[0]
        key = first[f"{rs}/key"].decode()
        shard = next(e for e in m["quarantine" if quarantine else "shards"] if e["split"] == split
                     and key in {k for k, _ in _tar_samples(out / e["path"])})
        in_tar = [k for k, _ in _tar_samples(out / shard["path"])]
        # mlcroissant reads a shard in member order: its first records are that tar's first samples
        assert [r[f"{rs}/key"].decode() for r in recs[: len(in_tar)]] == in_tar
        for r in recs[:3]:
            parts = by_key[r[f"{rs}/key"].decode()]
            assert r[f"{rs}/json"] == parts["json"]
            assert np.array_equal(np.asarray(r[f"{rs}/image"].convert("RGB")),
                                  np.asarray(Image.open(io.BytesIO(parts["jpg"])).convert("RGB")))
    fields = list(ds.records("label_fields"))
    paths = [f["label_fields/path"].decode() if isinstance(f["label_fields/path"], bytes) else f["label_fields/path"]
             for f in fields]
    assert [r["label_fields/path"] for r in field_rows(SAMPLE_SCHEMA)] == paths[: len(field_rows(SAMPLE_SCHEMA))]
    assert "labels.gaze.in_head.distance_m" in paths and "clip:labels.temporal.per_frame.state" in paths
    clip_rs = next(r["@id"] for r in meta["recordSet"] if r["@id"].startswith("clips-") and not r["@id"].endswith("frames"))
    clip = next(iter(ds.records(clip_rs)))
    frames = [f for f in ds.records(f"{clip_rs}-frames") if f[f"{clip_rs}-frames/clip_key"] == clip[f"{clip_rs}/key"]]
    assert len(frames) == len(json.loads(clip[f"{clip_rs}/json"])["frames"]) == 15


def test_reader_files_are_deterministic(made, tmp_path):
    from dmsfactory.datasets.reader_files import write_reader_files

    m = made["manifest"]
    write_reader_files(tmp_path, m)
    for name in ["croissant.json", *m["readers"]["wids"]]:
        assert (tmp_path / name).read_bytes() == (made["out"] / name).read_bytes()


# ---------------- webdataset and our reader ----------------

def test_plain_webdataset_and_open_shards(made):
    import webdataset as wds

    out, m = made["out"], made["manifest"]
    for split in ("train", "val", "test"):
        urls = [str(out / e["path"]) for e in m["shards"] if e["split"] == split]
        plain = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("rgb8"))
        ours = list(open_shards(out, split))
        tar = _split_samples(made, split)
        assert [s["__key__"] for s in plain] == [s["__key__"] for s in ours] == [k for k, _ in tar]
        for p, o, (key, parts) in zip(plain, ours, tar):
            assert p["json"] == o["json"] == json.loads(parts["json"])
            assert json.loads(p[PARAMS_MEMBER]) == o["json"]["params"]
            assert p["jpg"].shape == o["image"].shape and p["jpg"].dtype == np.uint8


# ---------------- terminal output ----------------

def test_native_log_filter_drops_only_the_noise(capfd):
    from dmsfactory.quiet import filter_native_logs

    with filter_native_logs() as f:
        os.write(2, b"\rbar 10%|#  |")  # a progress bar, no newline
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"W0000 00:00:1796266875.724431    8812 inference_feedback_manager.cc:114] Feedback manager\n")
        os.write(2, b"I1203 10:11:12.123456 1 gl_context.cc:357] GL version\n")
        os.write(2, b"E0000 00:00:1796266875.7 8812 model.cc:1] model file missing\n")
        os.write(2, b"warning: 3 samples quarantined\n")
        print("python", file=sys.stderr)
    err = capfd.readouterr().err
    assert f.dropped == 3
    assert "XNNPACK" not in err and "Feedback manager" not in err and "GL version" not in err
    assert "\rbar 10%|#  |" in err and "model file missing" in err and "3 samples quarantined" in err and "python" in err
    os.write(2, b"W0000 00:00:1.0 1 x.cc:1] after\n")  # the filter is gone after the block
    assert "after" in capfd.readouterr().err


def test_native_log_filter_drops_tflite_pieces_that_two_writers_interleaved(capfd):
    """TensorFlow Lite writes "INFO: ", its message and the newline separately; two workers starting
    their graphs together interleave the pieces (seen in a CI run). Every order of two writers' pieces
    comes out with nothing of them, and the lines around them unchanged."""
    import itertools

    from dmsfactory.quiet import filter_native_logs

    pieces = [b"INFO: ", b"Created TensorFlow Lite XNNPACK delegate for CPU.", b"\n"]
    orders = set()
    for who in itertools.product("ab", repeat=6):  # each writer's three pieces in its own order
        if who.count("a") == 3:
            orders.add(who)
    for who in sorted(orders):
        nxt = {"a": 0, "b": 0}
        with filter_native_logs() as f:
            os.write(2, b"before\n")
            for w in who:
                os.write(2, pieces[nxt[w]])
                nxt[w] += 1
            os.write(2, b"INFO: Initialized TensorFlow Lite runtime.\n")  # not noise: kept
            os.write(2, b"after\n")
        err = capfd.readouterr().err
        assert err == "before\nINFO: Initialized TensorFlow Lite runtime.\nafter\n", (who, err)
        assert f.dropped >= 1


def test_native_log_filter_ends_with_its_block_while_a_child_still_holds_the_pipe(capfd):
    """A spawned worker pool's resource tracker inherits fd 2 and outlives the command: the block's
    end must wait for what was written before it, not for the pipe's end of file (that waited out a
    2 s timeout after every multi-worker run)."""
    import subprocess
    import time

    from dmsfactory.quiet import filter_native_logs

    with filter_native_logs() as f:
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        os.write(2, b"W0000 00:00:1796266875.724431    8812 inference_feedback_manager.cc:114] Feedback\n")
        os.write(2, b"last words, no newline")
        t = time.monotonic()
    ended = time.monotonic() - t
    try:
        assert child.poll() is None  # the child still holds the pipe: no end of file yet
        assert f.drained.is_set() and f.is_alive()
        assert ended < 1.5, f"the block's end waited {ended:.2f} s for the child"
        err = capfd.readouterr().err
        assert "last words, no newline" in err and "Feedback" not in err and f.dropped == 1
    finally:
        child.communicate(b"")


def test_verbose_brings_the_native_lines_back(tmp_path):
    spec = {k: v for k, v in SPEC.items() if k not in ("clips", "augment")}
    spec["identities"] = {"count": 6, "images_per_identity": 1, "mixup_fraction": 0.0}
    spec["verify"] = {"enabled": True}
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(spec))
    r = _run_cli(["run", str(p), "--out", str(tmp_path / "ds"), "--limit", "2", "--no-prefect", "-v"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert NATIVE_NOISE.search(r.stderr), "face mesh ran with -v but printed none of its log lines"
