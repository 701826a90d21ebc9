"""ASAM OpenLABEL 1.0.0 export of a dataset's labels, in the layout of the DMD dataset's annotations.

One OpenLABEL document describes one frame sequence. Clips are laid end to end on the master frame
axis (clip k occupies frames [offset_k, offset_k + n_k)), each with a ``clip`` context naming it;
single-image samples become one frame each. ``per_clip=True`` writes one file per clip (DMD ships
one file per recording) into a directory instead.

Mapping (DMD conventions: an action's ``type`` is ``<level>/<label>`` as in DMD's annotation-tool
configs -- eye_state_left/right, gaze_zone, blinks, yawning -- plus DMD distraction levels
gaze_on_road, talking, hands_using_wheel, driver_actions):

* objects: one ``driver`` per identity (object_data: identity, sex, age, age_group, Fitzpatrick skin
  type, accessory); per frame: ``bbox`` "face" (centre x, centre y, w, h px), num ``head_pose_car``
  yaw/pitch/roll, ``eye_openness_left/right``, ``perclos_p80``, ``vats_accumulator_s``, optional
  ``poly2d`` "landmarks_mediapipe_478" (``include_landmarks``).
* actions, each with the frame intervals where it holds: ``eye_state_left/<open|closing|close|opening>``
  (and right), ``blinks/blinking`` (frames of closure episodes), ``gaze_zone/<zone>``,
  ``gaze_on_road/<looking_road|not_looking_road>``, ``yawning/<Yawning with hand|Yawning without hand>``,
  ``driver_actions/<action>``, ``talking/talking``, ``hands_using_wheel/<both|only_left|only_right|none>``,
  ``driver_state/<state>`` (the Euro NCAP state of :mod:`dmsfactory.labelers.temporal`).
* events (ontology 1, dmsfactory): ``microsleep``, ``sleep``, ``long_distraction``,
  ``visual_time_sharing``, ``unresponsive`` with their interval and event_data duration_s / onset_frame.
* contexts: ``lighting/<mode>`` intervals and one ``clip/<scenario>`` per clip (clip_id, kss, fps).
* frames: ``frame_properties.timestamp`` (seconds within the clip) and ``dmsfactory`` (sample key).

Validation: against the OpenLABEL 1.0.0 JSON schema shipped by Vicomtech's ``vcd`` package
(``vcd.schema.openlabel_schema``; install ``pip install --no-deps vcd==6.0.3``: its declared deps pull
opencv-python next to our headless build) with ``jsonschema``. Without ``vcd`` a documented subset is
checked (:func:`check_openlabel_subset`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = "1.0.0"
DMD_ONTOLOGY = "http://dmd.vicomtech.org/ontology"
DMSF_ONTOLOGY = "https://github.com/dmsfactory/dmsfactory/docs/clips.md"
STREAM = "face_camera"
EVENT_TYPES = ("microsleep", "sleep", "long_distraction", "visual_time_sharing", "unresponsive")
_UID = re.compile(r"^(-?[0-9]+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")
YAWN_DMD = {"yawning_with_hand": "Yawning with hand", "yawning_without_hand": "Yawning without hand"}


def _intervals(frames: list[int]) -> list[dict[str, int]]:
    out: list[dict[str, int]] = []
    for f in sorted(set(frames)):
        if out and f == out[-1]["frame_end"] + 1:
            out[-1]["frame_end"] = f
        else:
            out.append({"frame_start": f, "frame_end": f})
    return out


def _load_records(source: Any) -> list[dict[str, Any]]:
    if isinstance(source, (str, Path)):
        d = Path(source)
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: not a dataset directory")
        recs: list[dict[str, Any]] = []
        from dmsfactory.clips.shards import clip_shard_paths, open_clip_shards

        if clip_shard_paths(d):
            recs += [it["json"] for it in open_clip_shards(d, None, with_frames=False)]
        if any(d.glob("*.tar")) or (d / "manifest.json").is_file():
            from dmsfactory.datasets.reader import iter_records

            recs += [doc for doc, _ in iter_records(d, include_quarantine=False)]
        if not recs:
            raise FileNotFoundError(f"{d}: no shards (neither DIR/*.tar nor DIR/clips/*.tar)")
        return recs
    recs = [r.to_json() if hasattr(r, "to_json") else r for r in source]
    for i, r in enumerate(recs):
        if not isinstance(r, dict) or "key" not in r:
            raise ValueError(f"record {i}: expected a sample or clip JSON document with a 'key'")
    return recs


class _Builder:
    def __init__(self, name: str, include_landmarks: bool):
        self.name = name
        self.lm = include_landmarks
        self.frames: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, dict[str, Any]] = {}
        self.obj_frames: dict[str, list[int]] = {}
        self.action_frames: dict[str, list[int]] = {}
        self.context_frames: dict[str, list[int]] = {}
        self.contexts: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.next_frame = 0

    def _driver(self, frame_doc: dict[str, Any]) -> str:
        p = frame_doc.get("params", {})
        ident = frame_doc.get("identity") or p.get("identity") or "unknown"
        for uid, o in self.objects.items():
            if o["name"] == ident:
                return uid
        uid = str(len(self.objects))
        ip = p.get("identity_params", {})
        text = [{"name": "identity", "val": str(ident)}]
        num = []
        for k in ("sex", "age_group"):
            if ip.get(k) is not None:
                text.append({"name": k, "val": str(ip[k])})
        for k in ("age", "skin_tone"):
            if ip.get(k) is not None:
                num.append({"name": "fitzpatrick_skin_type" if k == "skin_tone" else k, "val": float(ip[k])})
        if p.get("accessory") is not None:
            text.append({"name": "accessory", "val": str(p["accessory"])})
        od: dict[str, Any] = {"text": text}
        if num:
            od["num"] = num
        self.objects[uid] = {"name": str(ident), "type": "driver", "ontology_uid": "0", "object_data": od}
        self.obj_frames[uid] = []
        return uid

    def _act(self, typ: str, f: int) -> None:
        self.action_frames.setdefault(typ, []).append(f)

    def add_frame(self, fd: dict[str, Any], timestamp: float, temporal: dict[str, Any] | None) -> int:
        f = self.next_frame
        self.next_frame += 1
        p = fd.get("params", {})
        lab = fd.get("labels", {})
        uid = self._driver(fd)
        self.obj_frames[uid].append(f)
        od: dict[str, Any] = {}
        bb = fd.get("bbox")
        if bb:
            x0, y0, x1, y1 = (float(v) for v in bb)
            od["bbox"] = [{"name": "face", "val": [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]}]
        num = []
        hp = p.get("head_pose_car")
        if hp:
            num += [{"name": f"head_pose_car_{k}", "val": float(hp[k])} for k in ("yaw", "pitch", "roll")]
        st = p.get("state", {})
        for side in ("left", "right"):
            if f"eye_openness_{side}" in st:
                num.append({"name": f"eye_openness_{side}", "val": float(st[f"eye_openness_{side}"])})
        tl = lab.get("temporal") or {}
        for k in ("perclos_p80", "vats_accumulator_s", "off_road_run_s"):
            if k in tl:
                num.append({"name": k, "val": float(tl[k])})
        if num:
            od["num"] = num
        if self.lm and fd.get("landmarks"):
            xy = fd["landmarks"]["xy"]
            od["poly2d"] = [{"name": "landmarks_mediapipe_478", "mode": "MODE_POLY2D_ABSOLUTE", "closed": False,
                             "val": [float(v) for pt in xy for v in pt]}]
        frame: dict[str, Any] = {"frame_properties": {"timestamp": round(float(timestamp), 5),
                                                      "streams": {STREAM: {}},
                                                      "dmsfactory": {"key": fd.get("key"), "clip_id": p.get("clip_id"),
                                                                     "frame_index": p.get("frame_index")}}}
        if od:
            frame["objects"] = {uid: {"object_data": od}}
        self.frames[str(f)] = frame

        # actions (DMD levels)
        eyes = lab.get("eyes") or {}
        for side in ("left", "right"):
            s = tl.get(f"eye_state_{side}") or (eyes.get(side) or {}).get("state")
            if s is None and f"eye_openness_{side}" in st:
                s = "close" if st[f"eye_openness_{side}"] <= 0.2 else "open"
            if s:
                self._act(f"eye_state_{side}/{s}", f)
        if tl.get("blink_id", -1) >= 0:
            self._act("blinks/blinking", f)
        zone = p.get("gaze_zone")
        if zone:
            self._act(f"gaze_zone/{zone}", f)
        on_road = tl.get("on_road")
        if on_road is None and lab.get("gaze"):
            on_road = lab["gaze"].get("driving_related", lab["gaze"].get("on_road"))
        if on_road is not None:
            self._act("gaze_on_road/" + ("looking_road" if on_road else "not_looking_road"), f)
        y = st.get("yawn")
        if y in YAWN_DMD:
            self._act(f"yawning/{YAWN_DMD[y]}", f)
        if p.get("action"):
            self._act(f"driver_actions/{p['action']}", f)
        if p.get("activity") == "talking" or lab.get("talking"):
            self._act("talking/talking", f)
        if lab.get("hands_on_wheel"):
            self._act(f"hands_using_wheel/{lab['hands_on_wheel']}", f)
        if tl.get("state"):
            self._act(f"driver_state/{tl['state']}", f)
        if p.get("lighting"):
            self.context_frames.setdefault(f"lighting/{p['lighting']}", []).append(f)
        return f

    def add_clip(self, doc: dict[str, Any]) -> None:
        start = self.next_frame
        tl = doc.get("labels", {}).get("temporal", {})
        fps = float(doc.get("params", {}).get("fps") or tl.get("summary", {}).get("fps") or 1.0)
        for i, fd in enumerate(doc["frames"]):
            self.add_frame(fd, i / fps, None)
        end = self.next_frame - 1
        p = doc.get("params", {})
        cid = str(len(self.contexts))
        self.contexts[cid] = {
            "name": doc["key"], "type": f"clip/{p.get('scenario', 'unknown')}", "ontology_uid": "1",
            "frame_intervals": [{"frame_start": start, "frame_end": end}],
            "context_data": {"text": [{"name": "clip_id", "val": doc["key"]}, {"name": "split", "val": str(doc.get("split"))}],
                             "num": [{"name": "fps", "val": fps}, {"name": "kss", "val": float(p.get("kss", 0))}]},
        }
        for ev in tl.get("events", []):
            if ev["type"] in EVENT_TYPES:
                self.events.append({
                    "name": f"{doc['key']}:{ev['type']}", "type": ev["type"], "ontology_uid": "1",
                    "frame_intervals": [{"frame_start": start + ev["start"], "frame_end": start + ev["end"] - 1}],
                    "event_data": {"num": [{"name": "duration_s", "val": float(ev["duration_s"])},
                                           {"name": "onset_frame", "val": float(start + ev["onset"])}]},
                })

    def document(self) -> dict[str, Any]:
        ol: dict[str, Any] = {
            "metadata": {"schema_version": SCHEMA_VERSION, "name": self.name, "file_version": "1",
                         "annotator": "dmsfactory (synthetic ground truth from generation parameters)",
                         "comment": "Labels are exact by construction; see docs/clips.md for the definitions."},
            "ontologies": {"0": DMD_ONTOLOGY, "1": DMSF_ONTOLOGY},
            "streams": {STREAM: {"type": "camera", "uri": ""}},
        }
        if self.next_frame:
            ol["frame_intervals"] = [{"frame_start": 0, "frame_end": self.next_frame - 1}]
        for uid, o in self.objects.items():
            o["frame_intervals"] = _intervals(self.obj_frames[uid])
        if self.objects:
            ol["objects"] = self.objects
        if self.action_frames:
            ol["actions"] = {str(i): {"name": t.split("/", 1)[1], "type": t, "ontology_uid": "0",
                                      "frame_intervals": _intervals(fr)}
                             for i, (t, fr) in enumerate(sorted(self.action_frames.items()))}
        if self.events:
            ol["events"] = {str(i): e for i, e in enumerate(self.events)}
        ctx = dict(self.contexts)
        for t, fr in sorted(self.context_frames.items()):
            ctx[str(len(ctx))] = {"name": t.split("/", 1)[1], "type": t, "ontology_uid": "1", "frame_intervals": _intervals(fr)}
        if ctx:
            ol["contexts"] = ctx
        if self.frames:
            ol["frames"] = self.frames
        return {"openlabel": ol}


def to_openlabel(records: Iterable[dict[str, Any]], name: str = "dmsfactory", include_landmarks: bool = False) -> dict[str, Any]:
    """One OpenLABEL document for clip documents and/or single-image sample documents (in order)."""
    b = _Builder(name, include_landmarks)
    for r in records:
        if r.get("kind") == "clip":
            b.add_clip(r)
        else:
            b.add_frame(r, 0.0, None)
    return b.document()


def check_openlabel_subset(doc: dict[str, Any]) -> list[str]:
    """Problems under the documented subset of OpenLABEL 1.0.0 (used when the full schema is absent):
    root ``openlabel`` only; metadata.schema_version == "1.0.0"; element maps keyed by numeric uids with
    ``name`` and ``type`` strings; frame keys numeric; every frame interval has integer
    frame_start <= frame_end; object_data bbox values of 4 numbers; num/text entries with ``val``."""
    errs = []
    if set(doc) != {"openlabel"}:
        return [f"root must hold exactly 'openlabel' (got {sorted(doc)})"]
    ol = doc["openlabel"]
    if ol.get("metadata", {}).get("schema_version") != SCHEMA_VERSION:
        errs.append("openlabel.metadata.schema_version must be '1.0.0'")

    def intervals(path: str, fis: Any) -> None:
        for j, fi in enumerate(fis or []):
            s, e = fi.get("frame_start"), fi.get("frame_end")
            if not (isinstance(s, int) and isinstance(e, int) and s <= e):
                errs.append(f"{path}.frame_intervals[{j}]: needs integers frame_start <= frame_end")

    intervals("openlabel", ol.get("frame_intervals"))
    for kind in ("objects", "actions", "events", "contexts"):
        for uid, el in (ol.get(kind) or {}).items():
            if not _UID.match(uid):
                errs.append(f"openlabel.{kind}: key {uid!r} is not a numeric uid or UUID")
            if not isinstance(el.get("name"), str) or not isinstance(el.get("type"), str):
                errs.append(f"openlabel.{kind}.{uid}: needs string 'name' and 'type'")
            intervals(f"openlabel.{kind}.{uid}", el.get("frame_intervals"))
    for fk, fr in (ol.get("frames") or {}).items():
        if not fk.isdigit():
            errs.append(f"openlabel.frames: key {fk!r} is not a frame number")
        for uid, od in (fr.get("objects") or {}).items():
            data = od.get("object_data", {})
            for bb in data.get("bbox", []):
                if len(bb.get("val", [])) != 4:
                    errs.append(f"openlabel.frames.{fk}.objects.{uid}: bbox val needs 4 numbers")
            for kind in ("num", "text"):
                for item in data.get(kind, []):
                    if "val" not in item:
                        errs.append(f"openlabel.frames.{fk}.objects.{uid}: {kind} entry without 'val'")
    return errs


def validate_openlabel(doc: dict[str, Any]) -> str:
    """Validate; returns what was used ("openlabel-1.0.0 json schema (vcd x.y.z)" or "subset").
    Raises ValueError listing the first problems."""
    try:
        from vcd.schema import openlabel_schema
    except ImportError:
        errs = check_openlabel_subset(doc)
        used = "documented subset (vcd not installed)"
    else:
        import jsonschema

        v = jsonschema.Draft7Validator(openlabel_schema)
        errs = [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in v.iter_errors(doc)]
        try:
            from importlib.metadata import version

            used = f"OpenLABEL 1.0.0 JSON schema from vcd {version('vcd')}"
        except Exception:  # pragma: no cover
            used = "OpenLABEL 1.0.0 JSON schema from vcd"
    if errs:
        raise ValueError(f"OpenLABEL validation failed ({used}): " + "; ".join(errs[:5]))
    return used


def export_openlabel(source: Any, out_path: str | Path, *, per_clip: bool = False, include_landmarks: bool = False,
                     validate: bool = True, name: str | None = None) -> dict[str, Any]:
    """Export the labels of ``source`` (dataset directory, or sample / clip documents or objects).

    ``per_clip=False``: one file at ``out_path``; ``per_clip=True``: ``out_path`` is a directory that
    gets ``<clip key>.json`` per clip (+ ``images.json`` for single-image samples, if any).
    Returns ``{"files": [...], "frames": n, "clips": n, "images": n, "validated_with": str | None}``:
    ``frames`` counts OpenLABEL frames, one per clip frame and one per single image.
    """
    recs = _load_records(source)
    out = Path(out_path)
    nm = name or (Path(source).name if isinstance(source, (str, Path)) else "dmsfactory")
    groups: list[tuple[Path, str, list[dict[str, Any]]]]
    if per_clip:
        out.mkdir(parents=True, exist_ok=True)
        groups = [(out / f"{r['key']}.json", r["key"], [r]) for r in recs if r.get("kind") == "clip"]
        singles = [r for r in recs if r.get("kind") != "clip"]
        if singles:
            groups.append((out / "images.json", f"{nm}-images", singles))
    else:
        if out.is_dir():
            raise ValueError(f"--out {out} is a directory; give a file path (or per_clip=True for one file per clip)")
        groups = [(out, nm, recs)]
    used = None
    files, frames = [], 0
    for path, gname, group in groups:
        doc = to_openlabel(group, gname, include_landmarks)
        if validate:
            used = validate_openlabel(doc)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")))
        tmp.replace(path)
        files.append(str(path))
        frames += len(doc["openlabel"].get("frames", {}))
    return {"files": files, "frames": frames, "clips": sum(1 for r in recs if r.get("kind") == "clip"),
            "images": sum(1 for r in recs if r.get("kind") != "clip"), "validated_with": used}
