"""Euro NCAP coverage report: robustness axes x driver states, counts per cell, empty cells flagged.

Works on single-image sample documents (``FaceSample.to_json()``: ``params`` per docs/CONTRACT.md
and ``labels``) and on clip documents (``ClipSample.to_json()``, ``kind: "clip"``). The unit is the
sample: an image counts once in the cell of its axis value and class; a clip counts once in every
(axis value, state) cell that occurs in at least one of its frames (a tunnel clip visits two
illuminance bins; a microsleep clip is also ``alert`` before the closure).

Axes (Euro NCAP DSM robustness requirements, DESIGN.md) and where each value is read:

=================  ===========================================================================
age                identity_params.age -> 16-25, 26-45, 46-65, 66-80
skin_tone          identity_params.skin_tone (Fitzpatrick 1-6)
eyelid_aperture    full-open aperture in mm -> 6-8, 8-10, 10-12, 12-14: params.render
                   ``eye_aperture_open_mm`` if the renderer records it, else labels.eyes.*.aperture_mm
                   / openness on frames with openness >= 0.5
illuminance        illuminance_lux -> <1, 1-10, 10-100, 100-1k, 1k-10k, 10k-100k (log decades)
eyewear            accessory + IR transmittance: none, clear_glasses, sunglasses_ir_transparent
                   (> 70 %), sunglasses_ir_blocking (< 15 %), sunglasses_ir_unknown
mask, headwear     accessory == mask / cap
fringe, makeup,    params.render or identity_params: ``fringe`` / ``long_fringe``, ``eyelash_makeup`` /
facial_hair        ``makeup``, ``facial_hair_mm`` (-> none, <20mm, >=20mm) / ``beard``
=================  ===========================================================================

An axis whose value no record carries is reported as "not recorded by the generator" (all its
samples in the bin ``not_recorded``) instead of as a covered axis. States: the image classes for
single images; for clips the Euro NCAP states of :mod:`dmsfactory.labelers.temporal` plus
``phone_use``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from dmsfactory.sample import is_quarantined

AXES: dict[str, tuple[str, ...]] = {
    "age": ("16-25", "26-45", "46-65", "66-80"),
    "skin_tone": ("1", "2", "3", "4", "5", "6"),
    "eyelid_aperture": ("6-8mm", "8-10mm", "10-12mm", "12-14mm"),
    "illuminance": ("<1lx", "1-10lx", "10-100lx", "100-1klx", "1k-10klx", "10k-100klx"),
    "eyewear": ("none", "clear_glasses", "sunglasses_ir_transparent", "sunglasses_ir_blocking", "sunglasses_ir_unknown"),
    "mask": ("no", "yes"),
    "headwear": ("no", "yes"),
    "fringe": ("no", "yes"),
    "makeup": ("no", "yes"),
    "facial_hair": ("none", "<20mm", ">=20mm"),
}
IMAGE_STATES = ("alert", "mild_fatigue", "moderate_fatigue", "severe_fatigue", "distracted", "phone")
CLIP_STATES = ("alert", "drowsy", "microsleep", "sleep", "long_distraction", "visual_time_sharing", "unresponsive",
               "phone_use")
NOT_RECORDED = "not_recorded"


def _bin_age(a: Any) -> str | None:
    if a is None:
        return None
    a = float(a)
    return "16-25" if a <= 25 else "26-45" if a <= 45 else "46-65" if a <= 65 else "66-80"


def _bin_aperture(mm: float | None) -> str | None:
    if mm is None:
        return None
    return "6-8mm" if mm < 8 else "8-10mm" if mm < 10 else "10-12mm" if mm < 12 else "12-14mm"


def _bin_lux(lux: Any) -> str | None:
    if lux is None:
        return None
    lux = float(lux)
    if lux < 1:
        return "<1lx"
    i = min(int(math.floor(math.log10(lux))), 4)
    return AXES["illuminance"][i + 1]


def _first(d: dict, *keys: str) -> Any:
    for k in keys:
        if isinstance(d, dict) and d.get(k) is not None:
            return d[k]
    return None


def axis_values(frame_doc: dict[str, Any]) -> dict[str, str | None]:
    """Axis bin of each axis for one image / frame document (None: not recorded)."""
    p = frame_doc.get("params", {}) or {}
    lab = frame_doc.get("labels", {}) or {}
    ip = p.get("identity_params", {}) or {}
    r = p.get("render", {}) or {}
    out: dict[str, str | None] = {}
    out["age"] = _bin_age(ip.get("age"))
    out["skin_tone"] = str(int(ip["skin_tone"])) if ip.get("skin_tone") is not None else None
    ap = _first(r, "eye_aperture_open_mm", "eyelid_aperture_mm")
    if isinstance(ap, dict):
        ap = sum(float(v) for v in ap.values()) / max(len(ap), 1)
    if ap is None:
        eyes = lab.get("eyes") or {}
        vals = [e["aperture_mm"] / e["openness"] for e in eyes.values()
                if isinstance(e, dict) and e.get("aperture_mm") and (e.get("openness") or 0) >= 0.5]
        ap = sum(vals) / len(vals) if vals else None
    out["eyelid_aperture"] = _bin_aperture(float(ap)) if ap is not None else None
    out["illuminance"] = _bin_lux(p.get("illuminance_lux"))
    acc = p.get("accessory")
    if acc is None:
        out["eyewear"] = out["mask"] = out["headwear"] = None
    else:
        if acc == "glasses":
            ew = "clear_glasses"
        elif acc == "sunglasses":
            tr = _first(r, "ir_transmittance", "sunglasses_ir_transmittance")
            if tr is None and p.get("lighting") == "night_ir":  # the renderer's lens value is the NIR one there
                tr = r.get("lens_transmittance")
            transparent = r.get("sunglasses_ir_transparent")
            if tr is not None:
                ew = "sunglasses_ir_transparent" if tr > 0.7 else "sunglasses_ir_blocking" if tr < 0.15 else "sunglasses_ir_unknown"
            elif transparent is not None:
                ew = "sunglasses_ir_transparent" if transparent else "sunglasses_ir_blocking"
            else:
                ew = "sunglasses_ir_unknown"
        else:
            ew = "none"
        out["eyewear"] = ew
        out["mask"] = "yes" if acc == "mask" else "no"
        out["headwear"] = "yes" if acc == "cap" else "no"
    fr = _first(r, "fringe", "long_fringe")
    if fr is None:
        fr = _first(ip, "fringe", "long_fringe")
    out["fringe"] = None if fr is None else ("yes" if fr else "no")
    mk = _first(r, "eyelash_makeup", "makeup")
    if mk is None:
        mk = _first(ip, "eyelash_makeup", "makeup")
    out["makeup"] = None if mk is None else ("yes" if mk else "no")
    fh = _first(r, "facial_hair_mm")
    if fh is None:
        fh = _first(ip, "facial_hair_mm")
    if fh is not None:
        out["facial_hair"] = "none" if float(fh) <= 0 else "<20mm" if float(fh) < 20 else ">=20mm"
    else:
        beard = _first(r, "beard", "facial_hair")
        out["facial_hair"] = None if beard is None else ("<20mm" if beard else "none")
    return out


def _pairs(doc: dict[str, Any]) -> tuple[set[tuple[str, str, str]], bool]:
    """(axis, bin, state) triples of one record, and whether it is a clip."""
    triples: set[tuple[str, str, str]] = set()
    if doc.get("kind") == "clip":
        pf = doc.get("labels", {}).get("temporal", {}).get("per_frame", {})
        states = pf.get("state") or []
        for i, fd in enumerate(doc["frames"]):
            av = axis_values(fd)
            st = {states[i]} if i < len(states) else set()
            if (fd.get("params") or {}).get("phone") is not None:
                st.add("phone_use")
            for a, b in av.items():
                for s in st:
                    triples.add((a, b or NOT_RECORDED, s))
        return triples, True
    cls = (doc.get("labels") or {}).get("class") or (doc.get("params") or {}).get("class")
    if cls is None:
        raise ValueError(f"record {doc.get('key')!r}: no class in labels or params")
    for a, b in axis_values(doc).items():
        triples.add((a, b or NOT_RECORDED, cls))
    return triples, False


class CoverageCounter:
    """:func:`coverage_matrix` accumulated one record at a time (``add``): memory is the cell counts."""

    def __init__(self, min_per_cell: int = 0, axes: Iterable[str] | None = None):
        if min_per_cell < 0:
            raise ValueError(f"min_per_cell must be >= 0 (got {min_per_cell})")
        self.want = list(axes) if axes is not None else list(AXES)
        bad = [a for a in self.want if a not in AXES]
        if bad:
            raise ValueError(f"coverage axes: unknown {bad}; allowed: {', '.join(AXES)}")
        self.min_per_cell = min_per_cell
        self.counts: dict[str, dict[str, dict[str, int]]] = {a: {} for a in self.want}
        self.n_img = self.n_clip = 0

    def add(self, r: Any) -> None:
        doc = r.to_json() if hasattr(r, "to_json") else r
        if is_quarantined(doc):
            return
        triples, is_clip = _pairs(doc)
        self.n_clip += is_clip
        self.n_img += not is_clip
        for a, b, s in triples:
            if a in self.counts:
                self.counts[a].setdefault(b, {}).setdefault(s, 0)
                self.counts[a][b][s] += 1

    def matrix(self) -> dict[str, Any]:
        want, counts, min_per_cell = self.want, self.counts, self.min_per_cell
        states = list(IMAGE_STATES) if self.n_img else []
        states += [s for s in (CLIP_STATES if self.n_clip else ()) if s not in states]
        out_axes: dict[str, Any] = {}
        gaps = 0
        for a in want:
            recorded = any(b != NOT_RECORDED for b in counts[a])
            bins = list(AXES[a]) if recorded else [NOT_RECORDED]
            if recorded and NOT_RECORDED in counts[a]:
                bins.append(NOT_RECORDED)
            table = {b: {s: counts[a].get(b, {}).get(s, 0) for s in states} for b in bins}
            empty = [[b, s] for b in bins if b != NOT_RECORDED for s in states if table[b][s] == 0] if recorded else []
            below = [[b, s, table[b][s]] for b in bins if b != NOT_RECORDED for s in states
                     if recorded and table[b][s] < min_per_cell]
            gaps += len(below) if min_per_cell else 0
            out_axes[a] = {"recorded": recorded, "bins": bins, "counts": table, "empty": empty, "below_min": below}
        return {
            "unit": "samples (an image, or a clip counted once per cell its frames visit)",
            "images": self.n_img,
            "clips": self.n_clip,
            "states": states,
            "min_per_cell": min_per_cell,
            "axes": out_axes,
            "not_recorded_axes": [a for a in want if not out_axes[a]["recorded"]],
            "gaps": gaps,
            "ok": gaps == 0,
        }


def coverage_matrix(records: Iterable[Any], min_per_cell: int = 0, axes: Iterable[str] | None = None) -> dict[str, Any]:
    """Counts per (axis bin x driver state) cell; empty and under-``min_per_cell`` cells listed per axis."""
    c = CoverageCounter(min_per_cell, axes)
    for r in records:
        c.add(r)
    return c.matrix()


def coverage_gaps(matrix: dict[str, Any]) -> list[str]:
    """One line per cell under the requirement (recorded axes only)."""
    k = matrix["min_per_cell"]
    return [f"{a}={b} x {s}: {n} < {k}" for a, ax in matrix["axes"].items() for b, s, n in ax["below_min"]]


def coverage_markdown(matrix: dict[str, Any]) -> str:
    """The dataset-card section's body (the card adds the "## Euro NCAP coverage" heading): one table per
    axis; empty cells bold **0**, cells under the minimum marked."""
    k = matrix["min_per_cell"]
    states = matrix["states"]
    lines = [f"{matrix['images']} images, {matrix['clips']} clips. Unit: {matrix['unit']}. "
             + (f"Requirement: >= {k} per cell; {matrix['gaps']} cell(s) short." if k else "No per-cell requirement set."),
             ""]
    if matrix["not_recorded_axes"]:
        lines += [f"Not recorded by the generator (cannot be covered yet): {', '.join(matrix['not_recorded_axes'])}.", ""]
    for a, ax in matrix["axes"].items():
        if not ax["recorded"]:
            continue
        n_empty = len(ax["empty"])
        lines += [f"### {a}" + (f" ({n_empty} empty cell{'s' if n_empty != 1 else ''})" if n_empty else ""), "",
                  "| " + a + " | " + " | ".join(states) + " |", "|" + "---|" * (len(states) + 1)]
        for b in ax["bins"]:
            cells = []
            for s in states:
                n = ax["counts"][b][s]
                cells.append("**0**" if n == 0 and b != NOT_RECORDED else f"{n} (<{k})" if k and n < k and b != NOT_RECORDED else str(n))
            lines.append(f"| {b} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
