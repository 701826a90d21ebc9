"""The privacy report: ``privacy_report.json`` + a dataset-card section with histograms and thumbnails.

:class:`PrivacyReport` takes the sample records (``FaceSample.to_json()`` documents, after the gate
ran) one at a time (``add``) and builds the section from counters, a few numbers per image (pHash,
keys: ~50 bytes) and the descriptors of the judged faces (the views, in identity mode), so a dataset of
any size is reported without holding its documents. It is a pure function of what was written (plus
the galleries' summaries and a way to fetch a few synthetic images for thumbnails). Gallery pixels are
never embedded unless ``gallery_thumbnails`` is set explicitly.

Words: the gate **quarantines** (and redacts) what it finds; ``dmsfactory leakcheck`` only **flags**
(``action="flagged"``): it never changes the dataset it reads.
"""

from __future__ import annotations

import heapq
import io
import json
import tarfile
from array import array
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dmsfactory.charts import histogram_png
from dmsfactory.privacy.config import PrivacyConfig
from dmsfactory.privacy.descriptors import ImageError, load_image, model_versions, resolve_descriptor_backend
from dmsfactory.privacy.duplicates import (
    cross_identity_nearest,
    hamming_pairs,
    identity_collisions,
    identity_consistency,
    pack_hashes,
    summary,
)
from dmsfactory.sample import CardSection, is_quarantined

STAGE = "privacy"
REPORT_NAME = "privacy_report.json"
REPORT_VERSION = 2
DATA_HANDLING = (
    "Real galleries are only read: their images are decoded in memory to compute face descriptors. "
    "Nothing from a gallery is copied into the dataset: gallery descriptors live only in the local cache "
    "directory (outside the output), the report names matched gallery files by path and never embeds "
    "their pixels (unless gallery_thumbnails is enabled for a local review), and a synthetic sample that "
    "leaked a real identity is quarantined with its pixels replaced by a coarse mosaic and its "
    "descriptor dropped."
)
VERDICTS = ("clean", "leaked", "faceless_quarantined", "no_face", "no_descriptor", "not_checked")
YAW_BINS = ((0, 15), (15, 30), (30, 45), (45, 60), (60, 181))
SAME_FACE_EXPLAINED = (
    "Two images of *different* synthetic identities closer than the duplicate threshold sit in the range "
    "of copies of one photo (0.0-0.26 measured): the generator made the same face twice (memorisation, or "
    "an identity space that collapsed). It is a check on the synthetic identities, not a real person's "
    "face: a real-person leak is the gallery check above."
)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _pv(rec: dict[str, Any], check: str) -> dict[str, Any] | None:
    for v in rec.get("verdicts", []):
        if v.get("stage") == STAGE and v.get("check") == check:
            return v
    return None


def sample_verdict(rec: dict[str, Any]) -> str:
    """One word per record: clean, leaked, faceless_quarantined, no_face, no_descriptor, not_checked.

    In identity mode an image without a descriptor of its own is clean when its identity's views
    were compared (the leakage verdict is ``keep``); ``no_descriptor`` means the recogniser found no
    face to compare (in the image, or in any view of its identity)."""
    pres, leak = _pv(rec, "presence"), _pv(rec, "leakage")
    if pres is None and leak is None:
        return "not_checked"
    if leak is not None and leak["verdict"] == "quarantine":
        return "leaked"
    if pres is not None and pres["verdict"] == "quarantine":
        return "faceless_quarantined"
    if pres is not None and pres["verdict"] == "undetectable":
        return "no_face"
    if leak is not None:
        return "no_descriptor" if leak["verdict"] == "undetectable" else "clean"
    # no gallery configured: leakage not judged; an image judged on its own needs a descriptor
    if (pres or {}).get("scores", {}).get("mode", "image") == "image" and not rec.get("arrays", {}).get("face_descriptor"):
        return "no_descriptor"
    return "clean"


def conditions(rec: dict[str, Any]) -> dict[str, str]:
    p = rec.get("params") or {}
    out: dict[str, str] = {}
    for k in ("lighting", "accessory", "class", "action"):
        if p.get(k) is not None:
            out[k] = str(p[k])
    cam = p.get("camera") or {}
    if isinstance(cam, dict) and cam.get("mount"):
        out["camera_mount"] = str(cam["mount"])
    ip = p.get("identity_params") or {}
    for k in ("age_group", "skin_tone", "sex"):
        if isinstance(ip, dict) and ip.get(k) is not None:
            out[k] = str(ip[k])
    hp = p.get("head_pose_car") or {}
    if isinstance(hp, dict) and hp.get("yaw") is not None:
        y = abs(float(hp["yaw"]))
        for a, b in YAW_BINS:
            if a <= y < b:
                out["abs_yaw_deg"] = f"{a}-{b}" if b < 181 else f"{a}+"
    return out


class _PresenceRates:
    def __init__(self) -> None:
        self.per: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        self.detectors: set[str] = set()

    def add(self, r: dict[str, Any]) -> None:
        pv = _pv(r, "presence")
        if pv is None:
            return
        scores = pv.get("scores", {})
        found = set(scores.get("detected_by", []))
        for k in scores:
            if k.endswith("_faces"):
                self.detectors.add(k[: -len("_faces")])
        self.detectors.update(scores.get("run", []))
        groups = [("all", "all")] + sorted(conditions(r).items())
        for axis, val in groups:
            c = self.per[axis][val]
            c["n"] += 1
            c["any"] += bool(found)
            for d in found:
                c[d] += 1

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for axis, vals in sorted(self.per.items()):
            out[axis] = {
                val: {"n": c["n"], "rate_any": round(c["any"] / c["n"], 4),
                      **{f"rate_{d}": round(c[d] / c["n"], 4) for d in sorted(self.detectors)}}
                for val, c in sorted(vals.items())
            }
        return out


def _presence_rates(recs: list[dict[str, Any]]) -> dict[str, Any]:
    pr = _PresenceRates()
    for r in recs:
        pr.add(r)
    return pr.result()


def fetch_images(dataset_dir: Path, keys: set[str], locate: Callable[[str], list[Path]] | None = None) -> dict[str, np.ndarray]:
    """The images of ``keys`` from the ``*.tar`` shards under ``dataset_dir`` (or only the shards
    ``locate(key)`` names): one pass over their tar headers, reading only the wanted members."""
    out: dict[str, np.ndarray] = {}
    want = set(keys)
    if locate is not None:
        tars = sorted({t for k in want for t in locate(k)})
    else:
        tars = sorted(Path(dataset_dir).rglob("*.tar"))
    for t in tars:
        if not want:
            break
        try:
            with tarfile.open(t) as tf:
                for m in tf:
                    base, _, ext = m.name.rpartition(".")
                    if base in want and m.isfile() and ext.lower() in ("jpg", "jpeg", "png"):
                        f = tf.extractfile(m)
                        try:
                            out[base] = load_image(f.read(), name=f"{t}:{m.name}")
                        except ImageError:
                            pass
                        want.discard(base)
        except (tarfile.TarError, OSError):
            continue
    return out


def shard_image_lookup(dataset_dir: Path) -> Callable[[str], np.ndarray | None]:
    """A sample's image by key from the shards under ``dataset_dir`` (one targeted scan per key)."""

    def lookup(key: str) -> np.ndarray | None:
        return fetch_images(dataset_dir, {key}).get(key)

    return lookup


class _Keys:
    """Strings stored compactly (utf-8 in one bytearray + offsets): ~len + 4 bytes each."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.off = array("Q", [0])

    def append(self, s: str) -> None:
        self.buf += s.encode()
        self.off.append(len(self.buf))

    def __getitem__(self, i: int) -> str:
        return self.buf[self.off[i] : self.off[i + 1]].decode()

    def __len__(self) -> int:
        return len(self.off) - 1


def _hist_png(
    series: dict[str, list[float]], threshold: float | None, title: str, xlabel: str, extra_line: tuple[float, str] | None = None
) -> bytes:
    allv = [v for vs in series.values() for v in vs if np.isfinite(v)]
    bins = np.linspace(0, max(1.2, max(allv, default=1.2) * 1.05), 49)
    lines = [(threshold, "threshold", "black")] if threshold is not None else []
    if extra_line is not None:
        lines.append((extra_line[0], extra_line[1], "red"))
    return histogram_png(series, bins, title, xlabel, lines)


def _thumb(img: np.ndarray | None, size: int = 96) -> np.ndarray:
    import cv2

    if img is None:
        return np.full((size, size, 3), 200, np.uint8)
    h, w = img.shape[:2]
    f = size / max(h, w)
    small = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    out = np.full((size, size, 3), 255, np.uint8)
    y, x = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def _pairs_png(
    rows: list[tuple[np.ndarray | None, np.ndarray | None, str]],
    title: str,
    heads: tuple[str, str] = ("sample", "match"),
    missing: str = "not embedded",
) -> bytes:
    """One row per pair: left image, right image (or a grey box saying why it is not shown), and the
    pair's text in a column of its own, so that neither the text nor the title is cut. Composed with
    Pillow (no plotting library: this ran in every run's finalize, and matplotlib's layout took ~1 s per
    figure)."""
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    font, bold = ImageFont.load_default(size=12), ImageFont.load_default(size=13)
    t = 96  # thumbnail side
    pad = 8
    title = "\n".join(textwrap.wrap(title, 78))
    draw0 = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max([draw0.multiline_textbbox((0, 0), r[2], font=font)[2] for r in rows] + [200])
    title_box = draw0.multiline_textbbox((0, 0), title, font=bold)
    width = max(pad + 2 * (t + pad) + text_w + pad, title_box[2] + 2 * pad)
    top = pad + title_box[3] + pad + 16  # title, then the column heads
    img = Image.new("RGB", (width, top + len(rows) * (t + pad) + pad), "white")
    d = ImageDraw.Draw(img)
    d.multiline_text((pad, pad), title, fill="black", font=bold)
    why = "\n".join(w for line in missing.split("\n") for w in (textwrap.wrap(line, 18, break_long_words=False) or [""]))
    for j, h in enumerate(heads):
        d.text((pad + j * (t + pad) + t / 2, top - 4), h, fill="black", font=font, anchor="md")
    for i, (a, b, text) in enumerate(rows):
        y = top + i * (t + pad)
        img.paste(Image.fromarray(_thumb(a)), (pad, y))
        if b is not None:
            img.paste(Image.fromarray(_thumb(b)), (pad + t + pad, y))
        else:
            x = pad + t + pad
            d.rectangle((x, y, x + t - 1, y + t - 1), fill=(225, 225, 225))
            d.multiline_text((x + t / 2, y + t / 2), why, fill=(77, 77, 77), font=font, anchor="mm", align="center")
        d.multiline_text((pad + 2 * (t + pad), y + t / 2), text, fill="black", font=font, anchor="lm")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _gallery_image(galleries: list[Any], gallery: str, ref: str) -> np.ndarray | None:
    for g in galleries:
        if g.path == gallery and ":" not in ref:
            try:
                return load_image(g.root / ref)
            except ImageError:
                return None
    return None


class PrivacyReport:
    """Accumulates sample records (``add``) into the privacy report (``section``).

    ``galleries``: the galleries' summaries (:meth:`Gallery.summary_with_low_res`). Thumbnails come
    from ``image_lookup(key)`` or, with ``dataset_dir``, from the shards (only the few shown).
    ``action``: what happened to a leak: "quarantined" (the gate) or "flagged" (leakcheck)."""

    def __init__(
        self,
        cfg: PrivacyConfig,
        galleries: list[dict[str, Any]],
        dataset_dir: Path | str | None = None,
        image_lookup: Callable[[str], np.ndarray | None] | None = None,
        title: str = "Privacy gate",
        action: str = "quarantined",
        gallery_objects: list[Any] | None = None,
        locate: Callable[[str], list[Path]] | None = None,
    ):
        self.cfg = cfg
        self.galleries = galleries
        self.gallery_objects = gallery_objects or []
        self.dataset_dir = Path(dataset_dir) if dataset_dir is not None else None
        self.image_lookup = image_lookup
        self.locate = locate  # key -> the shards that may hold it (thumbnails read only those)
        self.title = title
        self.action = action
        self.n = 0
        self.counts: Counter = Counter()
        self.modes: Counter = Counter()
        self.leaked: list[dict[str, Any]] = []
        self.leaked_identities: dict[str, dict[str, Any]] = {}
        self.gdist: dict[str, array] = defaultdict(lambda: array("d"))
        self._nearest: list[tuple[float, int, dict[str, Any]]] = []  # max-heap (by -distance) of the closest
        self._judged_identities: set[str] = set()
        self.presence = _PresenceRates()
        self.desc = array("f")  # the descriptors end to end (float32): no object per descriptor, no stacked copy
        self.desc_dim = 0
        self.desc_ident: list[str | None] = []
        self.desc_keys = _Keys()
        self.ph = array("Q")
        self.ph_root = array("q")
        self.ph_ident = array("q")
        self.ph_keys = _Keys()

    # ------------------------------------------------------------ one record at a time
    def add(self, r: dict[str, Any]) -> None:
        self.n += 1
        verdict = sample_verdict(r)
        self.counts[verdict] += 1
        self.presence.add(r)
        lv = _pv(r, "leakage")
        mode = ((lv or _pv(r, "presence") or {}).get("scores") or {}).get("mode")
        if mode:
            self.modes[mode] += 1
        quarantined = is_quarantined(r)
        if lv is not None and lv["verdict"] in ("keep", "quarantine"):
            sc = lv.get("scores", {})
            ident = sc.get("identity") if sc.get("mode") == "identity" else None
            first = ident is None or ident not in self._judged_identities
            if ident is not None:
                self._judged_identities.add(ident)
            if first:  # identity mode: one distance per identity, not one per image
                for g, d in (sc.get("gallery_distances") or {}).items():
                    self.gdist[g].append(float(d))
                if sc.get("distance") is not None:
                    item = {"key": sc.get("deciding_view") or r["key"], "identity": r.get("identity"), "mode": sc.get("mode", "image"),
                            **{k: sc.get(k) for k in ("gallery", "file", "distance", "margin", "second_distance", "leaked")}}
                    entry = (-float(sc["distance"]), self.n, item)
                    if len(self._nearest) < max(1, self.cfg.report_pairs):
                        heapq.heappush(self._nearest, entry)
                    elif entry > self._nearest[0]:
                        heapq.heapreplace(self._nearest, entry)
            if verdict == "leaked":
                self.leaked.append({"key": r["key"], "identity": r.get("identity"), "mode": sc.get("mode", "image"),
                                    **{k: sc.get(k) for k in ("gallery", "file", "distance", "margin", "match_threshold",
                                                              "low_res_gallery_face", "deciding_view")}})
                if ident is not None:
                    li = self.leaked_identities.setdefault(ident, {"identity": ident, "images": 0, **{
                        k: sc.get(k) for k in ("deciding_view", "gallery", "file", "distance", "margin", "match_threshold")}})
                    li["images"] += 1
        arrays = r.get("arrays") or {}
        if not quarantined and arrays.get("face_descriptor"):
            v = np.asarray(arrays["face_descriptor"], np.float32).ravel()
            if self.desc_dim and len(v) != self.desc_dim:
                raise ValueError(f"sample {r['key']!r}: face_descriptor has {len(v)} values, the others {self.desc_dim}")
            self.desc_dim = len(v)
            self.desc.frombytes(v.tobytes())
            self.desc_ident.append(r.get("identity"))
            self.desc_keys.append(r["key"])
        if not quarantined and arrays.get("phash"):
            self.ph.append(int(pack_hashes(np.asarray(arrays["phash"]) > 0.5)[0]))
            self.ph_root.append(hash(r.get("source_key") or r["key"]))
            ident = r.get("identity")
            self.ph_ident.append(hash(ident) if ident is not None else 0)
            self.ph_keys.append(r["key"])

    # ------------------------------------------------------------ the section
    def _images(self, keys: set[str]) -> dict[str, np.ndarray | None]:
        if self.image_lookup is not None:
            return {k: self.image_lookup(k) for k in keys}
        if self.dataset_dir is not None:
            return dict(fetch_images(self.dataset_dir, keys, self.locate))
        return {}

    def section(self) -> CardSection:
        cfg = self.cfg
        nearest = sorted((item for _, _, item in self._nearest), key=lambda m: m["distance"])
        desc = np.frombuffer(self.desc, np.float32).reshape(-1, self.desc_dim) if self.desc else np.zeros((0, 128), np.float32)
        idents = self.desc_ident
        thr_id = cfg.identity_threshold
        ok = len(desc) > 0
        coll = identity_collisions(desc, idents, cfg.threshold)  # no descriptors: no identities, its own empty answer
        xd, xi = cross_identity_nearest(desc, idents) if ok else (np.zeros(0), np.zeros(0, int))
        cross_pairs = []
        flagged: dict[tuple[str, str], dict[str, Any]] = {}
        seen = set()
        for i in np.argsort(xd):
            j = int(xi[i])
            if j < 0 or not np.isfinite(xd[i]):
                continue
            ka, kb = self.desc_keys[int(i)], self.desc_keys[j]
            key = tuple(sorted((ka, kb)))
            if key in seen:
                continue
            seen.add(key)
            pair = {"a": ka, "b": kb, "identity_a": idents[i], "identity_b": idents[j], "distance": round(float(xd[i]), 4)}
            if len(cross_pairs) < cfg.report_pairs:
                cross_pairs.append(pair)
            if xd[i] < thr_id:
                ip = tuple(sorted((str(idents[i]), str(idents[j]))))
                f = flagged.setdefault(ip, {"identity_a": ip[0], "identity_b": ip[1], "image_pairs": 0,
                                            "min_distance": pair["distance"], "example": [pair["a"], pair["b"]]})
                f["image_pairs"] += 1
            elif len(cross_pairs) >= cfg.report_pairs:
                break  # sorted: every later pair is farther
        cons = identity_consistency(desc, idents, cfg.threshold) if ok else identity_consistency(np.zeros((0, 128)), [], cfg.threshold)
        intra_v, inter_v = cons.pop("_intra_values"), cons.pop("_inter_values")

        dup_pairs = []
        if len(self.ph):
            h = np.frombuffer(self.ph, np.uint64)
            root = np.frombuffer(self.ph_root, np.int64)
            ident = np.frombuffer(self.ph_ident, np.int64)
            for i, j, d in hamming_pairs(h, cfg.phash_max_distance):
                kind = "same_source" if root[i] == root[j] else (
                    "same_identity" if ident[i] != 0 and ident[i] == ident[j] else "cross_identity")
                dup_pairs.append({"a": self.ph_keys[i], "b": self.ph_keys[j], "hamming": d, "kind": kind})
        dup_pairs.sort(key=lambda p: (p["kind"] != "cross_identity", p["hamming"]))

        # ---- figures
        files: dict[str, bytes] = {}
        gdist = {g: list(v) for g, v in self.gdist.items()}
        if gdist:
            low_thr = cfg.low_res_threshold if cfg.low_res_threshold is not None else cfg.threshold
            unit = "per identity (identity mode: the closest of its views)" if self.modes.get("identity") else "per sample"
            files["privacy/gallery_distances.png"] = _hist_png(
                gdist, cfg.threshold, f"nearest real-gallery face {unit}", "dlib descriptor distance",
                extra_line=(low_thr, "low-res threshold") if low_thr != cfg.threshold else None)
        if intra_v or inter_v or len(xd):
            files["privacy/identity_distances.png"] = _hist_png(
                {"intra-identity pairs": intra_v, "inter-identity pairs": inter_v,
                 "nearest other identity (per image)": [float(v) for v in xd if np.isfinite(v)]},
                cfg.threshold, "synthetic identities", "dlib descriptor distance")
        shown_near = nearest[: min(cfg.report_pairs, 8)]
        shown_cross = cross_pairs[:8]
        imgs = self._images({m["key"] for m in shown_near} | {p["a"] for p in shown_cross} | {p["b"] for p in shown_cross})
        rows = []
        for m in shown_near:
            g_img = _gallery_image(self.gallery_objects, m["gallery"], m["file"]) if cfg.gallery_thumbnails else None
            rows.append((imgs.get(m["key"]), g_img, f"{m['key']}\n{'LEAK ' if m['leaked'] else ''}d={m['distance']:.3f}\n{m['file']}"))
        if rows:
            files["privacy/closest_gallery_matches.png"] = _pairs_png(
                rows, "closest real-gallery faces to the samples (dlib distance d; same person below the threshold)",
                heads=("synthetic sample", "real gallery image"),
                missing="not embedded\n(gallery_thumbnails:\nfalse)" if not cfg.gallery_thumbnails else "not readable")
        rows = [(imgs.get(p["a"]), imgs.get(p["b"]), f"{p['identity_a']} vs {p['identity_b']}\nd={p['distance']:.3f}\n{p['a']}\n{p['b']}")
                for p in shown_cross]
        if rows:
            files["privacy/closest_cross_identity_pairs.png"] = _pairs_png(
                rows, "closest images of different synthetic identities", heads=("identity a", "identity b"), missing="not found")

        no_gallery = not cfg.galleries and not self.galleries
        data = {
            "report_version": REPORT_VERSION,
            "samples": self.n,
            "verdicts": {v: self.counts.get(v, 0) for v in VERDICTS},
            "action": self.action,
            "leakage_mode": {
                "samples_by_mode": dict(self.modes),
                "identities_judged": len(self._judged_identities),
                "identity_views": cfg.identity_views,
                "rule": "identity: every image of an identity takes the verdict of its worst of k views (docs/privacy.md); "
                        "image: every image is judged on its own pixels",
            },
            "leaked": self.leaked,
            "leaked_identities": sorted(self.leaked_identities.values(), key=lambda x: x["identity"]),
            "thresholds": {
                "leakage_distance": cfg.threshold,
                "low_res_face_px": cfg.low_res_face_px,
                "low_res_leakage_distance": cfg.low_res_threshold if cfg.low_res_threshold is not None else cfg.threshold,
                "identity_duplicate_image_distance": thr_id,
                "phash_max_hamming": cfg.phash_max_distance,
                "expect_visible_fraction": cfg.expect_visible_fraction,
                "quarantine_faceless": cfg.quarantine_faceless,
            },
            "leakage_checked": not no_gallery,
            "galleries": self.galleries,
            "gallery_distance": {g: summary(v) for g, v in gdist.items()},
            "closest_gallery_matches": nearest[: cfg.report_pairs],
            "presence_rates": self.presence.result(),
            "memorisation": {
                "identity_pairs_same_face": sorted(flagged.values(), key=lambda f: f["min_distance"]),
                "explanation": SAME_FACE_EXPLAINED,
                "identity_pairs_centroid_within_same_person_threshold": coll["pairs_within"],
                "identities": coll["identities"],
                "nearest_other_identity_centroid": summary(coll["nearest_other_identity"]),
                "nearest_other_identity_image": summary(xd),
                "closest_cross_identity_images": cross_pairs,
            },
            "phash_duplicates": {
                "pairs": len(dup_pairs),
                "by_kind": dict(Counter(p["kind"] for p in dup_pairs)),
                "examples": dup_pairs[: cfg.report_pairs],
            },
            "identity_consistency": cons,
            "models": model_versions(),
            "detectors": {"presence": list(cfg.presence_detectors), "presence_fallback": cfg.presence_fallback,
                          "descriptor_boxes": list(cfg.descriptor_detectors),
                          "descriptor_backend": resolve_descriptor_backend(cfg.descriptor_backend)},
            "data_handling": DATA_HANDLING,
        }
        md = _markdown(data, files, no_gallery)
        return CardSection(title=self.title, markdown=md, data=data, files=files, json_name=REPORT_NAME)


def build_report(
    records: list[dict[str, Any]],
    cfg: PrivacyConfig,
    galleries: list[Any],
    image_lookup: Callable[[str], np.ndarray | None] | None = None,
    title: str = "Privacy gate",
    action: str = "quarantined",
) -> CardSection:
    """The report of a list of records (``galleries``: :class:`Gallery` objects); see :class:`PrivacyReport`."""
    rep = PrivacyReport(cfg, [g.summary_with_low_res(cfg.low_res_face_px) for g in galleries],
                        image_lookup=image_lookup, title=title, action=action, gallery_objects=galleries)
    for r in records:
        rep.add(r)
    return rep.section()


def _markdown(d: dict[str, Any], files: dict[str, bytes], no_gallery: bool) -> str:
    v = d["verdicts"]
    L: list[str] = []  # the card adds the "## title" heading
    if no_gallery:
        L.append("**No real gallery was configured: identity leakage was NOT checked.** "
                 "Presence, memorisation and consistency below still apply.")
        L.append("")
    L.append(f"{d['samples']} samples: " + ", ".join(f"{k} {v[k]}" for k in VERDICTS) + ".")
    L.append("")
    lm = d["leakage_mode"]
    by = lm["samples_by_mode"]
    if by.get("identity"):
        L.append(f"Leakage mode: **identity** for {by['identity']} samples: {lm['identities_judged']} identities were each "
                 f"judged on up to {lm['identity_views']} views chosen to cover pose and lighting; the worst view (closest "
                 "real face) decides for every image of the identity, augmented copies included, and each image names "
                 "the views that decided it." + (f" **image** (each on its own pixels) for {by['image']} samples." if by.get("image") else ""))
    elif by.get("image"):
        L.append(f"Leakage mode: **image**: each of {by['image']} samples judged on its own pixels.")
    L.append("")
    t = d["thresholds"]
    L.append(f"Thresholds: leakage distance < {t['leakage_distance']} (dlib ResNet 128-d, Euclidean), "
             f"< {t['low_res_leakage_distance']} against low-resolution gallery faces (< {t['low_res_face_px']} px); identity "
             f"duplicates: two images of different identities closer than {t['identity_duplicate_image_distance']}; pHash duplicates: "
             f"<= {t['phash_max_hamming']} of 64 bits.")
    L.append("")
    if d["galleries"]:
        L += ["| gallery | files | faces (low-res) | problems | content hash | nearest sharp face min / p05 / median | nearest low-res face min |",
              "|---|---|---|---|---|---|---|"]
        for g in d["galleries"]:
            s = d["gallery_distance"].get(g["path"], {})
            L.append(f"| `{g['path']}` | {g['files']} | {g['faces']} ({g['low_res_faces']}) | {len(g['problems'])} | `{g['content_hash'][:12]}` | "
                     f"{s.get('min', '-')} / {s.get('p05', '-')} / {s.get('median', '-')} | "
                     f"{d['gallery_distance'].get(g['path'] + ' [low-res faces]', {}).get('min', '-')} |")
        L.append("")
    if d["leaked"]:
        if d["action"] == "quarantined":
            what = "Leaked (quarantined, pixels redacted)"
        else:
            what = (f"Leaked (flagged by this check; it does not change the dataset: {len(d['leaked'])} images "
                    "are still where they were)")
        L += [f"**{what}:**", ""]
        if d["leaked_identities"]:
            L += ["| identity | images | deciding view | gallery file | distance | margin |", "|---|---|---|---|---|---|"]
            for x in d["leaked_identities"][:50]:
                L.append(f"| {x['identity']} | {x['images']} | `{x['deciding_view']}` | `{x['file']}` | {x['distance']:.3f} | {x['margin']:.3f} |")
            L.append("")
        per_image = [x for x in d["leaked"] if x.get("mode") != "identity"]
        if per_image:
            L += ["| sample | gallery file | distance | margin |", "|---|---|---|---|"]
            for x in per_image[:50]:
                L.append(f"| `{x['key']}` | `{x['file']}` | {x['distance']:.3f} | {x['margin']:.3f} |")
            L.append("")
    m = d["memorisation"]
    pairs = m["identity_pairs_same_face"]
    L.append(f"Memorisation: {len(pairs)} pairs of different synthetic identities are the same face (of {m['identities']} "
             f"identities with a descriptor)." + (f" {m['explanation']}" if pairs else "") + " Separation: "
             f"{m['identity_pairs_centroid_within_same_person_threshold']} identity pairs have centroids within dlib's "
             f"same-person threshold; nearest other identity (image level) "
             f"median {m['nearest_other_identity_image'].get('median', '-')}, min {m['nearest_other_identity_image'].get('min', '-')}.")
    if pairs:
        L += ["", "| identity | identity | image pairs below the threshold | min distance | example images |", "|---|---|---|---|---|"]
        for f in pairs[:20]:
            L.append(f"| {f['identity_a']} | {f['identity_b']} | {f['image_pairs']} | {f['min_distance']:.3f} | "
                     f"`{f['example'][0]}`, `{f['example'][1]}` |")
        L.append("")
    p = d["phash_duplicates"]
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(p["by_kind"].items()))
    L.append(f"Perceptual-hash near-duplicates (face region): {p['pairs']} pairs" + (f" ({kinds})" if kinds else "") + ".")
    c = d["identity_consistency"]
    L.append(f"Identity consistency: {c['consistent_fraction']} of {c['identities_judged']} identities keep all their "
             f"images within the threshold; intra median {c['intra'].get('median', '-')}, inter median {c['inter'].get('median', '-')}; "
             f"same-identity pairs within the threshold {_pct(c.get('intra_below_threshold_fraction'))}, "
             f"different-identity pairs beyond it {_pct(None if c.get('inter_below_threshold_fraction') is None else 1 - c['inter_below_threshold_fraction'])} "
             "(histogram: `privacy/identity_distances.png`).")
    L.append("")
    pr = d["presence_rates"].get("all", {}).get("all")
    if pr:
        fb = " (Haar runs only where MediaPipe found nothing and the labels expect a face)" if d["detectors"].get("presence_fallback") else ""
        L.append("Face presence (all samples): " + ", ".join(f"{k[5:]} {v:.1%}" for k, v in pr.items() if k.startswith("rate_")) + fb + ".")
        worst = sorted(((val["rate_any"], axis, name) for axis, vals in d["presence_rates"].items() if axis != "all"
                        for name, val in vals.items()))[:3]
        if worst:
            L.append("Lowest presence by condition: " + ", ".join(f"{a}={n} {r:.1%}" for r, a, n in worst) + ".")
        L.append("")
    for f in sorted(files):
        L.append(f"![{Path(f).stem}]({f})")
    L += ["", f"Models: {json.dumps(d['models'])}", "", f"Data handling: {d['data_handling']}", ""]
    return "\n".join(L)
