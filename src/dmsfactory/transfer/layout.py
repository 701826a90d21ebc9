"""The real-folder layout that ``dmsfactory transfer --real DIR`` reads (docs/transfer.md, "Layout").

```
DIR/
  eye_state/{open,closed}/*.jpg|png    face images; both eyes share the folder's state
  eye_crops/{open,closed}/*.jpg|png    single-eye images, already cropped (about 2 eye widths wide)
  yawn/{yawn,no_yawn}/*.jpg|png        face images or whole cabin frames
  faces/images/*.jpg|png + faces/labels.csv
                                       file[,identity][,x0,y0,...,x67,y67][,yaw,pitch,roll][,gaze_yaw,gaze_pitch]
                                       (or an iBUG ``NAME.pts`` next to each image instead of x/y columns)
  <task>/identities.csv                optional for the class folders: file,identity (file relative to <task>/)
```
Each task folder is optional; at least one must be there. Anything else is an error naming the file
or folder and saying what was expected, and all problems are collected before anything runs
(:class:`LayoutError` carries one line per problem).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from dmsfactory.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CLASS_TASKS: dict[str, tuple[str, str]] = {  # task folder -> (negative class, positive class)
    "eye_state": ("open", "closed"),
    "eye_crops": ("open", "closed"),
    "yawn": ("no_yawn", "yawn"),
}
FACES = "faces"
TASK_FOLDERS = (*CLASS_TASKS, FACES)
IGNORED_FILES = ("README", "README.md", "README.txt", "LICENSE", "LICENSE.txt", "NOTICE", "SOURCE.md", "SOURCE.txt")  # provenance notes
POSE_COLUMNS = ("yaw", "pitch", "roll")
GAZE_COLUMNS = ("gaze_yaw", "gaze_pitch")
N_POINTS = 68


class LayoutError(UserError, ValueError):
    """The real folder does not follow the layout; ``problems`` has one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    @property
    def lines(self) -> list[str]:
        return self.problems


@dataclass
class ClassSet:
    """A binary task read from class folders. ``labels`` 1 = the positive class (closed eyes, yawn)."""

    task: str
    root: Path
    files: list[Path]
    labels: list[int]
    identities: list[str] | None
    classes: tuple[str, str]

    def __len__(self) -> int:
        return len(self.files)


@dataclass
class FaceSet:
    """``faces/``: images with any of 68 points, head pose, gaze (NaN where a row lacks a value)."""

    root: Path
    files: list[Path]
    points: list[list[tuple[float, float]] | None]
    pose: list[tuple[float, float, float] | None]
    gaze: list[tuple[float, float] | None]
    identities: list[str] | None

    def __len__(self) -> int:
        return len(self.files)

    def tasks(self) -> list[str]:
        out = []
        if any(p is not None for p in self.points):
            out.append("landmarks")
        if any(p is not None for p in self.pose):
            out.append("head_pose")
        if any(g is not None for g in self.gaze):
            out.append("gaze")
        return out


@dataclass
class RealData:
    root: Path
    classes: dict[str, ClassSet] = field(default_factory=dict)
    faces: FaceSet | None = None

    def tasks(self) -> list[str]:
        """Evaluation tasks the folder supports (eye_state and eye_crops both feed the eye task)."""
        out = []
        if "eye_state" in self.classes or "eye_crops" in self.classes:
            out.append("eye")
        if "yawn" in self.classes:
            out.append("yawn")
        if self.faces is not None:
            out += self.faces.tasks()
        return out


def _hidden(p: Path | str) -> bool:
    name = p if isinstance(p, str) else p.name
    return name.startswith(".") or name.startswith("__")


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS


def _read_csv(path: Path, problems: list[str]) -> list[list[str]] | None:
    """All rows of a CSV file, or None with the file named in ``problems`` when it cannot be read."""
    try:
        with path.open(newline="") as fh:
            return list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as e:
        problems.append(f"{path}: cannot read ({e})")
        return None


def _read_identities(task_dir: Path, files: list[Path], problems: list[str]) -> list[str] | None:
    f = task_dir / "identities.csv"
    if not f.exists():
        return None
    ids: dict[str, str] = {}
    rows = _read_csv(f, problems)
    if rows is None:
        return None
    if not rows or [c.strip() for c in rows[0][:2]] != ["file", "identity"]:
        problems.append(f"{f}: the first line must be the header 'file,identity'")
        return None
    for i, r in enumerate(rows[1:], start=2):
        if not r or all(not c.strip() for c in r):
            continue
        if len(r) < 2 or not r[0].strip() or not r[1].strip():
            problems.append(f"{f}: line {i}: expected 'file,identity' with both values")
            continue
        ids[r[0].strip()] = r[1].strip()
    rel = [p.relative_to(task_dir).as_posix() for p in files]
    missing = [r for r in rel if r not in ids]
    if missing:
        problems.append(f"{f}: no identity for {len(missing)} image(s), e.g. {missing[0]} (list every image or drop the file)")
        return None
    unknown = sorted(set(ids) - set(rel))
    if unknown:
        problems.append(f"{f}: names {len(unknown)} file(s) that are not images of {task_dir.name}/, e.g. {unknown[0]}")
    return [ids[r] for r in rel]


def _read_class_task(task_dir: Path, problems: list[str]) -> ClassSet | None:
    task = task_dir.name
    neg, pos = CLASS_TASKS[task]
    files: list[Path] = []
    labels: list[int] = []
    n0 = len(problems)
    found = set()
    for entry in sorted(task_dir.iterdir()):
        if _hidden(entry):
            continue
        if entry.is_file():
            if entry.name != "identities.csv" and entry.name not in IGNORED_FILES:
                problems.append(f"{entry}: unexpected file in {task}/ (expected the class folders {neg}/ and {pos}/"
                                " and optionally identities.csv)")
            continue
        if entry.name not in (neg, pos):
            hint = " (use no_yawn)" if entry.name in ("no-yawn", "noyawn", "not_yawn") else ""
            problems.append(f"{entry}: unknown class folder in {task}/; expected {neg}/ or {pos}/{hint}")
            continue
        found.add(entry.name)
        imgs = []
        for f in sorted(entry.rglob("*")):
            if any(_hidden(part) for part in f.relative_to(entry).parts) or f.is_dir():
                continue
            if not _is_image(f):
                problems.append(f"{f}: not an image file (expected {', '.join(IMAGE_EXTENSIONS)})")
                continue
            imgs.append(f)
        if not imgs:
            problems.append(f"{entry}: class folder has no images")
        files += imgs
        labels += [1 if entry.name == pos else 0] * len(imgs)
    for c in (neg, pos):
        if c not in found:
            problems.append(f"{task_dir / c}: missing; {task}/ needs both {neg}/ and {pos}/")
    if len(problems) > n0:
        return None
    ids = _read_identities(task_dir, files, problems)
    if len(problems) > n0:
        return None
    return ClassSet(task, task_dir, files, labels, ids, (neg, pos))


def _num(v: str, where: str, col: str, problems: list[str]) -> float | None:
    v = v.strip()
    if v == "":
        return None
    try:
        x = float(v)
    except ValueError:
        problems.append(f"{where}: column {col!r}: {v!r} is not a number")
        return None
    if not math.isfinite(x):
        problems.append(f"{where}: column {col!r}: {v!r} is not a finite number")
        return None
    return x


def read_pts(path: Path) -> list[tuple[float, float]]:
    """An iBUG ``.pts`` file (``version: 1`` / ``n_points: 68`` / ``{`` x y lines ``}``)."""
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    try:
        n = int(next(ln for ln in lines if ln.startswith("n_points")).split(":")[1])
        start = lines.index("{") + 1
        end = lines.index("}")
    except (StopIteration, ValueError, IndexError):
        raise ValueError("not an iBUG .pts file (needs 'n_points: 68' and the points between '{' and '}')") from None
    pts = []
    for ln in lines[start:end]:
        a = ln.split()
        if len(a) != 2:
            raise ValueError(f"point line {ln!r} is not 'x y'")
        pts.append((float(a[0]), float(a[1])))
    if n != N_POINTS or len(pts) != N_POINTS:
        raise ValueError(f"has {len(pts)} points (n_points {n}); 68 iBUG points are needed")
    return pts


def _read_faces(task_dir: Path, problems: list[str]) -> FaceSet | None:
    n0 = len(problems)
    img_dir = task_dir / "images"
    csv_path = task_dir / "labels.csv"
    for entry in sorted(task_dir.iterdir()):
        if _hidden(entry) or entry.name in ("images", "labels.csv") or entry.name in IGNORED_FILES:
            continue
        problems.append(f"{entry}: unexpected in faces/ (expected images/ and labels.csv)")
    if not img_dir.is_dir():
        problems.append(f"{img_dir}: missing (faces/ needs images/ and labels.csv)")
    if not csv_path.is_file():
        problems.append(f"{csv_path}: missing (faces/ needs images/ and labels.csv)")
    if len(problems) > n0:
        return None
    on_disk = {}
    for f in sorted(img_dir.rglob("*")):
        if f.is_dir() or any(_hidden(part) for part in f.relative_to(img_dir).parts):
            continue
        if f.suffix.lower() == ".pts":
            continue
        if not _is_image(f):
            problems.append(f"{f}: not an image file (expected {', '.join(IMAGE_EXTENSIONS)} or .pts)")
            continue
        on_disk[f.relative_to(img_dir).as_posix()] = f
    rows = _read_csv(csv_path, problems)
    if rows is None:
        return None
    if not rows:
        problems.append(f"{csv_path}: empty (needs a header line starting with 'file')")
        return None
    header = [c.strip() for c in rows[0]]
    if not header or header[0] != "file":
        problems.append(f"{csv_path}: the first column of the header must be 'file' (got {header[:1]})")
        return None
    col = {c: i for i, c in enumerate(header)}
    pt_cols = [f"{a}{i}" for i in range(N_POINTS) for a in ("x", "y")]
    has_pts_cols = any(c in col for c in pt_cols)
    if has_pts_cols:
        miss = [c for c in pt_cols if c not in col]
        if miss:
            problems.append(f"{csv_path}: point columns x0,y0,...,x67,y67 are incomplete (missing {', '.join(miss[:4])}...)")
    has_pose = any(c in col for c in POSE_COLUMNS)
    if has_pose and not all(c in col for c in POSE_COLUMNS):
        problems.append(f"{csv_path}: head pose needs all of yaw, pitch, roll columns")
    has_gaze = any(c in col for c in GAZE_COLUMNS)
    if has_gaze and not all(c in col for c in GAZE_COLUMNS):
        problems.append(f"{csv_path}: gaze needs both gaze_yaw and gaze_pitch columns")
    known = {"file", "identity", *pt_cols, *POSE_COLUMNS, *GAZE_COLUMNS}
    for c in header:
        if c not in known:
            problems.append(f"{csv_path}: unknown column {c!r} (expected file, identity, x0..y67, yaw, pitch, roll, "
                            "gaze_yaw, gaze_pitch)")
    if len(problems) > n0:
        return None
    files, points, pose, gaze, ids = [], [], [], [], []
    seen = set()
    for ln, r in enumerate(rows[1:], start=2):
        if not r or all(not c.strip() for c in r):
            continue
        where = f"{csv_path}: line {ln}"
        if len(r) != len(header):
            problems.append(f"{where}: {len(r)} values for {len(header)} columns")
            continue
        name = r[0].strip()
        if name in seen:
            problems.append(f"{where}: {name} is listed twice")
            continue
        seen.add(name)
        f = on_disk.get(name)
        if f is None:
            problems.append(f"{where}: image {img_dir / name} not found")
            continue
        pts = None
        if has_pts_cols:
            vals = [_num(r[col[c]], where, c, problems) for c in pt_cols]
            if all(v is not None for v in vals):
                pts = [(vals[2 * i], vals[2 * i + 1]) for i in range(N_POINTS)]
            elif any(v is not None for v in vals):
                problems.append(f"{where}: some point columns are empty (give all 68 points or none)")
        pts_file = f.with_suffix(".pts")
        if pts is None and pts_file.is_file():
            try:
                pts = read_pts(pts_file)
            except (ValueError, OSError) as e:
                problems.append(f"{pts_file}: {e}")
        p = g = None
        if has_pose:
            v = [_num(r[col[c]], where, c, problems) for c in POSE_COLUMNS]
            p = tuple(v) if all(x is not None for x in v) else None
        if has_gaze:
            v = [_num(r[col[c]], where, c, problems) for c in GAZE_COLUMNS]
            g = tuple(v) if all(x is not None for x in v) else None
        files.append(f)
        points.append(pts)
        pose.append(p)
        gaze.append(g)
        ids.append(r[col["identity"]].strip() if "identity" in col else "")
    unlisted = sorted(set(on_disk) - seen)
    if unlisted:
        problems.append(f"{img_dir / unlisted[0]}: not listed in {csv_path.name} ({len(unlisted)} image(s) unlisted; "
                        "list every image, with empty cells for labels it lacks)")
    if not files:
        problems.append(f"{csv_path}: no rows")
    if "identity" in col and any(not i for i in ids):
        problems.append(f"{csv_path}: the identity column has empty cells")
    if len(problems) > n0:
        return None
    fs = FaceSet(task_dir, files, points, pose, gaze, ids if "identity" in col else None)
    if not fs.tasks():
        problems.append(f"{csv_path}: no labels (needs x0..y67 columns or .pts files, yaw/pitch/roll, or gaze_yaw/gaze_pitch)")
        return None
    return fs


def read_real(root: str | Path) -> RealData:
    """Read and check a real folder; raise :class:`LayoutError` listing every problem."""
    r = Path(root)
    if not r.exists():
        raise LayoutError([f"{r}: real-data folder not found"])
    if not r.is_dir():
        raise LayoutError([f"{r}: not a folder (expected a real-data folder, docs/transfer.md)"])
    problems: list[str] = []
    data = RealData(r)
    for entry in sorted(r.iterdir()):
        if _hidden(entry) or (entry.is_file() and entry.name in IGNORED_FILES):
            continue
        if entry.name not in TASK_FOLDERS or not entry.is_dir():
            problems.append(f"{entry}: unknown entry in the real folder; expected task folders "
                            f"{', '.join(t + '/' for t in TASK_FOLDERS)}")
            continue
        if entry.name == FACES:
            data.faces = _read_faces(entry, problems)
        else:
            cs = _read_class_task(entry, problems)
            if cs is not None:
                data.classes[entry.name] = cs
    if not problems and not data.tasks():
        problems.append(f"{r}: no task folder found; expected at least one of {', '.join(t + '/' for t in TASK_FOLDERS)}")
    if problems:
        raise LayoutError(problems)
    return data
