"""OpenLABEL export: schema-valid, and the DMD-style actions/events give back the labels they came from."""

import json

import numpy as np
import pytest

from dmsfactory.clips import ClipGenerator, ClipsConfig, Script, Segment, make_clip_plan
from dmsfactory.clips.plan import clip_shard_jobs
from dmsfactory.clips.shards import write_clip_shard
from dmsfactory.datasets.openlabel import (
    check_openlabel_subset,
    export_openlabel,
    to_openlabel,
    validate_openlabel,
)
from dmsfactory.sample import FaceSample
from dmsfactory.spec import parse_spec


class IndexFrames:
    """Test double for pixels (these tests are about labels): a flat frame with a fixed face box."""

    def generate(self, plan):
        return [FaceSample(key=e["key"], index=e["index"], params=dict(e), image=np.full((16, 16, 3), 80, np.uint8),
                           bbox=(2.0, 3.0, 12.0, 14.0), split=e["split"], identity=e["identity"]) for e in plan]


@pytest.fixture(scope="module")
def clips():
    cfg = ClipsConfig(fps=10, duration_s=12, scenarios={"s": 1}, scripts={"s": Script(kss=8, segments=[
        Segment(kind="drive", duration_s=1.5), Segment(kind="microsleep", duration_s=1.5),
        Segment(kind="drive", duration_s=1.0), Segment(kind="glance", duration_s=4.0, zone="left"),
        Segment(kind="yawn", duration_s=4.0, with_hand=True)])})
    spec = parse_spec({"name": "ol", "seed": 3, "classes": {"alert": 1}, "identities": {"count": 3, "images_per_identity": 1}})
    plans = make_clip_plan(spec, cfg)
    return cfg, plans, ClipGenerator(None, cfg, frame_generator=IndexFrames()).generate(plans)


def _frames_of(ol, typ):
    out = set()
    for a in ol.get("actions", {}).values():
        if a["type"] == typ:
            for fi in a["frame_intervals"]:
                out.update(range(fi["frame_start"], fi["frame_end"] + 1))
    return out


def test_clip_export_is_schema_valid_and_round_trips(clips):
    pytest.importorskip("vcd.schema")
    _, _, cs = clips
    doc = to_openlabel([c.to_json() for c in cs], "t")
    used = validate_openlabel(doc)
    assert "schema" in used
    ol = doc["openlabel"]
    n = sum(len(c.frames) for c in cs)
    assert len(ol["frames"]) == n and ol["frame_intervals"] == [{"frame_start": 0, "frame_end": n - 1}]
    # per-frame eye states come back from the action intervals, clip by clip
    off = 0
    for c in cs:
        pf = c.temporal["per_frame"]
        for i, s in enumerate(pf["eye_state_left"]):
            assert off + i in _frames_of(ol, f"eye_state_left/{s}")
        zones = [f.params["gaze_zone"] for f in c.frames]
        for i, z in enumerate(zones):
            assert off + i in _frames_of(ol, f"gaze_zone/{z}")
        off += len(c.frames)
    # the scripted microsleep and long distraction are events with the label intervals
    evs = [e for e in ol["events"].values()]
    ms = [e for e in evs if e["type"] == "microsleep"]
    assert len(ms) == len(cs)
    c0 = cs[0].temporal["events"]
    e0 = next(e for e in c0 if e["type"] == "microsleep")
    assert ms[0]["frame_intervals"] == [{"frame_start": e0["start"], "frame_end": e0["end"] - 1}]
    assert any(e["type"] == "long_distraction" for e in evs)
    assert _frames_of(ol, "yawning/Yawning with hand")
    # one driver object per identity; one clip context per clip
    assert sorted(o["name"] for o in ol["objects"].values()) == sorted({c.identity for c in cs})
    assert sum(1 for c in ol["contexts"].values() if c["type"].startswith("clip/")) == len(cs)


def test_export_from_dataset_dir_single_and_per_clip(clips, tmp_path):
    cfg, plans, cs = clips
    for name, batch in clip_shard_jobs(plans, 8):
        keys = {p["key"] for p in batch}
        write_clip_shard(tmp_path / "ds", name, [c for c in cs if c.key in keys])
    r = export_openlabel(tmp_path / "ds", tmp_path / "out.json")
    assert r["clips"] == len(cs) and r["frames"] == sum(len(c.frames) for c in cs)
    json.loads((tmp_path / "out.json").read_text())
    r2 = export_openlabel(tmp_path / "ds", tmp_path / "per", per_clip=True)
    assert sorted(p.split("/")[-1] for p in r2["files"]) == sorted(f"{c.key}.json" for c in cs)
    with pytest.raises(FileNotFoundError, match="no shards"):
        export_openlabel(tmp_path / "per", tmp_path / "x.json")


def test_single_image_records_export(clips):
    _, _, cs = clips
    docs = [f.to_json() for f in cs[0].frames[:5]]
    doc = to_openlabel(docs, "imgs", include_landmarks=False)
    assert check_openlabel_subset(doc) == []
    assert len(doc["openlabel"]["frames"]) == 5


def test_validation_catches_broken_documents(clips):
    _, _, cs = clips
    doc = to_openlabel([cs[0].to_json()], "t")
    bad = json.loads(json.dumps(doc))
    bad["openlabel"]["actions"]["0"]["frame_intervals"][0]["frame_start"] = "zero"
    with pytest.raises(ValueError, match="validation failed"):
        validate_openlabel(bad)
    assert any("frame_start" in e for e in check_openlabel_subset(bad))
    bad2 = json.loads(json.dumps(doc))
    bad2["openlabel"]["objects"]["driver"] = bad2["openlabel"]["objects"].pop("0")
    assert any("uid" in e for e in check_openlabel_subset(bad2))
    with pytest.raises(ValueError):
        validate_openlabel(bad2)
