"""The shard records, declared: how every part of a sample's JSON document reaches typed readers.

The per-sample JSON (:meth:`dmsfactory.sample.FaceSample.to_json`) holds ``labels`` (the declared
label schema, :data:`dmsfactory.labelers.schema.LABEL_SCHEMA`), geometry, the checks' verdicts,
the augmentation record and ``params``. Readers that need types up front (Hugging Face
``datasets`` features: :mod:`dmsfactory.datasets.hf`; the Croissant field list:
:mod:`dmsfactory.datasets.croissant`) are generated from :data:`SAMPLE_SCHEMA`, so a label schema
change changes them, and :func:`check_sample` tells which document keys a reader would not see.

How each part is exposed (the reasons are in docs/readers.md):

- typed structs: ``key``, ``index``, ``split``, ``identity``, ``source_key``, ``labels``,
  ``landmarks`` (478 x/y + visibility), ``bbox``, ``arrays`` (``landmarks_3d``, the privacy
  gate's ``face_descriptor`` and ``phash``);
- ``verdicts`` and ``aug``: lists of typed structs whose per-check ``scores`` / per-transform
  ``params`` differ by check/transform and are declared ``json``;
- ``params`` (deep, generator-specific: the renderer's identity code, camera matrices, ...) is
  additionally written as its exact JSON text in its own tar member ``<key>.params.txt``
  (:data:`PARAMS_MEMBER`), because a string column is the only way Hugging Face keeps every float
  of a heterogeneous object exactly (its ``Json`` type re-encodes with 10 significant digits).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson  # ~10x faster than json on a sample's document (0.07 vs 0.70 ms)

from dmsfactory.labelers.schema import CLIP_LABELS_SCHEMA, LABEL_SCHEMA, Leaf, ListOf, Schema, check_document


PARAMS_MEMBER = "params.txt"  # tar member suffix: <key>.params.txt = the JSON of params (params_member), exact


def _s(doc: str) -> Leaf:
    return Leaf("string", doc)


def _i(doc: str) -> Leaf:
    return Leaf("int64", doc)


GEOMETRY: Schema = {
    "landmarks": {
        "format": _s("landmark order (mediapipe_refined_478)"),
        "xy": Leaf("float64", "478 landmark x, y in pixels of the image", (-1, 2)),
        "visible": Leaf("bool", "landmark visibility", (-1,)),
    },
    "bbox": Leaf("float64", "face box x0, y0, x1, y1 in pixels", (4,)),
    "arrays": {
        "landmarks_3d": Leaf("float64", "478 landmarks in camera space, metres", (-1, 3)),
        "face_descriptor": Leaf("float64", "128-d dlib face descriptor (privacy gate)", (-1,)),
        "phash": Leaf("float64", "64-bit perceptual hash of the face, 0/1 (privacy gate)", (-1,)),
    },
}

VERDICTS = ListOf({
    "stage": _s("stage that ran the check"),
    "check": _s("check name"),
    "verdict": _s("agree, disagree, undetectable, keep, relabel or quarantine"),
    "reason": _s("why"),
    "scores": Leaf("json", "the check's numbers (differ by check)"),
}, "each check's outcome")

AUG = ListOf({
    "op": _s("transform"),
    "stage": _s("stage (augment)"),
    "view": _i("augmented view index"),
    "params": Leaf("json", "the transform's sampled parameters (differ by transform)"),
}, "applied transforms with their sampled parameters")

# every key of FaceSample.to_json() but params (exposed as the <key>.params.txt member)
SAMPLE_SCHEMA: Schema = {
    "key": _s("sample key (webdataset __key__)"),
    "index": _i("position in the plan"),
    "split": _s("train, val or test (identity-disjoint)"),
    "identity": _s("synthetic identity id"),
    "source_key": _s("for augmented views: the key of the render they come from"),
    "labels": LABEL_SCHEMA,
    **GEOMETRY,
    "verdicts": VERDICTS,
    "aug": AUG,
}
EXPOSED_ELSEWHERE = {"params": PARAMS_MEMBER}

# a clip frame is a FaceSample document inside the clip document (no params in readers' views:
# the clip shard's json holds them exactly; see docs/readers.md)
CLIP_SCHEMA: Schema = {
    "key": _s("clip key"),
    "index": _i("clip index in the plan"),
    "kind": _s("clip"),
    "schema_version": _s("clip schema version"),
    "split": _s("train, val or test"),
    "identity": _s("synthetic identity id"),
    "labels": CLIP_LABELS_SCHEMA,
    "verdicts": VERDICTS,
    "frames": ListOf(SAMPLE_SCHEMA, "each frame's FaceSample document"),
}
CLIP_EXPOSED_ELSEWHERE = {"params": "not in typed views: read the clip json (open_clip_shards)",
                          "frames[].params": "not in typed views: read the clip json (open_clip_shards)"}


def check_sample(doc: dict[str, Any]) -> list[str]:
    """Keys and values of a sample document that typed readers would not see or could not type."""
    rest = {k: v for k, v in doc.items() if k not in EXPOSED_ELSEWHERE}
    return check_document(rest, SAMPLE_SCHEMA, "", "dmsfactory.datasets.record_schema.SAMPLE_SCHEMA")


def check_clip(doc: dict[str, Any]) -> list[str]:
    rest = {k: v for k, v in doc.items() if k != "params"}
    rest["frames"] = [{k: v for k, v in f.items() if k != "params"} for f in doc.get("frames") or []]
    return check_document(rest, CLIP_SCHEMA, "", "dmsfactory.datasets.record_schema.CLIP_SCHEMA")


def plain_json(x: Any) -> bool:
    """Whether orjson writes ``x`` as ``json`` would read it back: only string keys, finite floats, ints
    within 64 bits, strings, bools, None, lists, tuples and dicts. (orjson writes NaN and infinity as
    ``null`` where ``json`` writes ``NaN``, which the readers parse back to NaN.)"""
    stack = [x]
    while stack:
        v = stack.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                return False
        elif isinstance(v, dict):
            for k, w in v.items():
                if not isinstance(k, str):
                    return False
                if isinstance(w, (dict, list, tuple, float, int)):
                    stack.append(w)
        elif isinstance(v, (list, tuple)):
            stack.extend(w for w in v if isinstance(w, (dict, list, tuple, float, int)))
        elif isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64:
            return False
    return True


def dumps_sorted(x: Any, compact: bool = False, plain: bool | None = None) -> bytes:
    """``json.dumps(x, sort_keys=True)`` (``compact``: with ``separators=(",", ":")``) as data: the same
    values when read back, though not the same bytes (orjson writes no spaces and some floats
    differently, e.g. ``0.00001`` for ``1e-05``). orjson when :func:`plain_json` holds, else ``json``;
    ``plain``: the caller's answer to :func:`plain_json` (None: check here)."""
    if plain if plain is not None else plain_json(x):
        try:
            return orjson.dumps(x, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # a type orjson does not write (json may, or raises as before)
            pass
    return json.dumps(x, sort_keys=True, separators=(",", ":") if compact else None).encode()


def params_member(params: dict[str, Any], plain: bool | None = None) -> bytes:
    """The exact JSON text of ``params`` written as ``<key>.params.txt`` (the exact values: any
    reader's ``json.loads`` gives back these floats). ``plain``: as for :func:`dumps_sorted`."""
    return dumps_sorted(params, compact=True, plain=plain)
