"""Turn a public labelled checkout into the real-folder layout of ``dmsfactory transfer``.

    python scripts/convert_real.py eye-state  /work/real/purnenduvashistha+Eye-State-Detection  /work/realfmt/eyes
    python scripts/convert_real.py yawn       /work/real/Muneeb-Ahmed-Khan+Yawn-Detection       /work/realfmt/yawn
    python scripts/convert_real.py keypoints  /work/real/alexandrenpl+P1_Facial_Keypoints       /work/realfmt/keypoints-dev
    python scripts/convert_real.py keypoints  /work/real/alexandrenpl+P1_Facial_Keypoints       /work/realfmt/keypoints-test --split test
    python scripts/convert_real.py cew        /work/real/altaga+DBSE-monitor                     /work/realfmt/cew

Sources (docs/transfer.md, "Development sets"): their images are research-use data; the output
folder must lie outside this repository (the script refuses otherwise) and is never committed.
Images are linked (symlinks; ``--copy`` copies), never re-encoded.

* ``eye-state``: ``originalData/{Open,Closed}`` -> ``eye_crops/{open,closed}`` (pre-cropped single eyes).
  No identities are known: the report's folds are record-level for this set.
* ``yawn``: ``dataset_noisy/{yawn,no-yawn}`` (YawDD frames) -> ``yawn/{yawn,no_yawn}`` plus
  ``yawn/identities.csv``. The frames come from videos of a few dozen drivers and carry no ids;
  consecutive frames of one driver are near-duplicates, so record-level folds would leak. Identities
  are recovered by clustering dlib face descriptors (128-d ResNet, 5-point alignment, boxes from
  MediaPipe face mesh: privacy/descriptors.py) with average linkage at distance 0.5 (dlib's
  same-person threshold is 0.6); a frame without a face is its own identity.
* ``keypoints``: ``data/{training,test}`` + ``data/{training,test}_frames_keypoints.csv`` ->
  ``faces/images`` + ``faces/labels.csv`` (file, identity = the file name without its frame
  number, x0..y67). Only images listed in the CSV are used.
* ``cew``: Closed Eyes in the Wild (Song et al., Pattern Recognition 2014), 24 x 24 grey eye patches, as
  the zip ``Drowsiness/train/dataset/dataset_B_Eye_Images.zip`` holds them ->
  ``eye_crops/{open,closed}`` (left and right eyes of each face, bytes as in the zip) plus
  ``eye_crops/identities.csv``: an open eye's identity is the Labeled Faces in the Wild person its file
  is named after (``Aaron_Guiel_0001_L.jpg`` -> ``Aaron_Guiel``), a closed eye's the web photo it was
  cut from (``closed_eye_0012.jpg_face_1_L.jpg`` -> ``closed_eye_0012``): both eyes of a face, and
  every photo of a person, stay in one fold.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

SOURCES = {
    "eye-state": ("purnenduvashistha/Eye-State-Detection", "4f8af40", "no licence file in the repository: research use only"),
    "yawn": ("Muneeb-Ahmed-Khan/Yawn-Detection", "a00d658", "frames of the YawDD dataset (Abtahi et al. 2014, research use "
             "under the YawDD terms); no licence file in the repository"),
    "keypoints": ("alexandrenpl/P1_Facial_Keypoints", "4dd79c5", "Udacity project, MIT for the code; the images are "
                  "YouTube Faces frames (Wolf et al. 2011), research use"),
    "cew": ("altaga/DBSE-monitor", "18cda42", "the repository is MIT for its code; the zip is the CEW dataset (Song, "
            "Tan, Liu, Chen, Pattern Recognition 2014; open eyes from Labeled Faces in the Wild), redistributed "
            "without its own licence: research use only"),
}


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _check_out(out: Path) -> None:
    root = _repo_root()
    o = out.resolve()
    if o == root or root in o.parents:
        sys.exit(f"error: {out} is inside the repository {root}; write real data outside it (e.g. /work/realfmt/...)")
    if o.exists() and any(o.iterdir()):
        sys.exit(f"error: {out} exists and is not empty; remove it or choose another folder")


def _place(src: Path, dst: Path, copy: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copy2(src, dst)
    else:
        os.symlink(src.resolve(), dst)


def _source_note(out: Path, kind: str, src: Path, extra: str = "") -> None:
    repo, commit, lic = SOURCES[kind]
    (out / "SOURCE.md").write_text(
        f"Converted by dmsfactory scripts/convert_real.py ({kind}) from {src}\n\n"
        f"- repository: github.com/{repo}, commit {commit}\n- licence: {lic}\n"
        f"- never commit these images or crops of them\n{extra}")


def _images(d: Path) -> list[Path]:
    exts = (".jpg", ".jpeg", ".png", ".bmp")
    return sorted((p for p in d.iterdir() if p.suffix.lower() in exts), key=lambda p: p.name)


def eye_state(src: Path, out: Path, copy: bool) -> None:
    base = src / "originalData"
    n = 0
    for a, b in (("Open", "open"), ("Closed", "closed")):
        d = base / a
        if not d.is_dir():
            sys.exit(f"error: {d} not found (expected originalData/Open and originalData/Closed)")
        for f in _images(d):
            _place(f, out / "eye_crops" / b / f.name, copy)
            n += 1
    _source_note(out, "eye-state", src)
    print(f"{out}: eye_crops/ with {n} images")


CEW_ZIP = "Drowsiness/train/dataset/dataset_B_Eye_Images.zip"
CEW_FOLDERS = {"openLeftEyes": "open", "openRightEyes": "open", "closedLeftEyes": "closed", "closedRightEyes": "closed"}


def cew_identity(name: str) -> str:
    """The person (open eyes: the LFW name) or the photo (closed eyes) an eye patch comes from."""
    m = re.match(r"(closed_eye_\d+)\.", name) or re.match(r"(.+)_\d{4}_[LR]\.jpg$", name)
    if m is None:
        sys.exit(f"error: {name}: not a CEW eye-patch name (closed_eye_NNNN.jpg_face_K_L.jpg or Person_Name_NNNN_L.jpg)")
    return m.group(1)


def cew(src: Path, out: Path) -> None:
    z = src / CEW_ZIP
    if not z.is_file():
        sys.exit(f"error: {z} not found (expected the CEW zip at {CEW_ZIP} of the checkout)")
    rows = []
    with zipfile.ZipFile(z) as zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            parts = info.filename.split("/")
            if info.is_dir() or len(parts) != 3 or parts[1] not in CEW_FOLDERS:
                continue
            cls, name = CEW_FOLDERS[parts[1]], parts[2]
            dst = out / "eye_crops" / cls / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(zf.read(info))
            rows.append((f"{cls}/{name}", cew_identity(name)))
    if not rows:
        sys.exit(f"error: {z}: no images under {', '.join(CEW_FOLDERS)}")
    with (out / "eye_crops" / "identities.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "identity"])
        w.writerows(rows)
    n_id = len({i for _, i in rows})
    _source_note(out, "cew", src, f"- eye_crops/identities.csv: {n_id} identities (LFW persons for open eyes, source "
                 "photos for closed eyes)\n")
    print(f"{out}: eye_crops/ with {len(rows)} images, {n_id} identities")


def _cluster_identities(files: list[Path]) -> list[str]:
    import numpy as np
    from scipy.cluster.hierarchy import fcluster, linkage

    from dmsfactory.labelers.config import VerifyConfig
    from dmsfactory.labelers.verify import VerifyStage
    from dmsfactory.privacy.descriptors import FaceDescriber, load_image, mediapipe_box_to_hog

    mesh = VerifyStage(VerifyConfig(enabled=True))
    desc = FaceDescriber(detectors=("mediapipe",))
    vecs, has = [], []
    for i, f in enumerate(files):
        if (i + 1) % 100 == 0:
            print(f"  descriptors: {i + 1}/{len(files)}", file=sys.stderr)
        img = load_image(f)
        p = mesh.detect(img)
        if p is None:
            has.append(False)
            continue
        x0, y0 = p[:468].min(0)
        x1, y1 = p[:468].max(0)
        box = mediapipe_box_to_hog((x0, y0, x1, y1), [p[468], p[473]])
        vecs.append(desc.describe_box(img, box))
        has.append(True)
    labels = ["" for _ in files]
    if vecs:
        z = linkage(np.stack(vecs).astype(np.float64), method="average", metric="euclidean")
        cl = fcluster(z, t=0.5, criterion="distance")
        it = iter(cl)
        for i, h in enumerate(has):
            if h:
                labels[i] = f"driver{int(next(it)):03d}"
    for i, h in enumerate(has):
        if not h:
            labels[i] = f"noface-{files[i].parent.name}-{files[i].stem}"
    return labels


def yawn(src: Path, out: Path, copy: bool, identities: bool) -> None:
    base = src / "dataset_noisy"
    pairs = []
    for a, b in (("yawn", "yawn"), ("no-yawn", "no_yawn")):
        d = base / a
        if not d.is_dir():
            sys.exit(f"error: {d} not found (expected dataset_noisy/yawn and dataset_noisy/no-yawn)")
        for f in _images(d):
            pairs.append((f, Path(b) / f.name))
    for f, rel in pairs:
        _place(f, out / "yawn" / rel, copy)
    extra = ""
    if identities:
        ids = _cluster_identities([f for f, _ in pairs])
        with (out / "yawn" / "identities.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "identity"])
            for (_, rel), i in zip(pairs, ids):
                w.writerow([rel.as_posix(), i])
        n_id = len(set(ids))
        extra = (f"- yawn/identities.csv: {n_id} identities recovered by clustering dlib face descriptors "
                 "(average linkage, distance 0.5); not ground truth\n")
        print(f"  {n_id} identities")
    _source_note(out, "yawn", src, extra)
    print(f"{out}: yawn/ with {len(pairs)} images")


def keypoints(src: Path, out: Path, copy: bool, split: str) -> None:
    d = src / "data" / split
    table = src / "data" / f"{split}_frames_keypoints.csv"
    if not d.is_dir() or not table.is_file():
        sys.exit(f"error: {d} or {table} not found")
    rows = list(csv.reader(table.open(newline="")))
    if len(rows[0]) != 137:
        sys.exit(f"error: {table}: expected a name column and 136 coordinates, got {len(rows[0])} columns")
    header = ["file", "identity"] + [f"{a}{i}" for i in range(68) for a in ("x", "y")]
    n = 0
    (out / "faces").mkdir(parents=True, exist_ok=True)
    with (out / "faces" / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows[1:]:
            name = r[0]
            f = d / name
            if not f.is_file():
                sys.exit(f"error: {table} lists {name}, which is not in {d}")
            ident = re.sub(r"_\d+$", "", Path(name).stem)
            _place(f, out / "faces" / "images" / name, copy)
            w.writerow([name, ident] + r[1:])
            n += 1
    _source_note(out, "keypoints", src, f"- split: data/{split} ({n} labelled images); identity = file name without "
                 "the frame number\n")
    print(f"{out}: faces/ with {n} images")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=sorted(SOURCES))
    ap.add_argument("source", type=Path, help="the checkout")
    ap.add_argument("out", type=Path, help="output folder, outside this repository")
    ap.add_argument("--copy", action="store_true", help="copy the images instead of linking them")
    ap.add_argument("--split", default="training", choices=("training", "test"), help="keypoints: which split")
    ap.add_argument("--no-identities", action="store_true", help="yawn: skip the identity clustering")
    a = ap.parse_args(argv)
    if not a.source.is_dir():
        sys.exit(f"error: {a.source}: not a folder")
    _check_out(a.out)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.kind == "eye-state":
        eye_state(a.source, a.out, a.copy)
    elif a.kind == "cew":
        cew(a.source, a.out)
    elif a.kind == "yawn":
        yawn(a.source, a.out, a.copy, not a.no_identities)
    else:
        keypoints(a.source, a.out, a.copy, a.split)
    return 0


if __name__ == "__main__":
    sys.exit(main())
