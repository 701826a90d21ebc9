"""Build the procedural renderer's mean 3D face shape (``mean_shape.npz``) in MediaPipe topology.

How it is made (re-run with ``python scripts/make_mean_shape.py``; deterministic):

1. MediaPipe face mesh (static mode) on real frontal photos that ship inside our dependencies and
   their horizontal mirror images: scikit-image ``data.astronaut()`` and matplotlib's
   ``grace_hopper.jpg``. Only the *geometry* (468 x/y/z landmarks) is used; no pixels are kept.
   MediaPipe's output is (x, y) in pixels and z in the same scale as x; we convert to a
   right-handed head frame: x = subject's left, y = up, z = out of the face (towards the viewer).
2. The left/right vertex correspondence is derived by mirroring (x -> -x) and a minimum-cost
   assignment (Hungarian) after Procrustes alignment, iterated until stable.
   A mirrored photo's landmarks are un-mirrored with that map, so each photo counts twice.
3. All shapes are Procrustes-aligned (similarity) and averaged; the mean is symmetrised
   (average with its re-indexed mirror), lightly Laplacian-smoothed (2 passes, weight 0.25 on the
   tessellation graph) and rotated so the symmetry plane is x = 0 and the glabella (9) -> chin (175)
   line is vertical (natural head position approximation).
4. Optional refinement (``--refine N``): render the mean shape with our own renderer, re-run face
   mesh on the renders, average MediaPipe's z-profile with ours (pulls the shape towards what
   MediaPipe expects of a face).
5. Metric scale: the outer eye-corner (exocanthion, 33-263) distance is set to 0.090 m, an adult
   average (Farkas' anthropometric norms give ex-ex ~ 87-92 mm for adults of both sexes).
   Origin: midpoint of the two outer eye corners.
6. The photos smile with parted lips: the neutral shape closes them (``close_mouth``).
7. Optional MediaPipe calibration (``--calibrate-mp N``, applied to the saved shape): render
   calibration identities (seeds 900000+, disjoint from the benchmarks' seeds) from several camera
   directions, run face mesh, and solve per vertex (least squares over all views, through the
   projection Jacobian) for the 3D offset that moves our projected vertex onto MediaPipe's landmark;
   the offset field is mirror-symmetrised, Laplacian-smoothed, damped (0.6) and applied N times. Eye
   contours (lid semantics) and the outer eye corners (metric scale) are held fixed. This aligns
   the mesh with MediaPipe's landmark *definitions* (where face mesh puts e.g. 234 or 152 on a
   head); it uses no photo and no benchmark render.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "src/dmsfactory/generators/procedural/data/mean_shape.npz"
EXOCANTHION_M = 0.090


def _edges():
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    return sorted({tuple(sorted(e)) for e in FACEMESH_TESSELATION})


def run_mesh(img_rgb: np.ndarray) -> np.ndarray | None:
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False) as fm:
        r = fm.process(np.ascontiguousarray(img_rgb))
    if not r.multi_face_landmarks:
        return None
    h, w = img_rgb.shape[:2]
    p = np.array([[lm.x * w, lm.y * h, lm.z * w] for lm in r.multi_face_landmarks[0].landmark[:468]], np.float64)
    return np.stack([p[:, 0], -p[:, 1], -p[:, 2]], 1)  # x right(=subject's left), y up, z out of face


def procrustes(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Similarity-align src to dst, return transformed src."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, s, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    D = np.diag([1, 1, d])
    r = u @ D @ vt
    scale = (s * np.diag(D)).sum() / (a**2).sum()
    return scale * a @ r + md


MIDLINE_HINT = (1, 4, 5, 6, 9, 10, 151, 152, 168, 197, 195, 0, 13, 14, 17, 199, 175)


def rough_frame(shape: np.ndarray) -> np.ndarray:
    """Rotate/translate so 33->263 is +x, forehead (10) - chin (152) is ~+y, origin on the midline."""
    x = shape[263] - shape[33]
    x /= np.linalg.norm(x)
    y = shape[10] - shape[152]
    y -= (y @ x) * x
    y /= np.linalg.norm(y)
    R = np.stack([x, y, np.cross(x, y)])
    out = (shape - shape[list(MIDLINE_HINT)].mean(0)) @ R.T
    return out


def mirror_map(shape: np.ndarray, iters: int = 4) -> np.ndarray:
    """perm[i] = the vertex that is the left/right mirror image of vertex i."""
    from scipy.optimize import linear_sum_assignment

    s = rough_frame(shape)
    for _ in range(iters):
        m = s * np.array([-1, 1, 1])
        d = np.linalg.norm(s[:, None, :] - m[None, :, :], axis=2)
        _, perm = linear_sum_assignment(d)
        s = rough_frame(symmetrise(s, perm))
    return perm


def symmetrise(shape: np.ndarray, perm: np.ndarray) -> np.ndarray:
    m = (shape * np.array([-1, 1, 1]))[perm]
    return 0.5 * (shape + procrustes(m, shape))


def laplacian_smooth(shape: np.ndarray, edges, w: float = 0.25, n: int = 2) -> np.ndarray:
    nb = [[] for _ in range(len(shape))]
    for a, b in edges:
        nb[a].append(b)
        nb[b].append(a)
    s = shape.copy()
    for _ in range(n):
        avg = np.array([s[x].mean(0) for x in nb])
        s = (1 - w) * s + w * avg
    return s


def canonical_frame(shape: np.ndarray, perm: np.ndarray) -> np.ndarray:
    # symmetry plane normal: mean of (p_i - p_mirror(i)) for clearly lateral pairs
    d = shape - shape[perm]
    lat = np.linalg.norm(d, axis=1) > 1e-6 * np.abs(shape).max()
    n = (d[lat] * np.sign(d[lat][:, :1] + 1e-12)).mean(0)
    # sign: vertex 263 (subject's left outer eye corner) must be at +x
    if (shape[263] - shape[33]) @ n < 0:
        n = -n
    x = n / np.linalg.norm(n)
    up0 = shape[9] - shape[175]
    y = up0 - (up0 @ x) * x
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    R = np.stack([x, y, z])
    out = (shape - shape.mean(0)) @ R.T
    if out[1, 2] < out[:, 2].mean():  # nose tip must point to +z
        out[:, 2] *= -1
        out[:, 0] *= -1
    out[:, 0] -= out[:, 0].mean()  # plane x=0 (after symmetrisation mean x is the plane)
    scale = EXOCANTHION_M / np.linalg.norm(out[263] - out[33])
    out *= scale
    return out - 0.5 * (out[33] + out[263])


UPPER_LIP_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_LIP_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)


def close_mouth(v: np.ndarray) -> np.ndarray:
    """The photos smile with parted lips; the neutral mean shape has closed lips: lift each lower
    inner-lip vertex to its upper partner and carry the lower face along (Gaussian falloff, 15 mm)."""
    up, lo = np.array(UPPER_LIP_INNER[1:-1]), np.array(LOWER_LIP_INNER[1:-1])
    d = v[up] - v[lo]
    d[:, 0] = 0.0
    d[:, 2] = 0.0
    d[:, 1] -= 0.0004  # keep 0.4 mm so the lip line stays a visible crease
    out = v.copy()
    ymouth = v[list(UPPER_LIP_INNER)][:, 1].min()
    for i in range(len(v)):
        if i in set(up.tolist()) or v[i, 1] > ymouth + 0.001:
            continue
        dist = np.linalg.norm(v[lo] - v[i], axis=1)
        j = int(np.argmin(dist))
        out[i] += d[j] * np.exp(-dist[j] ** 2 / (2 * 0.015**2))
    return out


def photos() -> list[np.ndarray]:
    import matplotlib.cbook as cb
    from skimage import data
    from skimage.io import imread

    imgs = [data.astronaut()]
    with cb.get_sample_data("grace_hopper.jpg") as f:
        imgs.append(imread(f))
    return [np.ascontiguousarray(i[..., :3]) for i in imgs]


def build(refine: int = 0) -> dict:
    edges = _edges()
    raw = [run_mesh(im) for im in photos()]
    raw = [r for r in raw if r is not None]
    perm = mirror_map(raw[0])
    shapes = []
    for im, r in zip(photos(), raw):
        shapes.append(r)
        f = run_mesh(np.ascontiguousarray(im[:, ::-1]))
        if f is not None:
            shapes.append((f * np.array([-1, 1, 1]))[perm])
    ref = shapes[0]
    aligned = [procrustes(s, ref) for s in shapes]
    mean = np.mean(aligned, 0)
    perm = mirror_map(mean)
    mean = symmetrise(mean, perm)
    mean = laplacian_smooth(mean, edges)
    mean = symmetrise(mean, perm)
    mean = canonical_frame(mean, perm)
    # exact symmetry: x of self-mirrored vertices is 0
    self_m = perm == np.arange(len(perm))
    mean[self_m, 0] = 0.0
    mean = close_mouth(mean)
    mean[self_m, 0] = 0.0
    return {
        "vertices": mean.astype(np.float64),
        "mirror": perm.astype(np.int32),
        "n_shapes": np.int32(len(shapes)),
        "exocanthion_m": np.float64(EXOCANTHION_M),
        "note": np.array(
            "MediaPipe face mesh 3D landmarks of skimage astronaut + matplotlib grace_hopper and their "
            "mirror images; Procrustes mean, mirror-symmetrised, Laplacian-smoothed, 33-263 = 0.090 m; "
            "see scripts/make_mean_shape.py"
        ),
    }


def calibrate_to_mediapipe(d: dict, out: Path, iters: int, damping: float = 0.6, n_ids: int = 6) -> dict:
    """Step 7 of the module docstring. Writes ``out`` after every iteration (the renderer reads it)."""
    import sys

    import mediapipe as mp

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from dmsfactory.generators.procedural import example_plan_entry, render
    from dmsfactory.generators.procedural import identity as I
    from dmsfactory.generators.procedural import render as _r  # noqa: F401
    from dmsfactory.generators.procedural import texture as TX
    from dmsfactory.generators.procedural import topology as T

    R = sys.modules["dmsfactory.generators.procedural.render"]
    v = d["vertices"].astype(np.float64).copy()
    perm = d["mirror"]
    fixed = sorted(set(T.R_EYE_UPPER + T.R_EYE_LOWER + T.L_EYE_UPPER + T.L_EYE_LOWER))
    views = [("steering_column", 0, 0), ("steering_column", 20, 5), ("steering_column", -20, -5), ("rearview_mirror", 0, 0),
             ("a_pillar", 0, 0), ("center_stack", 10, 0), ("steering_column", 0, -12), ("steering_column", 0, 12)]
    edges = np.array(_edges())
    for it in range(iters):
        np.savez_compressed(out, **{**d, "vertices": v})
        for fn in (T.mean_shape, I.shape_basis, TX.face_uv):
            fn.cache_clear()
        R._CACHE.clear()
        R._AO = None
        R._JAW = None
        A = np.zeros((468, 3, 3))
        b = np.zeros((468, 3))
        n_ok = 0
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as fm:
            for k in range(n_ids):
                ip = {"sex": ("female", "male")[k % 2], "age": 25 + 7 * k, "skin_tone": 1 + k % 6, "mixup": None}
                for j, (mount, yaw, pitch) in enumerate(views):
                    e = example_plan_entry(identity_seed=900000 + k, sample_seed=j, identity_params=ip, lighting="daylight",
                                           camera={"mount": mount, "fov_deg": 30.0, "distance_m": 0.65, "image_size": 384},
                                           head_pose_car={"yaw": float(yaw), "pitch": float(pitch)})
                    r = render(e)
                    res = fm.process(r.image)
                    if not res.multi_face_landmarks:
                        continue
                    n_ok += 1
                    p = np.array([[q.x * 384, q.y * 384] for q in res.multi_face_landmarks[0].landmark[:468]])
                    K = np.array(r.render_info["intrinsics"]["K"])
                    Rch = np.array(r.render_info["head_pose_camera"]["rotation_matrix"])
                    X = r.landmarks_3d[:468].astype(np.float64)
                    f = K[0, 0]
                    z = X[:, 2]
                    J = np.zeros((468, 2, 3))
                    J[:, 0, 0] = f / z
                    J[:, 0, 2] = -f * X[:, 0] / z**2
                    J[:, 1, 1] = f / z
                    J[:, 1, 2] = -f * X[:, 1] / z**2
                    Jh = J @ Rch  # d(uv)/d(head-frame position)
                    res_px = p - r.landmarks[:468]
                    A += np.einsum("nij,nik->njk", Jh, Jh)
                    b += np.einsum("nij,ni->nj", Jh, res_px)
        lam = 1e-3 * np.trace(A, axis1=1, axis2=2).mean()
        delta = np.linalg.solve(A + lam * np.eye(3), b[..., None])[..., 0]
        delta = 0.5 * (delta + delta[perm] * [-1, 1, 1])  # mirror-symmetric
        delta = laplacian_smooth(delta, edges, 0.25, 2)
        delta[fixed] = 0.0
        v = v + damping * delta
        v = 0.5 * (v + (v * [-1, 1, 1])[perm])  # exact mirror symmetry (delta is symmetric already)
        print(f"calibration iter {it}: renders {n_ok}, mean |offset| {np.linalg.norm(delta, axis=1).mean() * 1000:.2f} mm, "
              f"max {np.linalg.norm(delta, axis=1).max() * 1000:.2f} mm")
    d = {**d, "vertices": v, "note": np.array(str(d.get("note", "")) + f" | calibrated to MediaPipe x{iters}")}
    np.savez_compressed(out, **d)
    return d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--refine", type=int, default=0)
    ap.add_argument("--calibrate-mp", type=int, default=0, help="MediaPipe calibration iterations (step 7)")
    ap.add_argument("--from-saved", action="store_true", help="start from the saved shape instead of rebuilding (steps 1-6)")
    a = ap.parse_args()
    if a.from_saved:
        z = np.load(a.out)
        d = {k: z[k] for k in z.files}
    else:
        d = build(a.refine)
    if a.calibrate_mp:
        d = calibrate_to_mediapipe(d, a.out, a.calibrate_mp)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.out, **d)
    v = d["vertices"]
    print("saved", a.out, "shapes", int(d["n_shapes"]), "extent m", np.ptp(v, 0).round(4))
    print("nose tip", v[1].round(4), "chin", v[152].round(4), "self-mirror", int((d["mirror"] == np.arange(468)).sum()))


if __name__ == "__main__":
    main()
