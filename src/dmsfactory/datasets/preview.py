"""Contact sheets: a grid of one split's images with landmarks drawn and labels under each tile.

``dmsfactory preview DIR [--split val] [--n 64]`` writes ``DIR/card/preview-<split>.png`` (or
``--out``); the dataset card links the sheets it finds. ``--split quarantine`` shows quarantined
images with the check that quarantined them.

Which images: shards are read in order until ``n`` identities are in hand (:func:`candidates`; a
large split is never read whole), then the first image of each identity is taken, then the second of
each, ... - a sheet shows as many identities as it can, deterministically. Each tile: the image at ``tile``
pixels with the 478 landmarks (green visible, red occluded), iris centres (cyan rings) and the face
box (orange); under it the key's tail and split, class and KSS, lighting and accessory, head yaw /
pitch (car frame) and eye openness (left/right), and ``aug`` for an augmented view.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from dmsfactory.datasets.reader import load_doc, shard_paths
from dmsfactory.datasets.shards import decode_image, iter_tar_groups

SPLITS = ("train", "val", "test", "quarantine")
FONT = cv2.FONT_HERSHEY_SIMPLEX
BG = (40, 40, 40)


def _docs(paths: list[Path]) -> Iterator[tuple[dict[str, Any], bytes | None]]:
    """(json doc, encoded image) per sample, shard after shard in written order, without decoding
    images: the order of :func:`~dmsfactory.datasets.reader.iter_raw_split`, which feeds
    :class:`Candidates` in ``finalize``."""
    for p in paths:
        for _key, parts in iter_tar_groups(p):
            if "json" in parts:
                yield load_doc(parts["json"]), parts.get("jpg") or parts.get("png")


class Candidates:
    """The rule of :func:`candidates`, fed one sample at a time in reading order (``add``): samples are
    taken until ``n`` identities are in hand or ``cap`` samples (default ``50 x n``) are read, then
    ``add`` ignores the rest. ``finalize`` fills one per contact sheet and one for the sample grid
    during its single pass over the shards.

    ``samples`` holds only what :func:`pick` could still choose: an identity's image at depth ``d``
    (its ``d``-th, from 0) is dropped when the identities read so far already hold ``n`` images at
    depths below ``d`` (``sum(min(count, d)) >= n``); counts only grow, so ``pick`` fills its ``n``
    before reaching depth ``d`` and ``pick(samples, n)`` is ``pick`` of everything read."""

    def __init__(self, n: int, cap: int | None = None) -> None:
        self.n = n
        self.cap = cap or 50 * n
        self.samples: list[tuple[dict[str, Any], bytes]] = []
        self.read = 0  # samples taken (with an image), kept or dropped
        self.seen: dict[Any, int] = {}  # identity -> images taken, in first-seen order
        self.full = False

    def add(self, doc: dict[str, Any], raw: bytes | None) -> bool:
        """Take one sample; True once the bound is reached (nothing more is taken)."""
        if self.full or raw is None:
            return self.full
        ident = doc.get("identity")
        depth = self.seen.get(ident, 0)
        if depth == 0 or sum(min(c, depth) for c in self.seen.values()) < self.n:
            self.samples.append((doc, raw))
        self.seen[ident] = depth + 1
        self.read += 1
        self.full = len(self.seen) >= self.n or self.read >= self.cap
        return self.full

    def pick(self) -> list[tuple[dict[str, Any], bytes]]:
        return pick(self.samples, self.n)


def candidates(paths: list[Path], n: int, cap: int | None = None) -> list[tuple[dict[str, Any], bytes]]:
    """Samples in reading order until ``n`` identities are in hand (then the first image of each fills a
    sheet of ``n``) or ``cap`` samples (default ``50 x n``) are read: a large split is never read whole.
    Images :func:`pick` cannot choose are left out (:class:`Candidates`)."""
    c = Candidates(n, cap)
    for doc, raw in _docs(paths):
        if c.add(doc, raw):
            break
    return c.samples


def pick(docs: list[tuple[dict[str, Any], Any]], n: int) -> list[tuple[dict[str, Any], Any]]:
    """Round-robin over identities (first image of each, then the second, ...), in reading order."""
    by_id: dict[Any, list] = {}
    for d in docs:
        by_id.setdefault(d[0].get("identity"), []).append(d)
    out: list = []
    depth = 0
    while len(out) < n and any(depth < len(v) for v in by_id.values()):
        for v in by_id.values():
            if depth < len(v) and len(out) < n:
                out.append(v[depth])
        depth += 1
    return out


def _fmt(x: Any, nd: int = 0) -> str:
    return "-" if not isinstance(x, (int, float)) else f"{x:.{nd}f}"


def tile_lines(doc: dict[str, Any]) -> list[str]:
    """The text under a tile (ASCII: OpenCV's Hershey fonts have no other glyphs)."""
    lab = doc.get("labels") or {}
    p = doc.get("params") or {}
    cls = lab.get("class") or p.get("class") or "?"
    kss = lab.get("kss", p.get("kss"))
    hp = lab.get("head_pose_car") or p.get("head_pose_car") or {}
    eyes = lab.get("eyes") or {}
    eo = "/".join(_fmt((eyes.get(s) or {}).get("openness"), 2) for s in ("left", "right"))
    key = str(doc.get("key", ""))
    tail = key.split("-", 1)[-1] if "-" in key else key
    lines = [
        f"{tail} {doc.get('split') or ''}".strip(),
        f"{cls}" + (f" KSS {kss}" if kss is not None else ""),
        f"{lab.get('lighting') or p.get('lighting') or '-'}, {lab.get('accessory') or p.get('accessory') or '-'}",
        f"head yaw {_fmt(hp.get('yaw'))} pitch {_fmt(hp.get('pitch'))}",
        f"eyes L/R {eo}",
    ]
    if doc.get("source_key"):
        ops = [a.get("op") for a in doc.get("aug", []) if a.get("stage") == "augment" and a.get("op") not in ("view", "skipped", "notes")]
        lines.append("aug: " + (" ".join(ops[:2]) + (f" +{len(ops) - 2}" if len(ops) > 2 else "") if ops else "none"))
    q = [v for v in doc.get("verdicts", []) if v.get("verdict") == "quarantine"]
    if q:
        lines.append(f"QUARANTINED {q[0].get('stage')}/{q[0].get('check') or ''}")
    return lines


def draw_tile(img: np.ndarray, doc: dict[str, Any], tile: int) -> np.ndarray:
    """``img`` scaled to ``tile`` x ``tile`` with the landmarks, iris centres and face box drawn."""
    h, w = img.shape[:2]
    out = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA if max(h, w) > tile else cv2.INTER_LINEAR)
    sx, sy = tile / w, tile / h
    lm = doc.get("landmarks")
    if lm and lm.get("xy"):
        xy = np.asarray(lm["xy"], np.float64) * [sx, sy]
        vis = np.asarray(lm.get("visible", [True] * len(xy)), bool)
        k = min(len(xy), len(vis))
        if not np.isfinite(xy[:k]).all():
            raise ValueError(f"{doc.get('key')}: landmarks.xy holds a non-finite value")
        px = np.clip(np.rint(xy[:k]), 0, tile - 1).astype(np.intp)  # rint: round half to even, as round()
        # one pixel per landmark, a later landmark over an earlier one on the same pixel
        _, last = np.unique((px[:, 1] * tile + px[:, 0])[::-1], return_index=True)
        keep = k - 1 - last
        out[px[keep, 1], px[keep, 0]] = np.where(vis[keep, None], np.uint8([0, 255, 0]), np.uint8([255, 0, 0]))
        for c in (468, 473):
            if c < len(xy):
                cv2.circle(out, (int(round(xy[c, 0])), int(round(xy[c, 1]))), max(2, tile // 64), (0, 255, 255), 1, cv2.LINE_AA)
    if doc.get("bbox"):
        x0, y0, x1, y1 = doc["bbox"]
        cv2.rectangle(out, (int(round(x0 * sx)), int(round(y0 * sy))), (int(round(x1 * sx)), int(round(y1 * sy))),
                      (255, 160, 0), 1)
    return out


def _caption(lines: list[str], width: int, n_lines: int) -> np.ndarray:
    scale, lh = 0.36, 13
    band = np.full((n_lines * lh + 6, width, 3), BG, np.uint8)
    for i, text in enumerate(lines[:n_lines]):
        while text and cv2.getTextSize(text, FONT, scale, 1)[0][0] > width - 6:
            text = text[:-1]
        cv2.putText(band, text, (3, 11 + i * lh), FONT, scale, (235, 235, 235), 1, cv2.LINE_AA)
    return band


def contact_sheet(
    dataset_dir: str | Path,
    split: str = "train",
    n: int = 64,
    out: str | Path | None = None,
    tile: int = 160,
    cols: int | None = None,
) -> dict[str, Any]:
    """Write the contact sheet of ``split`` (train, val, test or quarantine); returns its path and counts."""
    if split not in SPLITS:
        raise ValueError(f"--split: {split!r} is not one of {', '.join(SPLITS)}")
    if n <= 0:
        raise ValueError(f"--n: must be a positive number of images (got {n})")
    d = Path(dataset_dir)
    paths = shard_paths(d, quarantine=True) if split == "quarantine" else shard_paths(d, split)
    if not paths:
        try:
            c = json.loads((d / "manifest.json").read_text())["counts"]
        except (OSError, ValueError, KeyError):
            raise FileNotFoundError(f"no '{split}' shards in {d} (is it a dmsfactory dataset? `dmsfactory run` makes one)") from None
        have = ", ".join(f"{k} {c.get(k, 0)}" for k in ("train", "val", "test", "quarantined"))
        raise FileNotFoundError(f"{d} has no '{split}' images (images per split: {have})")
    return write_sheet(d, split, pick(candidates(paths, n), n), out, tile, cols)


def write_sheet(
    dataset_dir: str | Path,
    split: str,
    chosen: list[tuple[dict[str, Any], bytes]],
    out: str | Path | None = None,
    tile: int = 160,
    cols: int | None = None,
) -> dict[str, Any]:
    """Draw the contact sheet of the ``chosen`` (doc, encoded image) samples of ``split`` (picked by
    :func:`pick`; :func:`contact_sheet` reads them, ``finalize`` collects them in its one pass)."""
    d = Path(dataset_dir)
    if not chosen:
        raise FileNotFoundError(f"the '{split}' shards of {d} hold no images")
    texts = [tile_lines(doc) for doc, _ in chosen]
    n_lines = max(len(t) for t in texts)
    tiles = []
    for (doc, raw), text in zip(chosen, texts):
        img = decode_image(raw)
        tiles.append(np.concatenate([draw_tile(img, doc, tile), _caption(text, tile, n_lines)], axis=0))
    cols = cols or min(8, len(tiles))
    gap = 4
    th, tw = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    name = _dataset_name(d)
    n_ids = len({doc.get("identity") for doc, _ in chosen})
    title = (f"{name}: split {split}, {len(tiles)} image{'s' if len(tiles) != 1 else ''} from {n_ids} "
             f"identit{'ies' if n_ids != 1 else 'y'} "
             f"(landmarks green visible / red occluded, cyan iris centres, orange face box)")
    head = 26
    sheet = np.full((head + rows * (th + gap) + gap, cols * (tw + gap) + gap, 3), (25, 25, 25), np.uint8)
    scale = 0.5
    while cv2.getTextSize(title, FONT, scale, 1)[0][0] > sheet.shape[1] - 10 and scale > 0.3:
        scale -= 0.02
    cv2.putText(sheet, title, (6, 18), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = head + r * (th + gap), gap + c * (tw + gap)
        sheet[y : y + th, x : x + tw] = t
    path = Path(out) if out is not None else d / "card" / f"preview-{split}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    return {"path": str(path), "images": len(tiles), "identities": n_ids, "split": split}


def _dataset_name(d: Path) -> str:
    try:
        return json.loads((d / "manifest.json").read_text()).get("name") or d.name
    except (OSError, ValueError):
        return d.name
