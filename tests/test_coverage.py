"""Euro NCAP coverage matrix on hand-made records with known counts, and on clips."""

import numpy as np
import pytest

from dmsfactory.clips import ClipGenerator, ClipsConfig, make_clip_plan
from dmsfactory.datasets.coverage import AXES, coverage_gaps, coverage_markdown, coverage_matrix
from dmsfactory.sample import FaceSample
from dmsfactory.spec import parse_spec


def rec(key, cls, age, tone, lux, acc, render=None, verdicts=()):
    return {"key": key, "params": {"class": cls, "identity_params": {"age": age, "skin_tone": tone},
                                   "illuminance_lux": lux, "accessory": acc, "render": render or {}},
            "labels": {"class": cls}, "verdicts": list(verdicts)}


def test_counts_empty_cells_and_requirement():
    rs = [
        rec("a", "alert", 20, 1, 5.0, "none"),
        rec("b", "alert", 30, 1, 50_000, "sunglasses", {"sunglasses_ir_transparent": False}),
        rec("c", "phone", 70, 6, 0.5, "glasses"),
        rec("d", "severe_fatigue", 70, 6, 500, "mask"),
        rec("q", "alert", 20, 1, 5.0, "none", verdicts=[{"verdict": "quarantine"}]),  # not counted
    ]
    m = coverage_matrix(rs, min_per_cell=1)
    assert m["images"] == 4 and m["clips"] == 0
    age = m["axes"]["age"]["counts"]
    assert age["16-25"]["alert"] == 1 and age["26-45"]["alert"] == 1 and age["66-80"]["phone"] == 1
    assert age["46-65"]["alert"] == 0 and ["46-65", "alert"] in m["axes"]["age"]["empty"]
    lux = m["axes"]["illuminance"]["counts"]
    assert lux["1-10lx"]["alert"] == 1 and lux["10k-100klx"]["alert"] == 1 and lux["<1lx"]["phone"] == 1
    assert lux["100-1klx"]["severe_fatigue"] == 1
    ew = m["axes"]["eyewear"]["counts"]
    assert ew["sunglasses_ir_blocking"]["alert"] == 1 and ew["clear_glasses"]["phone"] == 1
    assert m["axes"]["mask"]["counts"]["yes"]["severe_fatigue"] == 1
    # nothing records fringe / make-up / facial hair here: reported, not counted as covered
    assert set(m["not_recorded_axes"]) >= {"fringe", "makeup", "facial_hair"}
    assert not m["ok"] and m["gaps"] == len(coverage_gaps(m))
    total_cells = sum(len(AXES[a]) * len(m["states"]) for a in AXES if m["axes"][a]["recorded"])
    filled = sum(1 for a in AXES if m["axes"][a]["recorded"] for b in AXES[a] for s in m["states"]
                 if m["axes"][a]["counts"][b][s] >= 1)
    assert m["gaps"] == total_cells - filled
    md = coverage_markdown(m)
    assert "**0**" in md and "fringe" in md
    assert "## Euro NCAP coverage" not in md  # the card adds the section heading (it appeared twice)
    assert coverage_matrix(rs[:1], 0)["ok"]


def test_axis_read_from_renderer_fields():
    r = rec("a", "alert", 40, 3, 100, "none", {"eye_aperture_open_mm": {"left": 9.0, "right": 9.4}, "fringe": True,
                                             "eyelash_makeup": False, "facial_hair_mm": 25})
    m = coverage_matrix([r])
    assert m["axes"]["eyelid_aperture"]["counts"]["8-10mm"]["alert"] == 1
    assert m["axes"]["fringe"]["counts"]["yes"]["alert"] == 1
    assert m["axes"]["facial_hair"]["counts"][">=20mm"]["alert"] == 1
    with pytest.raises(ValueError, match="unknown"):
        coverage_matrix([r], axes=["height"])


class Flat:
    def generate(self, plan):
        return [FaceSample(key=e["key"], index=e["index"], params=dict(e), image=np.zeros((8, 8, 3), np.uint8),
                           split=e["split"], identity=e["identity"]) for e in plan]


def test_clip_states_counted_once_per_clip():
    cfg = ClipsConfig(fps=10, duration_s=12, scenarios={"microsleep": 1, "long_distraction": 1, "tunnel_entry": 1})
    spec = parse_spec({"name": "cov", "seed": 5, "classes": {"alert": 1}, "identities": {"count": 6, "images_per_identity": 1}})
    clips = ClipGenerator(None, cfg, frame_generator=Flat()).generate(make_clip_plan(spec, cfg))
    m = coverage_matrix(clips)
    assert m["clips"] == 6 and m["images"] == 0
    st = m["axes"]["skin_tone"]["counts"]
    assert sum(st[b]["alert"] for b in st) == 6  # every clip has alert frames, counted once each
    n_ms = sum(1 for c in clips if "microsleep" in c.temporal["summary"]["states"])
    assert sum(st[b]["microsleep"] for b in st) == n_ms >= 1
    lux = m["axes"]["illuminance"]["counts"]
    tunnel = [c for c in clips if c.params["scenario"] == "tunnel_entry"]
    # a tunnel clip visits a daylight and a tunnel bin
    assert sum(lux[b]["alert"] for b in lux) >= 6 + len(tunnel)
