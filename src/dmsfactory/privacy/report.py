"""The privacy report: ``privacy_report.json`` + a dataset-card section with histograms and thumbnails.

Input is the list of sample records (``FaceSample.to_json()`` documents) after the privacy stage ran,
so the report is a pure function of what was written (plus the galleries' summaries and a way to fetch
a few synthetic images for thumbnails). Gallery pixels are never embedded unless
``gallery_thumbnails`` is set explicitly.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dmsfactory.privacy.config import PrivacyConfig
from dmsfactory.privacy.duplicates import (
    cross_identity_nearest,
    hamming_pairs,
    identity_collisions,
    identity_consistency,
    pack_hashes,
    summary,
)
from dmsfactory.sample import CardSection

STAGE = "privacy"
REPORT_NAME = "privacy_report.json"
REPORT_VERSION = 1
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


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _pv(rec: dict[str, Any], check: str) -> dict[str, Any] | None:
    for v in rec.get("verdicts", []):
        if v.get("stage") == STAGE and v.get("check") == check:
            return v
    return None


def sample_verdict(rec: dict[str, Any]) -> str:
    pres, leak = _pv(rec, "presence"), _pv(rec, "leakage")
    if pres is None and leak is None:
        return "not_checked"
    if leak is not None and leak["verdict"] == "quarantine":
        return "leaked"
    if pres is not None and pres["verdict"] == "quarantine":
        return "faceless_quarantined"
    if pres is not None and pres["verdict"] == "undetectable":
        return "no_face"
    if not rec.get("arrays", {}).get("face_descriptor"):
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


def _presence_rates(recs: list[dict[str, Any]]) -> dict[str, Any]:
    per: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    detectors: set[str] = set()
    for r in recs:
        pv = _pv(r, "presence")
        if pv is None:
            continue
        scores = pv.get("scores", {})
        found = set(scores.get("detected_by", []))
        for k in scores:
            if k.endswith("_faces"):
                detectors.add(k[: -len("_faces")])
        detectors.add("hog")
        groups = [("all", "all")] + sorted(conditions(r).items())
        for axis, val in groups:
            c = per[axis][val]
            c["n"] += 1
            c["any"] += bool(found)
            for d in found:
                c[d] += 1
    out: dict[str, Any] = {}
    for axis, vals in sorted(per.items()):
        out[axis] = {
            val: {"n": c["n"], "rate_any": round(c["any"] / c["n"], 4),
                  **{f"rate_{d}": round(c[d] / c["n"], 4) for d in sorted(detectors)}}
            for val, c in sorted(vals.items())
        }
    return out


def shard_image_lookup(dataset_dir: Path) -> Callable[[str], np.ndarray | None]:
    """Find a sample's image by key in the ``*.tar`` shards under ``dataset_dir`` (read lazily, once)."""
    index: dict[str, tuple[Path, str]] | None = None

    def lookup(key: str) -> np.ndarray | None:
        nonlocal index
        from dmsfactory.privacy.descriptors import ImageError, load_image

        if index is None:
            index = {}
            for t in sorted(Path(dataset_dir).rglob("*.tar")):
                try:
                    with tarfile.open(t) as tf:
                        for m in tf.getmembers():
                            base, _, ext = m.name.rpartition(".")
                            if ext.lower() in ("jpg", "jpeg", "png") and m.isfile():
                                index.setdefault(base, (t, m.name))
                except (tarfile.TarError, OSError):
                    continue
        hit = index.get(key)
        if hit is None:
            return None
        try:
            with tarfile.open(hit[0]) as tf:
                f = tf.extractfile(hit[1])
                return load_image(f.read(), name=f"{hit[0]}:{hit[1]}") if f else None
        except (tarfile.TarError, OSError, ImageError, KeyError):
            return None

    return lookup


def _hist_png(
    series: dict[str, list[float]], threshold: float | None, title: str, xlabel: str, extra_line: tuple[float, str] | None = None
) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    allv = [v for vs in series.values() for v in vs if np.isfinite(v)]
    bins = np.linspace(0, max(1.2, max(allv, default=1.2) * 1.05), 49)
    for name, vs in series.items():
        vs = [v for v in vs if np.isfinite(v)]
        if vs:
            ax.hist(vs, bins=bins, alpha=0.55, label=f"{name} (n={len(vs)})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    if extra_line is not None:
        ax.axvline(extra_line[0], color="r", ls=":", lw=1, label=f"{extra_line[1]} {extra_line[0]:g}")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


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
    pair's text in a column of its own, so that neither the text nor the title is cut."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(rows)
    fig, axes = plt.subplots(n, 3, figsize=(6.4, 1.35 * n + 0.7), dpi=100, squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 1.9]}, layout="constrained")
    for i, ((a, b, text), row) in enumerate(zip(rows, axes)):
        row[0].imshow(_thumb(a))
        if b is not None:
            row[1].imshow(_thumb(b))
        else:
            row[1].imshow(np.full((96, 96, 3), 225, np.uint8))
            row[1].text(0.5, 0.5, missing, ha="center", va="center", fontsize=6.5, color="0.3",
                        transform=row[1].transAxes, wrap=True)
        for ax in row[:2]:
            ax.set_xticks([])
            ax.set_yticks([])
        if i == 0:
            row[0].set_title(heads[0], fontsize=7.5)
            row[1].set_title(heads[1], fontsize=7.5)
        row[2].axis("off")
        row[2].text(0.0, 0.5, text, ha="left", va="center", fontsize=7, family="monospace", transform=row[2].transAxes)
    fig.suptitle("\n".join(textwrap.wrap(title, 78)), fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _gallery_image(galleries: list[Any], gallery: str, ref: str) -> np.ndarray | None:
    from dmsfactory.privacy.descriptors import ImageError, load_image

    for g in galleries:
        if g.path == gallery and ":" not in ref:
            try:
                return load_image(g.root / ref)
            except ImageError:
                return None
    return None


def build_report(
    records: list[dict[str, Any]],
    cfg: PrivacyConfig,
    galleries: list[Any],
    image_lookup: Callable[[str], np.ndarray | None] | None = None,
    title: str = "Privacy gate",
) -> CardSection:
    from dmsfactory.privacy.descriptors import model_versions

    lookup = image_lookup or (lambda k: None)
    verdicts = {r["key"]: sample_verdict(r) for r in records}
    counts = Counter(verdicts.values())
    leaked = [r for r in records if verdicts[r["key"]] == "leaked"]

    # ---- gallery distances
    gdist: dict[str, list[float]] = defaultdict(list)
    nearest: list[dict[str, Any]] = []
    for r in records:
        lv = _pv(r, "leakage")
        if lv is None or lv["verdict"] not in ("keep", "quarantine"):
            continue
        sc = lv.get("scores", {})
        for g, d in (sc.get("gallery_distances") or {}).items():
            gdist[g].append(float(d))
        if sc.get("distance") is not None:
            nearest.append({"key": r["key"], "identity": r.get("identity"), **{k: sc.get(k) for k in ("gallery", "file", "distance", "margin", "second_distance", "leaked")}})
    nearest.sort(key=lambda m: m["distance"])

    # ---- memorisation / duplicates / consistency (accepted samples with descriptors)
    ok = [r for r in records if not _quarantined(r) and r.get("arrays", {}).get("face_descriptor")]
    desc = np.array([r["arrays"]["face_descriptor"] for r in ok], np.float32).reshape(-1, 128)
    idents = [r.get("identity") for r in ok]
    thr_id = cfg.identity_threshold
    coll = identity_collisions(desc, idents, cfg.threshold) if len(ok) else {"identities": 0, "pairs": [], "nearest_other_identity": []}
    xd, xi = cross_identity_nearest(desc, idents) if len(ok) else (np.zeros(0), np.zeros(0, int))
    cross_pairs = []
    flagged: dict[tuple[str, str], dict[str, Any]] = {}
    seen = set()
    for i in np.argsort(xd):
        j = int(xi[i])
        if j < 0 or not np.isfinite(xd[i]):
            continue
        key = tuple(sorted((ok[i]["key"], ok[j]["key"])))
        if key in seen:
            continue
        seen.add(key)
        pair = {"a": ok[i]["key"], "b": ok[j]["key"], "identity_a": idents[i], "identity_b": idents[j], "distance": round(float(xd[i]), 4)}
        if len(cross_pairs) < cfg.report_pairs:
            cross_pairs.append(pair)
        if xd[i] < thr_id:
            ip = tuple(sorted((str(idents[i]), str(idents[j]))))
            f = flagged.setdefault(ip, {"identity_a": ip[0], "identity_b": ip[1], "image_pairs": 0, "min_distance": pair["distance"], "example": [pair["a"], pair["b"]]})
            f["image_pairs"] += 1
    cons = identity_consistency(desc, idents, cfg.threshold) if len(ok) else identity_consistency(np.zeros((0, 128)), [], cfg.threshold)
    intra_v, inter_v = cons.pop("_intra_values"), cons.pop("_inter_values")

    hrecs = [r for r in records if r.get("arrays", {}).get("phash") and not _quarantined(r)]
    dup_pairs = []
    if hrecs:
        bits = np.array([r["arrays"]["phash"] for r in hrecs]) > 0.5
        for i, j, d in hamming_pairs(pack_hashes(bits), cfg.phash_max_distance):
            a, b = hrecs[i], hrecs[j]
            same_src = (a.get("source_key") or a["key"]) == (b.get("source_key") or b["key"])
            kind = "same_source" if same_src else ("same_identity" if a.get("identity") is not None and a.get("identity") == b.get("identity") else "cross_identity")
            dup_pairs.append({"a": a["key"], "b": b["key"], "hamming": d, "kind": kind})
    dup_pairs.sort(key=lambda p: (p["kind"] != "cross_identity", p["hamming"]))

    # ---- figures
    files: dict[str, bytes] = {}
    if gdist:
        low_thr = cfg.low_res_threshold if cfg.low_res_threshold is not None else cfg.threshold
        files["privacy/gallery_distances.png"] = _hist_png(
            dict(gdist), cfg.threshold, "nearest real-gallery face per sample", "dlib descriptor distance",
            extra_line=(low_thr, "low-res threshold") if low_thr != cfg.threshold else None)
    if intra_v or inter_v or len(xd):
        files["privacy/identity_distances.png"] = _hist_png(
            {"intra-identity pairs": intra_v, "inter-identity pairs": inter_v,
             "nearest other identity (per image)": [float(v) for v in xd if np.isfinite(v)]},
            cfg.threshold, "synthetic identities", "dlib descriptor distance")
    rows = []
    for m in nearest[: min(cfg.report_pairs, 8)]:
        g_img = _gallery_image(galleries, m["gallery"], m["file"]) if cfg.gallery_thumbnails else None
        rows.append((lookup(m["key"]), g_img, f"{m['key']}\n{'LEAK ' if m['leaked'] else ''}d={m['distance']:.3f}\n{m['file']}"))
    if rows:
        files["privacy/closest_gallery_matches.png"] = _pairs_png(
            rows, "closest real-gallery faces to the samples (dlib distance d; same person below the threshold)",
            heads=("synthetic sample", "real gallery image"),
            missing="not embedded\n(gallery_thumbnails:\nfalse)" if not cfg.gallery_thumbnails else "not readable")
    rows = [(lookup(p["a"]), lookup(p["b"]), f"{p['identity_a']} vs {p['identity_b']}\nd={p['distance']:.3f}\n{p['a']}\n{p['b']}")
            for p in cross_pairs[:8]]
    if rows:
        files["privacy/closest_cross_identity_pairs.png"] = _pairs_png(
            rows, "closest images of different synthetic identities", heads=("identity a", "identity b"), missing="not found")

    no_gallery = not cfg.galleries and not galleries
    data = {
        "report_version": REPORT_VERSION,
        "samples": len(records),
        "verdicts": {v: counts.get(v, 0) for v in VERDICTS},
        "leaked": [
            {"key": r["key"], "identity": r.get("identity"), **{k: _pv(r, "leakage")["scores"].get(k) for k in ("gallery", "file", "distance", "margin", "match_threshold", "low_res_gallery_face")}}
            for r in leaked
        ],
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
        "galleries": [{**g.summary(), "low_res_faces": _low_res(g, cfg.low_res_face_px)} for g in galleries],
        "gallery_distance": {g: summary(v) for g, v in gdist.items()},
        "closest_gallery_matches": nearest[: cfg.report_pairs],
        "presence_rates": _presence_rates(records),
        "memorisation": {
            "identity_pairs_same_face": sorted(flagged.values(), key=lambda f: f["min_distance"]),
            "identity_pairs_centroid_within_same_person_threshold": len(coll["pairs"]),
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
        "detectors": {"presence": list(cfg.presence_detectors), "descriptor_boxes": list(cfg.descriptor_detectors)},
        "data_handling": DATA_HANDLING,
    }
    md = _markdown(data, files, title, no_gallery)
    return CardSection(title=title, markdown=md, data=data, files=files, json_name=REPORT_NAME)


def _low_res(g: Any, px: int) -> int:
    if not g.n_faces:
        return 0
    b = g.face_boxes
    return int((np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) < px).sum())


def _quarantined(r: dict[str, Any]) -> bool:
    return any(v.get("verdict") == "quarantine" for v in r.get("verdicts", []))


def _markdown(d: dict[str, Any], files: dict[str, bytes], title: str, no_gallery: bool) -> str:
    v = d["verdicts"]
    L: list[str] = []  # the card adds the "## title" heading
    if no_gallery:
        L.append("**No real gallery was configured: identity leakage was NOT checked.** "
                 "Presence, memorisation and consistency below still apply.")
        L.append("")
    L.append(f"{d['samples']} samples: " + ", ".join(f"{k} {v[k]}" for k in VERDICTS) + ".")
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
        L += ["**Leaked (quarantined, pixels redacted):**", "", "| sample | gallery file | distance | margin |", "|---|---|---|---|"]
        for x in d["leaked"][:50]:
            L.append(f"| `{x['key']}` | `{x['file']}` | {x['distance']:.3f} | {x['margin']:.3f} |")
        L.append("")
    m = d["memorisation"]
    L.append(f"Memorisation: {len(m['identity_pairs_same_face'])} pairs of different synthetic identities are the "
             f"same face (of {m['identities']} identities). Separation: "
             f"{m['identity_pairs_centroid_within_same_person_threshold']} identity pairs have centroids within dlib's "
             f"same-person threshold; nearest other identity (image level) "
             f"median {m['nearest_other_identity_image'].get('median', '-')}, min {m['nearest_other_identity_image'].get('min', '-')}.")
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
        L.append("Face presence (all samples): " + ", ".join(f"{k[5:]} {v:.1%}" for k, v in pr.items() if k.startswith("rate_")) + ".")
        worst = sorted(((val["rate_any"], axis, name) for axis, vals in d["presence_rates"].items() if axis != "all"
                        for name, val in vals.items()))[:3]
        if worst:
            L.append("Lowest presence by condition: " + ", ".join(f"{a}={n} {r:.1%}" for r, a, n in worst) + ".")
        L.append("")
    for f in sorted(files):
        L.append(f"![{Path(f).stem}]({f})")
    L += ["", f"Models: {json.dumps(d['models'])}", "", f"Data handling: {d['data_handling']}", ""]
    return "\n".join(L)
