import json
import tarfile

import numpy as np
import webdataset as wds

from dmsfactory.datasets.shards import decode_image, finished_record, write_batch
from dmsfactory.sample import FaceSample


def _samples(n, size=32, quarantine=()):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        s = FaceSample(
            key=f"k-{i:07d}",
            index=i,
            params={"i": i},
            image=rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
            labels={"class": "alert"},
            landmarks=rng.random((478, 2)).astype(np.float32) * size,
            visibility=np.ones(478, bool),
            bbox=(1.0, 2.0, 30.0, 31.0),
            split="train",
            identity=f"id{i // 2:06d}",
        )
        if i in quarantine:
            s.quarantine("test", "deliberately rejected", score=0.5)
        out.append(s)
    return out


def test_roundtrip_through_plain_webdataset(tmp_path):
    samples = _samples(5, quarantine={3})
    keys = [s.key for s in samples]
    rec = write_batch(tmp_path, "train-000000", samples, spec_hash="h", planned_keys=keys, fmt="png")
    assert rec["counts"] == {"accepted": 4, "quarantined": 1}
    ds = wds.WebDataset(str(tmp_path / "train-000000.tar"), shardshuffle=False).decode("rgb8")
    got = list(ds)
    assert [g["__key__"] for g in got] == [k for i, k in enumerate(keys) if i != 3]
    for g in got:
        i = int(g["__key__"][-7:])
        assert np.array_equal(g["png"], samples[i].image)  # png is lossless
        assert g["json"]["labels"]["class"] == "alert"
        assert np.allclose(np.array(g["json"]["landmarks"]["xy"]), samples[i].landmarks, atol=1e-3)
    q = list(wds.WebDataset(str(tmp_path / "quarantine" / "train-000000.tar"), shardshuffle=False).decode())
    assert [x["__key__"] for x in q] == [keys[3]]
    assert q[0]["json"]["verdicts"][0]["reason"] == "deliberately rejected"
    assert rec["quarantine_reasons"][keys[3]] == ["test: deliberately rejected"]


def test_finished_record_detects_corruption_and_other_specs(tmp_path):
    samples = _samples(3)
    keys = [s.key for s in samples]
    write_batch(tmp_path, "train-000000", samples, spec_hash="h", planned_keys=keys)
    assert finished_record(tmp_path, "train-000000", "h", keys) is not None
    assert finished_record(tmp_path, "train-000000", "other", keys) is None
    assert finished_record(tmp_path, "train-000000", "h", keys[:2]) is None
    with open(tmp_path / "train-000000.tar", "r+b") as f:
        f.seek(700)
        f.write(b"garbage")
    assert finished_record(tmp_path, "train-000000", "h", keys) is None


def test_vanished_sample_fails_loudly(tmp_path):
    samples = _samples(3)
    try:
        write_batch(tmp_path, "train-000000", samples[:2], spec_hash="h", planned_keys=[s.key for s in samples])
    except RuntimeError as e:
        assert "vanished" in str(e)
    else:
        raise AssertionError("a lost sample must not be written silently")


def test_jpeg_decode_matches_cv2(tmp_path):
    samples = _samples(1, size=64)
    write_batch(tmp_path, "train-000000", samples, spec_hash="h", planned_keys=[samples[0].key])
    with tarfile.open(tmp_path / "train-000000.tar") as tf:
        names = tf.getnames()
        data = tf.extractfile([n for n in names if n.endswith(".jpg")][0]).read()
        doc = json.loads(tf.extractfile([n for n in names if n.endswith(".json")][0]).read())
    img = decode_image(data)
    assert img.shape == (64, 64, 3) and doc["key"] == samples[0].key


def test_same_samples_give_byte_identical_shards(tmp_path):
    import time

    a, b = tmp_path / "a", tmp_path / "b"
    samples = _samples(3)
    keys = [s.key for s in samples]
    ra = write_batch(a, "train-000000", samples, spec_hash="h", planned_keys=keys)
    time.sleep(1.1)
    rb = write_batch(b, "train-000000", samples, spec_hash="h", planned_keys=keys)
    assert ra["shard"]["sha256"] == rb["shard"]["sha256"]


def test_documents_read_back_as_json_wrote_them_nan_included():
    """The fast writer (orjson) is used only where it writes what ``json`` would read back: documents with
    NaN, infinity, non-string keys or integers beyond 64 bits go through ``json`` (orjson would write
    NaN as null)."""
    from dmsfactory.datasets.reader import load_doc
    from dmsfactory.datasets.record_schema import dumps_sorted, plain_json
    from dmsfactory.datasets.shards import sample_doc_bytes

    doc = {"b": [1, 2.5, 1e-05, None, True, "x"], "a": {"z": (3, 4), "y": -0.0}, "c": 2**63 - 1}
    fast = dumps_sorted(doc)
    assert plain_json(doc) and b", " not in fast  # orjson's compact output
    assert json.loads(fast) == json.loads(json.dumps(doc, sort_keys=True))
    assert list(json.loads(fast)) == ["a", "b", "c"]  # keys sorted
    for bad in ({"a": [1.0, float("nan")]}, {"a": {"b": float("inf")}}, {1: "int key"}, {"a": 2**70}):
        assert not plain_json(bad)
        assert dumps_sorted(bad) == json.dumps(bad, sort_keys=True).encode()
    assert np.isnan(load_doc(dumps_sorted({"a": float("nan")}))["a"])
    # a sample: NaN in a label, or in the landmarks, reads back as NaN, not None
    s0, s1, s2 = _samples(3)
    s = s0
    s.labels = {**s.labels, "gaze": {"yaw": float("nan")}}
    raw, plain = sample_doc_bytes(s)
    assert not plain and np.isnan(load_doc(raw)["labels"]["gaze"]["yaw"])
    s = s1
    s.landmarks = s.landmarks.astype(np.float64)
    s.landmarks[3, 0] = np.nan
    raw, plain = sample_doc_bytes(s)
    assert not plain and np.isnan(load_doc(raw)["landmarks"]["xy"][3][0])
    raw, plain = sample_doc_bytes(s2)
    assert plain and load_doc(raw) == json.loads(json.dumps(s2.to_json(), sort_keys=True))
