"""``DIR/croissant.json``: the dataset described in ML Commons Croissant 1.0 (JSON-LD).

Written from the manifest (no shard is read), validated and read by ``mlcroissant`` in the tests::

    import mlcroissant as mlc
    ds = mlc.Dataset(jsonld="out/demo/croissant.json")
    for rec in ds.records("train"):   # {"train/key": b"...", "train/json": b"{...}", "train/image": PIL image}
        doc = json.loads(rec["train/json"])

What it holds:

- ``distribution``: one ``FileObject`` per tar (relative ``contentUrl``, ``sha256``, size), and
  per split ``FileSet``s over the tar members (``*.json`` documents, ``*.jpg``/``*.png`` images;
  clip frames ``*.f*.jpg``).
- ``recordSet``: per split (``train``, ``val``, ``test``; ``quarantine-<split>``;
  ``clips-<split>`` + ``clips-<split>-frames``) a record per sample: ``key`` (member name),
  ``json`` (the whole per-sample document, bytes) and ``image``, joined on the key; and
  ``label_fields``: one record per declared field of the document (path, type, shape,
  description, which stage adds it), generated from the record schema, so catalogues list the
  labels and a schema change updates them.
- licence (spec ``output.license``), provenance (spec hash, seed, backend, label schema version,
  package versions, generator) and responsible-AI notes (``rai:``).

Why the labels are not separate typed fields with ``jsonPath`` sources: ``mlcroissant`` 1.1.1
evaluates ``jsonPath`` only on JSON files it reads itself (local files or a ``FileObject``), not on
members of an archive, where it offers file properties only (measured: the record set then fails
with "Column $.key does not exist"); the per-sample document is therefore a text field and its
fields are described by ``label_fields``. ``mlcroissant`` extracts each tar under
``$CROISSANT_CACHE/extract/<sha256 of the contentUrl>`` and reuses that directory: with relative
URLs two datasets (or a regenerated one) share the extraction; use a fresh ``CROISSANT_CACHE``.
No date is written (the file is byte-identical for the same spec), so mlcroissant warns that
``datePublished`` is recommended.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dmsfactory.datasets.record_schema import CLIP_SCHEMA, PARAMS_MEMBER, SAMPLE_SCHEMA
from dmsfactory.datasets.shards import write_json_atomic
from dmsfactory.labelers.schema import Leaf, ListOf, Schema

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
SPLITS = ("train", "val", "test")
MIME = {"jpg": "image/jpeg", "png": "image/png"}
DTYPE = {"string": "sc:Text", "int64": "sc:Integer", "float64": "sc:Float", "bool": "sc:Boolean", "json": "sc:Text"}

# the Croissant 1.0 JSON-LD context (as mlcroissant 1.1.1 writes it for 1.0) + the RAI vocabulary
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}


def _ref(i: str) -> dict[str, str]:
    return {"@id": i}


def _file_source(fileset: str, prop: str, regex: str | None = None) -> dict[str, Any]:
    src: dict[str, Any] = {"fileSet": _ref(fileset), "extract": {"fileProperty": prop}}
    if regex:
        src["transform"] = {"regex": regex}
    return src


def _field(rs: str, name: str, dtype: str, source: dict[str, Any], desc: str, **extra: Any) -> dict[str, Any]:
    return {"@type": "cr:Field", "@id": f"{rs}/{name}", "name": name, "description": desc,
            "dataType": dtype, "source": source, **extra}


def _file_objects(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"@type": "cr:FileObject", "@id": e["path"], "name": e["path"], "contentUrl": e["path"],
             "contentSize": f"{int(e['bytes'])} B", "encodingFormat": "application/x-tar", "sha256": e["sha256"]}
            for e in entries]


def _file_set(fid: str, tars: list[str], pattern: str, mime: str, desc: str) -> dict[str, Any]:
    return {"@type": "cr:FileSet", "@id": fid, "name": fid, "description": desc,
            "containedIn": [_ref(t) for t in tars], "encodingFormat": mime, "includes": pattern}


def _sample_sets(rs: str, tars: list[str], ext: str, what: str) -> tuple[list[dict], list[dict]]:
    """FileSets + record sets of one group of sample shards (a split, or its quarantine)."""
    js, im = f"{rs}-json-files", f"{rs}-image-files"
    files = [
        _file_set(js, tars, "*.json", "application/json", f"per-sample JSON documents ({what})"),
        _file_set(im, tars, f"*.{ext}", MIME[ext], f"images ({what})"),
    ]
    images = {"@type": "cr:RecordSet", "@id": f"{rs}-images", "name": f"{rs}-images",
              "description": f"the images of {what}, by key", "key": _ref(f"{rs}-images/key"), "field": [
                  _field(f"{rs}-images", "key", "sc:Text", _file_source(im, "filename", rf"^([^.]+)(?:\.{ext})?$"),
                         "sample key (tar member name without extension)"),
                  _field(f"{rs}-images", "image", "sc:ImageObject", _file_source(im, "content"), "the image")]}
    samples = {"@type": "cr:RecordSet", "@id": rs, "name": rs, "description": f"one record per sample: {what}",
               "field": [
                   _field(rs, "key", "sc:Text", _file_source(js, "filename", r"^([^.]+)(?:\.json)?$"),
                          "sample key (webdataset __key__)", references={"field": _ref(f"{rs}-images/key")}),
                   _field(rs, "json", "sc:Text", _file_source(js, "content"),
                          "the per-sample JSON document: labels, params, landmarks, bbox, arrays, aug, verdicts "
                          "(fields: record set label_fields; docs/labels.md)"),
                   _field(rs, "image", "sc:ImageObject", {"field": _ref(f"{rs}-images/image")}, "the image")]}
    return files, [images, samples]


def _clip_sets(rs: str, tars: list[str], ext: str, what: str) -> tuple[list[dict], list[dict]]:
    js, fr = f"{rs}-json-files", f"{rs}-frame-files"
    files = [
        _file_set(js, tars, "*.json", "application/json", f"per-clip JSON documents ({what})"),
        _file_set(fr, tars, f"*.f*.{ext}", MIME[ext], f"clip frames ({what})"),
    ]
    clips = {"@type": "cr:RecordSet", "@id": rs, "name": rs, "description": f"one record per clip: {what}", "field": [
        _field(rs, "key", "sc:Text", _file_source(js, "filename", r"^([^.]+)(?:\.json)?$"), "clip key"),
        _field(rs, "json", "sc:Text", _file_source(js, "content"),
               "the clip document: params, labels.temporal, verdicts, frames (docs/clips.md)")]}
    frames = {"@type": "cr:RecordSet", "@id": f"{rs}-frames", "name": f"{rs}-frames",
              "description": f"one record per frame image: {what}", "field": [
                  _field(f"{rs}-frames", "clip_key", "sc:Text", _file_source(fr, "filename", r"^([^.]+)\."), "clip key"),
                  _field(f"{rs}-frames", "frame", "sc:Integer", _file_source(fr, "filename", r"^[^.]+\.f(\d+)\."),
                         "frame index"),
                  _field(f"{rs}-frames", "image", "sc:ImageObject", _file_source(fr, "content"), "the frame")]}
    return files, [clips, frames]


def _rows(schema: Schema, prefix: str, out: list[dict[str, Any]]) -> None:
    for k, v in schema.items():
        path = f"{prefix}{k}"
        if isinstance(v, Leaf):
            out.append({"label_fields/path": path, "label_fields/dtype": v.dtype,
                        "label_fields/shape": ",".join(str(n) for n in v.shape),
                        "label_fields/description": v.doc, "label_fields/added_by": v.added_by,
                        "label_fields/values": ",".join(str(x) for x in v.values)})
        elif isinstance(v, ListOf):
            _rows(v.item, path + "[].", out)
        else:
            _rows(v, path + ".", out)


def field_rows(schema: Schema = SAMPLE_SCHEMA) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    _rows(schema, "", rows)
    return rows


def _label_fields(clips: bool) -> dict[str, Any]:
    rows = field_rows(SAMPLE_SCHEMA)
    rows.append({"label_fields/path": "params", "label_fields/dtype": "json", "label_fields/shape": "",
                 "label_fields/description": "every generation parameter (also the exact JSON text in the "
                 f"<key>.{PARAMS_MEMBER} member)", "label_fields/added_by": "generator", "label_fields/values": ""})
    if clips:
        crow: list[dict[str, Any]] = []
        _rows(CLIP_SCHEMA, "clip:", crow)
        rows += [r for r in crow if not r["label_fields/path"].startswith("clip:frames[].")]
    rs = "label_fields"
    cols = (("path", "dotted path in the per-sample JSON (clip: prefix: the clip document; [] = list item)"),
            ("dtype", "string, int64, float64, bool or json (an object whose keys are data)"),
            ("shape", "list dimensions (-1 = any length); empty for a scalar"),
            ("description", "what the field means"),
            ("added_by", "stage that writes it: label, augment, verify, clips, generator"),
            ("values", "allowed values of a categorical field"))
    return {"@type": "cr:RecordSet", "@id": rs, "name": rs,
            "description": "the declared fields of the per-sample JSON (dmsfactory.datasets.record_schema)",
            "field": [{"@type": "cr:Field", "@id": f"{rs}/{c}", "name": c, "description": d, "dataType": "sc:Text"}
                      for c, d in cols],
            "data": rows}


def croissant(manifest: dict[str, Any]) -> dict[str, Any]:
    """The Croissant JSON-LD of a dataset, from its manifest."""
    spec = manifest.get("spec") or {}
    ext = (spec.get("image") or {}).get("format", "jpg")
    clip_ext = (spec.get("clips") or {}).get("format", "jpg")
    lic = ((spec.get("output") or {}).get("license"))
    dist: list[dict[str, Any]] = []
    sets: list[dict[str, Any]] = []
    groups = [(s, [e for e in manifest.get("shards") or [] if e["split"] == s], "samples", ext, f"{s} split")
              for s in SPLITS]
    groups += [(f"quarantine-{s}", [e for e in manifest.get("quarantine") or [] if e["split"] == s], "samples", ext,
                f"quarantined samples of the {s} split, with their reasons in json.verdicts") for s in SPLITS]
    clips = manifest.get("clips") or {}
    groups += [(f"clips-{s}", [e for e in clips.get("shards") or [] if e["split"] == s], "clips", clip_ext,
                f"clips of the {s} split") for s in SPLITS]
    groups += [(f"clips-quarantine-{s}", [e for e in clips.get("quarantine") or [] if e["split"] == s], "clips",
                clip_ext, f"quarantined clips of the {s} split") for s in SPLITS]
    for rs, entries, kind, e, what in groups:
        entries = [x for x in entries if x.get("count")]
        if not entries:
            continue
        dist += _file_objects(entries)
        f, r = (_sample_sets if kind == "samples" else _clip_sets)(rs, [x["path"] for x in entries], e, what)
        dist += f
        sets += r
    sets.append(_label_fields(bool(clips.get("shards"))))
    c = manifest.get("counts", {})
    pk = {k: v for k, v in (manifest.get("packages") or {}).items() if v}
    desc = (
        f"Synthetic driver-monitoring face data made by dmsfactory ({manifest.get('backend')} backend): no real person "
        f"is depicted; labels are exact by construction from the generation parameters (label schema "
        f"{manifest.get('schema_version')}). Samples: train {c.get('train', 0)}, val {c.get('val', 0)}, test "
        f"{c.get('test', 0)}, quarantined {c.get('quarantined', 0)}; splits are identity-disjoint. WebDataset tar "
        f"shards: <key>.{ext} + <key>.json (+ <key>.{PARAMS_MEMBER}); manifest.json lists them with sha256."
    )
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "name": manifest.get("name", "dataset"),
        "description": desc,
        "conformsTo": CONFORMS_TO,
        "license": f"https://spdx.org/licenses/{lic}.html" if lic else "other",
        "version": f"0.0.0+{str(manifest.get('spec_hash', ''))[:12]}",
        "citeAs": f"dmsfactory dataset '{manifest.get('name')}', spec hash {manifest.get('spec_hash')}, "
                  f"seed {manifest.get('seed')}",
        "creator": {"@type": "sc:Organization", "name": "dmsfactory",
                    "description": f"generated by dmsfactory {pk.get('dmsfactory') or ''}".rstrip()},
        "keywords": ["driver monitoring", "synthetic data", "face", "drowsiness", "distraction", "webdataset"],
        "isAccessibleForFree": True,
        "rai:dataCollection": (
            f"Generated, not collected: spec '{manifest.get('name')}' (sha256 {manifest.get('spec_hash')}), seed "
            f"{manifest.get('seed')}, backend {manifest.get('backend')}"
            + (f", the first {manifest['limit']} planned samples" if manifest.get("limit") else "")
            + ". Every generation parameter of a sample is in its json.params; the full spec and the package "
            "versions are in manifest.json. Packages: " + ", ".join(f"{k} {v}" for k, v in sorted(pk.items())) + "."
        ),
        "rai:dataCollectionType": ["Synthetic"],
        "rai:personalSensitiveInformation": (
            "Synthetic faces with recorded demographic attributes (sex, age, Fitzpatrick skin type) used for "
            "balancing; no real person. The privacy gate's verdicts (identity leakage against real galleries) "
            "are in each sample's json.verdicts when it ran."
        ),
        "rai:dataLimitations": "Synthetic renders: see the dataset card (README.md) for coverage gaps and the "
                               "verification results.",
        "distribution": dist,
        "recordSet": sets,
    }


def write_croissant(out_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """Write ``DIR/croissant.json`` (deterministic: the same manifest gives the same bytes)."""
    path = Path(out_dir) / "croissant.json"
    write_json_atomic(path, croissant(manifest), indent=1)
    return path
