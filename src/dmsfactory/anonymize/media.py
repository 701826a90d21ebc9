"""Inputs (images, folders, videos) and video writing for the anonymiser.

Videos are read and written with OpenCV's FFmpeg backend (no extra dependency). The output video
keeps the input's frame count and frame rate (``CAP_PROP_FPS``); frame times are recorded per frame
from ``CAP_PROP_POS_MSEC``. OpenCV writes a constant frame rate, so a variable-frame-rate source
comes out at its nominal rate (its per-frame times stay in the labels).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from dmsfactory.privacy.descriptors import IMAGE_EXTENSIONS, ImageError, load_image

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
LOSSLESS = {".mkv": "FFV1", ".avi": "FFV1"}
LOSSY = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".webm": "mp4v"}


class InputError(ValueError):
    """Bad input path or unreadable media; the message names the file."""

    user_error = True


@dataclass(frozen=True)
class Source:
    kind: str  # "image" | "video"
    path: Path
    rel: str  # path relative to the input root (posix)


def list_sources(inp: str | Path) -> list[Source]:
    p = Path(inp)
    if not p.exists():
        raise InputError(f"{p}: no such file or directory")
    if p.is_file():
        ext = p.suffix.lower()
        if ext in IMAGE_EXTENSIONS:
            return [Source("image", p, p.name)]
        if ext in VIDEO_EXTENSIONS:
            return [Source("video", p, p.name)]
        raise InputError(f"{p}: not an image ({', '.join(IMAGE_EXTENSIONS)}) or a video ({', '.join(VIDEO_EXTENSIONS)})")
    out = []
    for f in sorted(p.rglob("*")):
        if not f.is_file() or any(part.startswith(".") for part in f.relative_to(p).parts):
            continue
        ext = f.suffix.lower()
        kind = "image" if ext in IMAGE_EXTENSIONS else "video" if ext in VIDEO_EXTENSIONS else None
        if kind:
            out.append(Source(kind, f, f.relative_to(p).as_posix()))
    if not out:
        raise InputError(f"{p}: no images or videos found (looked for {', '.join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)})")
    return out


def safe_name(rel: str) -> str:
    """A webdataset-safe key stem (no dots: webdataset splits keys at the first dot)."""
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", rel)
    return s.strip("_") or "x"


def read_image(src: Source) -> np.ndarray:
    try:
        return load_image(src.path)
    except ImageError as e:
        raise InputError(str(e)) from None


@dataclass
class VideoInfo:
    fps: float
    width: int
    height: int
    frame_count_header: int


def video_info(path: Path) -> VideoInfo:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"{path}: OpenCV cannot open this video")
    info = VideoInfo(float(cap.get(cv2.CAP_PROP_FPS) or 0.0), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    cap.release()
    if info.fps <= 0:
        raise InputError(f"{path}: the video reports no frame rate")
    return info


def iter_video(path: Path) -> Iterator[tuple[int, float, np.ndarray]]:
    """(index, time in seconds, RGB frame) for every decodable frame."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"{path}: OpenCV cannot open this video")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 1.0
    i = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            ms = cap.get(cv2.CAP_PROP_POS_MSEC)
            t = ms / 1000.0 if ms and ms > 0 else i / fps
            yield i, t, np.ascontiguousarray(bgr[..., ::-1])
            i += 1
    finally:
        cap.release()


class VideoWriter:
    """Writes RGB frames; ``lossless`` picks FFV1 (in .mkv/.avi), else the container's usual codec."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], lossless: bool):
        ext = path.suffix.lower()
        codec = LOSSLESS.get(ext) if lossless else LOSSY.get(ext)
        if codec is None:
            raise InputError(f"{path}: no {'lossless ' if lossless else ''}codec for {ext} "
                             f"(lossless: {', '.join(LOSSLESS)}; lossy: {', '.join(LOSSY)})")
        self.path, self.codec, self.lossless = path, codec, lossless
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(path.stem + ".partial" + path.suffix)
        self._w = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*codec), float(fps), size)
        if not self._w.isOpened():
            raise InputError(f"{path}: OpenCV cannot write {codec} video here")
        self.count = 0

    def write(self, rgb: np.ndarray) -> None:
        self._w.write(np.ascontiguousarray(rgb[..., ::-1]))
        self.count += 1

    def commit(self) -> Path:
        import os

        self._w.release()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._w.release()
        if self.tmp.exists():
            self.tmp.unlink()


def output_video_path(rel: str, out_dir: Path, lossless: bool) -> Path:
    p = out_dir / rel
    if lossless and p.suffix.lower() not in LOSSLESS:
        p = p.with_suffix(".mkv")
    if not lossless and p.suffix.lower() not in LOSSY:
        p = p.with_suffix(".mp4")
    return p


def encode_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("cv2 failed to encode a png")
    return buf.tobytes()
