"""A small *real* face gallery from photos that ship inside PyPI packages, for demos and tests.

scikit-image ``data.astronaut()`` (Eileen Collins, NASA, public domain), the face half of
``data.lfw_subset()`` (100 LFW faces, 25x25) and matplotlib's ``grace_hopper.jpg``. These are real
people: use them only as a leakage *gallery*, never as generator input.

    python -m dmsfactory.privacy.testgallery out/real-gallery
"""

from __future__ import annotations

import sys
from pathlib import Path


def write_reference_gallery(out_dir: str | Path, lfw_faces: int = 100) -> Path:
    """Write the reference photos to ``out_dir`` (idempotent: identical bytes each time); returns it."""
    import cv2
    import matplotlib.cbook as cb  # heavy: matplotlib (its bundled sample photos)
    import numpy as np
    from skimage import data

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def put(name: str, blob: bytes) -> None:
        p = out / name
        if not p.exists() or p.read_bytes() != blob:
            p.write_bytes(blob)

    put("astronaut.png", cv2.imencode(".png", data.astronaut()[..., ::-1])[1].tobytes())
    with cb.get_sample_data("grace_hopper.jpg") as f:
        put("grace_hopper.jpg", f.read())
    lfw = (data.lfw_subset()[: max(0, min(lfw_faces, 100))] * 255).round().astype(np.uint8)
    (out / "lfw").mkdir(exist_ok=True)
    for i, face in enumerate(lfw):
        put(f"lfw/lfw_{i:03d}.png", cv2.imencode(".png", face)[1].tobytes())
    return out


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 2:
        print("usage: python -m dmsfactory.privacy.testgallery OUT_DIR", file=sys.stderr)
        sys.exit(2)
    print(write_reference_gallery(sys.argv[1]))
