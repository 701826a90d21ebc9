"""Hugging Face ``datasets`` on our shards: declared features and the dataset card's YAML header.

``datasets``' webdataset builder infers column types from the first 5 samples of the first shard
unless it is given features; a label that is ``null`` in those samples and a number later
(``gaze.in_head.distance_m``) then fails the whole load ("Couldn't cast array of type double to
null"). So the features are declared, generated from the record schema
(:mod:`dmsfactory.datasets.record_schema`, itself built on the label schema), and written into the
card's YAML header (``configs`` + ``dataset_info``), which ``load_dataset(DIR)`` reads:

    load_dataset("out/demo")                          # default config: train/val/test shards
    load_dataset("out/demo", "quarantine")            # rejected samples, with their verdicts
    load_dataset("out/demo", "clips")                 # clip shards (when the spec has clips:)
    load_dataset("webdataset", data_files={"train": "out/demo/train-*.tar"}, features=features())

Columns of the sample configs: ``jpg`` (or ``png``; an ``Image``), ``json`` (a struct: typed
labels, landmarks, bbox, arrays, verdicts, aug; :data:`~dmsfactory.datasets.record_schema.SAMPLE_SCHEMA`),
``params.txt`` (the exact JSON text of the generation parameters: ``json.loads(row["params.txt"])``),
``__key__`` and ``__url__``. Nothing here imports ``datasets`` except :func:`features`, so writing a
dataset never needs it.
"""

from __future__ import annotations

from typing import Any

from dmsfactory.datasets.record_schema import CLIP_SCHEMA, PARAMS_MEMBER, SAMPLE_SCHEMA
from dmsfactory.labelers.schema import Leaf, ListOf, Schema

SPLITS = ("train", "val", "test")


# ---------------- features, in datasets' dict form (Features.from_dict) ----------------

def _node(node: Leaf | ListOf | Schema) -> dict[str, Any]:
    if isinstance(node, Leaf):
        out: dict[str, Any] = {"_type": "Json"} if node.dtype == "json" else {"dtype": node.dtype, "_type": "Value"}
        for n in reversed(node.shape):
            out = {"feature": out, **({"length": n} if n != -1 else {}), "_type": "List"}
        return out
    if isinstance(node, ListOf):
        return {"feature": _node(node.item), "_type": "List"}
    return {k: _node(v) for k, v in node.items()}


_IMAGE = {"_type": "Image"}


def feature_dict(kind: str = "samples", image_ext: str = "jpg", n_frames: int = 0) -> dict[str, Any]:
    """The features of a config in ``datasets.Features.to_dict()`` form.

    ``kind``: ``samples`` (images; the default and quarantine configs) or ``clips`` (one row per
    clip: ``f00000.<ext>`` ... ``f<n_frames-1>.<ext>`` images and the clip ``json``)."""
    if kind == "samples":
        cols = {image_ext: dict(_IMAGE), "json": _node(SAMPLE_SCHEMA),
                PARAMS_MEMBER: {"dtype": "string", "_type": "Value"}}
    elif kind == "clips":
        if n_frames < 1:
            raise ValueError(f"clips features need the number of frames per clip (got n_frames={n_frames})")
        cols = {"json": _node(CLIP_SCHEMA)}
        cols.update({f"f{i:05d}.{image_ext}": dict(_IMAGE) for i in range(n_frames)})
    else:
        raise ValueError(f"kind must be 'samples' or 'clips' (got {kind!r})")
    cols["__key__"] = {"dtype": "string", "_type": "Value"}
    cols["__url__"] = {"dtype": "string", "_type": "Value"}
    return cols


def features(kind: str = "samples", image_ext: str = "jpg", n_frames: int = 0, dataset_dir=None):
    """``datasets.Features`` for ``load_dataset("webdataset", ..., features=features())``.

    With ``dataset_dir`` the image format and clip length are read from its manifest."""
    import datasets

    if dataset_dir is not None:
        from dmsfactory.datasets.reader import load_manifest

        m = load_manifest(dataset_dir)
        image_ext = _image_ext(m, kind)
        n_frames = _n_frames(m) if kind == "clips" else 0
    return datasets.Features.from_dict(feature_dict(kind, image_ext, n_frames))


# ---------------- the YAML form (what a dataset card's dataset_info.features holds) ----------------

def _yaml(d: dict[str, Any]) -> dict[str, Any]:
    t = d.get("_type")
    if t == "Value":
        return {"dtype": d["dtype"]}
    if t == "List":
        inner = _yaml(d["feature"])
        out: dict[str, Any] = {"list": inner["dtype"] if list(inner) == ["dtype"] else
                               inner["struct"] if list(inner) == ["struct"] else inner}
        if "length" in d:
            out["length"] = d["length"]
        return out
    if t is not None:  # Json, Image, ...: no parameters
        return {"dtype": t.lower()}
    return {"struct": [{"name": k, **_yaml(v)} for k, v in d.items()]}


def yaml_features(fdict: dict[str, Any]) -> list[dict[str, Any]]:
    """``fdict`` (:func:`feature_dict`) as the YAML list a card's ``dataset_info.features`` holds."""
    return [{"name": k, **_yaml(v)} for k, v in fdict.items()]


# ---------------- the card header ----------------

def _image_ext(manifest: dict[str, Any], kind: str = "samples") -> str:
    spec = manifest.get("spec") or {}
    if kind == "clips":
        return (spec.get("clips") or {}).get("format", "jpg")
    return (spec.get("image") or {}).get("format", "jpg")


def _n_frames(manifest: dict[str, Any]) -> int:
    from dmsfactory.clips.config import ClipsConfig

    clips = (manifest.get("spec") or {}).get("clips")
    return ClipsConfig.model_validate(clips).n_frames if clips else 0


def _data_files(entries: list[dict[str, Any]], prefix: str) -> list[dict[str, str]]:
    present = {e["split"] for e in entries}
    return [{"split": s, "path": f"{prefix}{s}-*.tar"} for s in SPLITS if s in present]


def configs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """(config name, kind, data_files) of every config the dataset has shards for."""
    out = []
    for name, kind, entries, prefix in (
        ("default", "samples", manifest.get("shards") or [], ""),
        ("quarantine", "samples", manifest.get("quarantine") or [], "quarantine/"),
        ("clips", "clips", (manifest.get("clips") or {}).get("shards") or [], "clips/"),
        ("clips_quarantine", "clips", (manifest.get("clips") or {}).get("quarantine") or [], "clips/quarantine/"),
    ):
        files = _data_files(entries, prefix)
        if files:
            out.append({"config_name": name, "kind": kind, "data_files": files})
    return out


def card_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML metadata: configs (split -> shard glob) and features per config."""
    cfgs = configs(manifest)
    infos = []
    for c in cfgs:
        n = _n_frames(manifest) if c["kind"] == "clips" else 0
        infos.append({"config_name": c["config_name"],
                      "features": yaml_features(feature_dict(c["kind"], _image_ext(manifest, c["kind"]), n))})
    meta: dict[str, Any] = {
        "pretty_name": manifest.get("name"),
        "license": license_id(manifest) or "other",
        "tags": ["synthetic", "driver-monitoring", "webdataset", "dmsfactory"],
        "configs": [{"config_name": c["config_name"], **({"default": True} if c["config_name"] == "default" else {}),
                     "data_files": c["data_files"]} for c in cfgs],
        "dataset_info": infos,
    }
    return meta


def license_id(manifest: dict[str, Any]) -> str | None:
    """The dataset's licence (spec ``output.license``), lower-cased as the Hub expects; None if unset."""
    lic = ((manifest.get("spec") or {}).get("output") or {}).get("license")
    return lic.lower() if isinstance(lic, str) and lic else None


def card_header(manifest: dict[str, Any]) -> str:
    """``---\\n<yaml>---\\n``: the front matter ``load_dataset(DIR)`` and the Hub read."""
    import yaml

    return "---\n" + yaml.safe_dump(card_metadata(manifest), sort_keys=False, width=120) + "---\n"
