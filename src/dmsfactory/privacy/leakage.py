"""Identity leakage: nearest-neighbour search of output face descriptors against real galleries.

A **gallery** is a directory of real face images (searched recursively) or of webdataset shards
(``*.tar`` whose ``jpg``/``png`` members are images). Every face found in every gallery image gets a
128-d dlib descriptor (all faces of a photo, not just the largest). Unreadable and faceless files are
listed in ``Gallery.problems``, never fatal.

**Cache.** Descriptors are cached per gallery directory in ``cache_dir`` (an ``.npz``), keyed by the
directory and a *signature* (model file hashes + detector settings). Each file's entry carries its
sha256 (re-read only when size or mtime changed); a file whose content hash changed is recomputed, the
rest reused. ``Gallery.content_hash`` (sha256 over sorted ``path<TAB>sha256`` lines + signature) names
exactly what was compared against, and goes to the report.

**Search.** :class:`ExactIndex` is exact: squared distances ``|q|^2 + |x|^2 - 2 q.x`` in float32 over
blocks of ``chunk`` gallery rows, top-k per block merged, the winners' distances recomputed in float64.
200 queries against 10^5 faces is one 200x128 @ 128x10^5 product per block (see
``benchmarks/leakage.py``). Beyond ~10^6 faces use :class:`FaissIndex` (``index: faiss``):
``IndexFlatL2`` is the same exact search in FAISS; an approximate index (``IndexHNSWFlat``, or
``IndexIVFFlat`` trained on the gallery) trades a measured recall for speed and must then be validated
against the exact index on a sample, because a missed neighbour is a missed leak.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from dmsfactory.errors import UserError
from dmsfactory.privacy.analyze import FaceAnalyzer
from dmsfactory.privacy.descriptors import (
    DESCRIPTOR_DIM,
    IMAGE_EXTENSIONS,
    ImageError,
    load_image,
    model_versions,
    resolve_descriptor_backend,
)

CACHE_FORMAT = 1


class GalleryError(UserError, ValueError):
    """A gallery path is unusable (missing, not a directory, no images at all)."""


# ---------------------------------------------------------------- nearest-neighbour indexes
class ExactIndex:
    """Exact Euclidean k-NN over an (N, 128) matrix with blockwise matrix products."""

    def __init__(self, vectors: np.ndarray, chunk: int = 16384):
        self.x = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, DESCRIPTOR_DIM))
        self.xn = (self.x * self.x).sum(1)
        self.chunk = int(chunk)

    def __len__(self) -> int:
        return len(self.x)

    def search(self, queries: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """(distances (m, k) float64 ascending, indices (m, k)); missing neighbours are inf / -1."""
        q = np.ascontiguousarray(np.asarray(queries, np.float32).reshape(-1, DESCRIPTOR_DIM))
        m, n = len(q), len(self.x)
        kk = min(k, n)
        D = np.full((m, k), np.inf)
        I = np.full((m, k), -1, np.int64)
        if m == 0 or n == 0:
            return D, I
        qn = (q * q).sum(1)[:, None]
        r = np.arange(m)
        bestd = np.full((m, 0), np.inf, np.float32)
        besti = np.zeros((m, 0), np.int64)
        for s in range(0, n, self.chunk):
            xb = self.x[s : s + self.chunk]
            d2 = q @ xb.T
            d2 *= -2.0
            d2 += qn
            d2 += self.xn[None, s : s + self.chunk]
            kb = min(kk, d2.shape[1])
            if kb <= 4:  # k repeated argmins: O(m*n) each, far cheaper than argpartition here
                part = np.empty((m, kb), np.int64)
                got = np.empty((m, kb), np.float32)
                for j in range(kb):
                    a = d2.argmin(1)
                    part[:, j] = a
                    got[:, j] = d2[r, a]
                    d2[r, a] = np.inf  # d2 is this block's scratch matrix
            else:
                part = np.argpartition(d2, kb - 1, axis=1)[:, :kb]
                got = np.take_along_axis(d2, part, 1)
            bestd = np.concatenate([bestd, got], 1)
            besti = np.concatenate([besti, part + s], 1)
            if bestd.shape[1] > kk:
                sel = np.argsort(bestd, axis=1, kind="stable")[:, :kk]
                bestd = np.take_along_axis(bestd, sel, 1)
                besti = np.take_along_axis(besti, sel, 1)
        # exact float64 distances for the winners, then order
        diff = self.x[besti].astype(np.float64) - q.astype(np.float64)[:, None, :]
        exact = np.sqrt((diff * diff).sum(2))
        order = np.argsort(exact, 1, kind="stable")
        D[:, :kk] = np.take_along_axis(exact, order, 1)
        I[:, :kk] = np.take_along_axis(besti, order, 1)
        return D, I


class FaissIndex:
    """The same exact search on FAISS ``IndexFlatL2`` (``pip install faiss-cpu``); for >10^6 faces."""

    def __init__(self, vectors: np.ndarray, chunk: int = 0):
        try:
            import faiss  # type: ignore  # optional: faiss-cpu, not a dependency
        except ImportError:
            raise RuntimeError("privacy.index: 'faiss' needs the faiss-cpu package (pip install faiss-cpu)") from None
        self.x = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, DESCRIPTOR_DIM))
        self.index = faiss.IndexFlatL2(DESCRIPTOR_DIM)
        self.index.add(self.x)

    def __len__(self) -> int:
        return len(self.x)

    def search(self, queries: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.asarray(queries, np.float32).reshape(-1, DESCRIPTOR_DIM))
        if len(self.x) == 0 or len(q) == 0:
            return np.full((len(q), k), np.inf), np.full((len(q), k), -1, np.int64)
        d2, idx = self.index.search(q, k)
        d = np.where(idx >= 0, np.sqrt(np.maximum(d2.astype(np.float64), 0)), np.inf)
        return d, idx.astype(np.int64)


def make_index(vectors: np.ndarray, kind: str = "exact", chunk: int = 16384):
    return FaissIndex(vectors) if kind == "faiss" else ExactIndex(vectors, chunk)


# ---------------------------------------------------------------- gallery sources
def _iter_gallery_files(root: Path) -> tuple[list[Path], list[Path]]:
    images, tars = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            low = fn.lower()
            if low.endswith(".tar"):
                tars.append(p)
            elif low.endswith(IMAGE_EXTENSIONS):
                images.append(p)
    return images, tars


def iter_tar_images(tar_path: Path) -> Iterator[tuple[str, bytes | None, str | None]]:
    """(member name, bytes or None, error or None) for each image member of a tar shard."""
    try:
        with tarfile.open(tar_path) as tf:
            for m in tf:
                if not m.isfile() or not m.name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                f = tf.extractfile(m)
                yield m.name, (f.read() if f else None), None if f else "unreadable member"
    except (tarfile.TarError, OSError) as e:
        yield "", None, f"unreadable shard ({e})"


@dataclass
class Gallery:
    """Descriptors of every face in one real gallery."""

    path: str  # as configured
    root: Path
    content_hash: str
    descriptors: np.ndarray  # (N, 128) float32
    face_refs: list[str]  # per face: gallery file (relative path; "shard.tar:member" for shards)
    face_boxes: np.ndarray  # (N, 4) in original-image pixels
    n_files: int
    problems: list[dict[str, str]] = field(default_factory=list)  # {"file", "problem"}
    cache_path: str | None = None
    reused: int = 0  # files whose descriptors came from the cache
    computed: int = 0

    @property
    def n_faces(self) -> int:
        return len(self.descriptors)

    def summary_with_low_res(self, low_res_face_px: int) -> dict[str, Any]:
        """:meth:`summary` plus the number of faces below ``low_res_face_px`` (the report's gallery row)."""
        b = self.face_boxes
        low = int((np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) < low_res_face_px).sum()) if self.n_faces else 0
        return {**self.summary(), "low_res_faces": low}

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "content_hash": self.content_hash,
            "files": self.n_files,
            "faces": self.n_faces,
            "problems": self.problems,
            "cache": {"path": self.cache_path, "reused_files": self.reused, "computed_files": self.computed},
        }


def _signature(cfg: Any) -> str:
    sig = {
        "format": CACHE_FORMAT,
        "models": model_versions(),
        "descriptor_detectors": list(cfg.descriptor_detectors),
        "descriptor_backend": resolve_descriptor_backend(getattr(cfg, "descriptor_backend", "auto")),
        "hog_upsample": cfg.hog_upsample,
        "hog_min_score": cfg.hog_min_score,
        "max_image_side": cfg.max_image_side,
        "mediapipe_min_confidence": cfg.mediapipe_min_confidence,
    }
    return hashlib.sha256(json.dumps(sig, sort_keys=True).encode()).hexdigest()


def load_gallery(
    path: str | Path,
    analyzer: Any,
    cfg: Any,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Gallery:
    """Describe every face in a gallery directory, reusing the descriptor cache where content is unchanged."""
    root = Path(path).expanduser()
    if not root.exists():
        raise GalleryError(f"gallery {str(path)!r} does not exist")
    if not root.is_dir():
        raise GalleryError(f"gallery {str(path)!r} is not a directory (give a directory of images or shards)")
    root = root.resolve()
    images, tars = _iter_gallery_files(root)
    if not images and not tars:
        raise GalleryError(f"gallery {str(path)!r} contains no images ({', '.join(IMAGE_EXTENSIONS)}) or .tar shards")
    sig = _signature(cfg)
    cache_path = None
    old: dict[str, dict[str, Any]] = {}
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(f"{root}\n{sig}".encode()).hexdigest()[:20]
        cache_path = cache_dir / f"gallery-{key}.npz"
        old = _read_cache(cache_path)

    entries: dict[str, dict[str, Any]] = {}  # ref -> {sha, size, mtime, desc (k,128), boxes (k,4), problem}
    reused = computed = 0

    def describe(ref: str, data: bytes) -> dict[str, Any]:
        try:
            img = load_image(data, name=ref)
        except ImageError as e:
            return {"desc": np.zeros((0, DESCRIPTOR_DIM), np.float32), "boxes": np.zeros((0, 4)), "problem": str(e)}
        try:
            a = analyzer.analyze(img, name=ref, presence=False, hash_=False)
        except ImageError as e:
            return {"desc": np.zeros((0, DESCRIPTOR_DIM), np.float32), "boxes": np.zeros((0, 4)), "problem": str(e)}
        if not a.faces:
            return {"desc": np.zeros((0, DESCRIPTOR_DIM), np.float32), "boxes": np.zeros((0, 4)), "problem": "no face found"}
        return {
            "desc": np.stack([f.descriptor for f in a.faces]).astype(np.float32),
            "boxes": np.array([f.box for f in a.faces], np.float64),
            "problem": "",
        }

    total = len(images) + len(tars)
    done = 0
    for p in images:
        ref = p.relative_to(root).as_posix()
        try:
            st = p.stat()
            prev = old.get(ref)
            if prev and prev["size"] == st.st_size and prev["mtime"] == st.st_mtime_ns:
                entries[ref] = prev
                reused += 1
            else:
                data = p.read_bytes()
                sha = hashlib.sha256(data).hexdigest()
                if prev and prev["sha"] == sha:
                    entries[ref] = {**prev, "size": st.st_size, "mtime": st.st_mtime_ns}
                    reused += 1
                else:
                    entries[ref] = {"sha": sha, "size": st.st_size, "mtime": st.st_mtime_ns, **describe(ref, data)}
                    computed += 1
        except OSError as e:
            entries[ref] = {
                "sha": "", "size": -1, "mtime": -1, "desc": np.zeros((0, DESCRIPTOR_DIM), np.float32),
                "boxes": np.zeros((0, 4)), "problem": f"cannot read ({e.strerror or e})",
            }
        done += 1
        if progress:
            progress(done, total)
    for t in tars:
        tref = t.relative_to(root).as_posix()
        for member, data, err in iter_tar_images(t):
            ref = f"{tref}:{member}" if member else tref
            if data is None:
                entries[ref] = {"sha": "", "size": -1, "mtime": -1, "desc": np.zeros((0, DESCRIPTOR_DIM), np.float32),
                                "boxes": np.zeros((0, 4)), "problem": err or "unreadable"}
                continue
            sha = hashlib.sha256(data).hexdigest()
            prev = old.get(ref)
            if prev and prev["sha"] == sha:
                entries[ref] = prev
                reused += 1
            else:
                entries[ref] = {"sha": sha, "size": len(data), "mtime": -1, **describe(ref, data)}
                computed += 1
        done += 1
        if progress:
            progress(done, total)

    refs = sorted(entries)
    h = hashlib.sha256(sig.encode())
    for r in refs:
        h.update(f"{r}\t{entries[r]['sha']}\n".encode())
    descs = [entries[r]["desc"] for r in refs]
    face_refs = [r for r in refs for _ in range(len(entries[r]["desc"]))]
    g = Gallery(
        path=str(path),
        root=root,
        content_hash=h.hexdigest(),
        descriptors=np.concatenate(descs).astype(np.float32) if descs else np.zeros((0, DESCRIPTOR_DIM), np.float32),
        face_refs=face_refs,
        face_boxes=np.concatenate([np.asarray(entries[r]["boxes"], np.float64).reshape(-1, 4) for r in refs])
        if refs
        else np.zeros((0, 4)),
        n_files=len(refs),
        problems=[{"file": r, "problem": entries[r]["problem"]} for r in refs if entries[r]["problem"]],
        cache_path=str(cache_path) if cache_path else None,
        reused=reused,
        computed=computed,
    )
    if cache_path is not None and (computed or set(old) != set(entries)):
        _write_cache(cache_path, entries)
    return g


def _read_cache(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            desc = z["desc"]
            boxes = z["boxes"]
        if meta.get("format") != CACHE_FORMAT:
            return {}
        out = {}
        for ref, e in meta["files"].items():
            a, b = e["rows"]
            out[ref] = {"sha": e["sha"], "size": e["size"], "mtime": e["mtime"], "problem": e["problem"],
                        "desc": desc[a:b].astype(np.float32), "boxes": boxes[a:b]}
        return out
    except Exception:  # a corrupt cache is recomputed, never trusted
        return {}


def _write_cache(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    files, descs, boxes, row = {}, [], [], 0
    for ref in sorted(entries):
        e = entries[ref]
        k = len(e["desc"])
        files[ref] = {"sha": e["sha"], "size": e["size"], "mtime": e["mtime"], "problem": e["problem"], "rows": [row, row + k]}
        descs.append(np.asarray(e["desc"], np.float32).reshape(-1, DESCRIPTOR_DIM))
        boxes.append(np.asarray(e["boxes"], np.float64).reshape(-1, 4))
        row += k
    meta = json.dumps({"format": CACHE_FORMAT, "files": files}).encode()
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(f, meta=np.frombuffer(meta, np.uint8), desc=np.concatenate(descs) if descs else np.zeros((0, DESCRIPTOR_DIM), np.float32),
                 boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4)))
    os.replace(tmp, path)


# ---------------------------------------------------------------- matching
@dataclass
class Match:
    gallery: str
    file: str
    distance: float
    margin: float  # threshold used - distance (> 0: inside the same-person region => leaked)
    second_distance: float  # next-nearest face of the same gallery tier (inf when none)
    leaked: bool
    threshold: float = 0.6
    low_res: bool = False  # matched face is a low-resolution gallery face (its own threshold)
    nearest_distance: float = float("inf")  # nearest gallery face of any tier (for distributions)
    tier_distances: dict[str, float] = field(default_factory=dict)  # "sharp" / "low_res" -> nearest distance

    def as_dict(self) -> dict[str, Any]:
        return {
            "gallery": self.gallery,
            "file": self.file,
            "distance": round(self.distance, 4),
            "margin": round(self.margin, 4),
            "second_distance": round(self.second_distance, 4) if np.isfinite(self.second_distance) else None,
            "leaked": self.leaked,
            "match_threshold": self.threshold,
            "low_res_gallery_face": self.low_res,
        }


class GallerySearch:
    """All configured galleries, each split into a normal and a low-resolution tier with its own threshold.

    A query leaks when *any* gallery face lies within its tier's threshold; the reported match is the
    one with the largest margin (threshold - distance), so a sharp face at 0.55 (threshold 0.6) is not
    hidden behind a nearer thumbnail at 0.45 (threshold 0.4).
    """

    def __init__(
        self,
        galleries: list[Gallery],
        threshold: float,
        index: str = "exact",
        chunk: int = 16384,
        low_res_face_px: int = 0,
        low_res_threshold: float | None = None,
    ):
        self.galleries = galleries
        self.threshold = float(threshold)
        self.low_thr = float(low_res_threshold) if low_res_threshold is not None else self.threshold
        self.tiers: list[list[tuple[np.ndarray, Any, float, bool]]] = []
        for g in galleries:
            px = np.minimum(g.face_boxes[:, 2] - g.face_boxes[:, 0], g.face_boxes[:, 3] - g.face_boxes[:, 1]) if g.n_faces else np.zeros(0)
            low = px < low_res_face_px
            tiers = []
            for mask, thr, is_low in ((~low, self.threshold, False), (low, self.low_thr, True)):
                rows = np.nonzero(mask)[0]
                if len(rows):
                    tiers.append((rows, make_index(g.descriptors[rows], index, chunk), thr, is_low))
            self.tiers.append(tiers)

    def low_res_faces(self, gi: int) -> int:
        return int(sum(len(rows) for rows, _, _, low in self.tiers[gi] if low))

    def nearest(self, descriptors: np.ndarray) -> list[list[Match]]:
        """Per query descriptor: the best match (largest margin) of each gallery with faces."""
        q = np.asarray(descriptors, np.float32).reshape(-1, DESCRIPTOR_DIM)
        out: list[list[Match]] = [[] for _ in range(len(q))]
        for g, tiers in zip(self.galleries, self.tiers):
            if not tiers:
                continue
            res = [(rows, idx.search(q, 2), thr, low) for rows, idx, thr, low in tiers]
            for r in range(len(q)):
                best = None
                nearest = min(float(D[r, 0]) for _, (D, _), _, _ in res)
                tiers = {("low_res" if low else "sharp"): float(D[r, 0]) for _, (D, _), _, low in res}
                for rows, (D, I), thr, low in res:
                    d = float(D[r, 0])
                    m = Match(g.path, g.face_refs[int(rows[I[r, 0]])], d, thr - d, float(D[r, 1]), d < thr, thr, low, nearest, tiers)
                    if best is None or m.margin > best.margin:
                        best = m
                out[r].append(best)
        return out

    def closest(self, descriptors_per_item: list[np.ndarray]) -> list[Match | None]:
        """Per item (an image with any number of faces): its best match (largest margin) over faces and galleries."""
        flat = [d for ds in descriptors_per_item for d in ds]
        owner = [i for i, ds in enumerate(descriptors_per_item) for _ in ds]
        res: list[Match | None] = [None] * len(descriptors_per_item)
        if not flat:
            return res
        for o, ms in zip(owner, self.nearest(np.stack(flat))):
            for m in ms:
                if res[o] is None or m.margin > res[o].margin:
                    res[o] = m
        return res


class _LazyAnalyzer:
    """A FaceAnalyzer made on first use: reading a gallery whose cache is current loads no model."""

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self._a = None

    def analyze(self, *args: Any, **kw: Any):
        if self._a is None:
            self._a = FaceAnalyzer(self.cfg)
            self._a.setup()
        return self._a.analyze(*args, **kw)


def gallery_summaries(cfg: Any) -> list[dict[str, Any]]:
    """The report's row of every configured gallery (:meth:`Gallery.summary_with_low_res`), read from
    the descriptor cache; models are loaded only when a gallery file changed since it was described."""
    if not cfg.enabled:
        return []
    an = _LazyAnalyzer(cfg)
    out = []
    for g in cfg.galleries:
        gal = load_gallery(g, an, cfg, cfg.resolved_cache_dir())
        out.append(gal.summary_with_low_res(cfg.low_res_face_px))
    return out
