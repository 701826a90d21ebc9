"""Left/right correspondence of MediaPipe's refined 478-point face mesh, and label mirroring.

A horizontal flip moves the subject's right eye to where the left eye was, so a flipped landmark
array must be re-indexed: ``flipped[i] = mirror_x(original[MIRROR[i]])``. ``MIRROR`` is derived here,
not typed in:

1. Topology. The mirror map is an automorphism of MediaPipe's triangulated face mesh
   (``FACEMESH_TESSELATION``) that reverses orientation. Seeded with the midline edge 1-4 (nose tip
   and the vertex above it both lie on the midline), every manifold edge (a, b) with apexes {c, d}
   must map to the edge (m(a), m(b)) with apexes {m(c), m(d)}; iterating majority votes over these
   constraints fixes 466 of the 468 vertices.
2. The tessellation is not perfectly symmetric around the nostrils and the upper eyelids, which
   leaves 102/331 unmapped and 161/388 ambiguous. Those two pairs were resolved by running
   MediaPipe's face mesh on a photo and on its mirror image (skimage ``astronaut``): the mirrored
   detection of vertex i lands 2.5 px (mean) from the original detection of MIRROR[i] with this
   table, and an optimal assignment on those distances gives the same table for all 468 vertices.
   ``tests/test_augment.py`` repeats that check.
3. Irises (measured the same way): centre 468 <-> 473; the rings run in the same image direction
   for both eyes, so the horizontal extremes swap (469 <-> 476, 471 <-> 474) and the vertical ones
   pair up (470 <-> 475, 472 <-> 477).
"""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from functools import lru_cache
from typing import Any

import numpy as np

# pairs that the tessellation leaves unmapped/ambiguous (resolved from MediaPipe detections, see above)
_FIXUPS = {102: 331, 331: 102, 161: 388, 388: 161}
_IRIS = {468: 473, 469: 476, 470: 475, 471: 474, 472: 477}


@lru_cache(maxsize=1)
def mirror_index() -> np.ndarray:
    """(478,) int array: the index of each landmark's mirror partner (an involution)."""
    import mediapipe as mp  # heavy: mediapipe

    tess = mp.solutions.face_mesh_connections.FACEMESH_TESSELATION
    edges = {tuple(sorted(e)) for e in tess}
    adj: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    apex: dict[tuple[int, int], tuple[int, int]] = {}
    for a, b in edges:
        cs = adj[a] & adj[b]
        if len(cs) == 2:
            apex[(a, b)] = tuple(sorted(cs))  # type: ignore[assignment]
    m = {1: 1, 4: 4}
    c, d = apex[(1, 4)]
    m[c], m[d] = d, c
    for _ in range(100):
        votes: dict[int, Counter] = defaultdict(Counter)
        for (a, b), (c, d) in apex.items():
            if a in m and b in m:
                e2 = tuple(sorted((m[a], m[b])))
                if e2 not in apex:
                    continue
                c2, d2 = apex[e2]  # type: ignore[misc]
                for u, v in ((c, d), (d, c)):
                    if v in m and m[v] in (c2, d2):
                        votes[u][c2 if m[v] == d2 else d2] += 1
        new = {u: cnt.most_common(1)[0][0] for u, cnt in votes.items()}
        new.update({1: 1, 4: 4})
        if new == m:
            break
        m = new
    m.update(_FIXUPS)
    out = np.arange(478)
    for k, v in m.items():
        out[k] = v
    for k, v in _IRIS.items():
        out[k], out[v] = v, k
    if len(m) != 468 or not np.array_equal(out[out], np.arange(478)):
        raise RuntimeError("MediaPipe mirror map derivation failed (tessellation changed?)")
    out.setflags(write=False)
    return out


# --- label mirroring ---------------------------------------------------------------------------
# DMD gaze zones are named for a left-hand-drive cabin. A flipped image shows a driver in a mirrored
# (right-hand-drive) cabin: directional zones swap, objects that stay objects keep their names.
# "front_right" (windscreen towards the passenger) has no mirrored DMD zone ("front_left" does not
# exist), so by default a sample looking there is not flipped (AugmentConfig.flip_front_right).
ZONE_MIRROR = {
    "left_mirror": "right_mirror",
    "right_mirror": "left_mirror",
    "left": "right",
    "right": "left",
    "front": "front",
    "center_mirror": "center_mirror",
    "infotainment": "infotainment",
    "steering_wheel": "steering_wheel",
    "not_valid": "not_valid",
}
_ACTION_SWAP = {"_left": "_right", "_right": "_left"}
_LR = {"left": "right", "right": "left"}


def _swap_suffix(v: Any) -> Any:
    if not isinstance(v, str):
        return v
    for a, b in _ACTION_SWAP.items():
        if v.endswith(a):
            return v[: -len(a)] + b
    return v


def _neg(v: Any) -> Any:
    return -v if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def mirror_pose(p: dict | None) -> dict | None:
    """yaw and roll change sign under a horizontal mirror; pitch does not."""
    if not isinstance(p, dict):
        return p
    q = dict(p)
    for k in ("yaw", "roll"):
        if k in q:
            q[k] = _neg(q[k])
    if q.get("rotation_matrix") is not None:
        q["rotation_matrix"] = mirror_rotation_matrix(q["rotation_matrix"])
    if isinstance(q.get("translation_m"), (list, tuple)):
        q["translation_m"] = mirror_vector(q["translation_m"])
    return q


def mirror_vector(v: Any) -> Any:
    """Camera-frame direction: x (image right) changes sign."""
    if isinstance(v, (list, tuple)) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v):
        return [-float(v[0]), float(v[1]), float(v[2])]
    return v


def mirror_rotation_matrix(r: Any) -> Any:
    """R' = S R S with S = diag(-1, 1, 1): the mirror image of a rotation is again a rotation."""
    if r is None:
        return None
    a = np.asarray(r, dtype=np.float64)
    if a.shape != (3, 3):
        return r
    s = np.diag([-1.0, 1.0, 1.0])
    return (s @ a @ s).tolist()


def mirror_labels(labels: dict[str, Any]) -> dict[str, Any]:
    """Labels of the horizontally mirrored image (left <-> right everywhere it has a meaning)."""
    lab = copy.deepcopy(labels)
    eyes = lab.get("eyes")
    if isinstance(eyes, dict) and {"left", "right"} <= eyes.keys():
        eyes["left"], eyes["right"] = eyes["right"], eyes["left"]
    gaze = lab.get("gaze")
    if isinstance(gaze, dict):
        if {"left", "right"} <= gaze.keys():
            gaze["left"], gaze["right"] = gaze["right"], gaze["left"]
            for side in ("left", "right"):
                g = gaze[side]
                if isinstance(g, dict):
                    g["vector"] = mirror_vector(g.get("vector"))
                    if "yaw" in g:
                        g["yaw"] = _neg(g["yaw"])
        if isinstance(gaze.get("in_head"), dict) and "yaw" in gaze["in_head"]:
            gaze["in_head"] = dict(gaze["in_head"], yaw=_neg(gaze["in_head"]["yaw"]))
        if "zone" in gaze:
            gaze["zone"] = ZONE_MIRROR.get(gaze["zone"], gaze["zone"])
    if "gaze_zone_dmd" in lab:
        lab["gaze_zone_dmd"] = ZONE_MIRROR.get(lab["gaze_zone_dmd"], lab["gaze_zone_dmd"])
    for k in ("head_pose", "head_pose_car"):
        if k in lab:
            lab[k] = mirror_pose(lab[k])
    if "head_rotation_matrix" in lab:
        lab["head_rotation_matrix"] = mirror_rotation_matrix(lab["head_rotation_matrix"])
    if "action" in lab:
        lab["action"] = _swap_suffix(lab["action"])
    ph = lab.get("phone")
    if isinstance(ph, dict):
        if ph.get("hand") in _LR:
            ph["hand"] = _LR[ph["hand"]]
        ph["location"] = _swap_suffix(ph.get("location"))
    how = lab.get("hands_on_wheel")
    if how in ("only_left", "only_right"):
        lab["hands_on_wheel"] = "only_right" if how == "only_left" else "only_left"
    if isinstance(lab.get("camera"), dict):
        lab["camera"] = dict(lab["camera"], mirrored=not lab["camera"].get("mirrored", False))
    lab["cabin"] = "right_hand_drive" if lab.get("cabin", "left_hand_drive") == "left_hand_drive" else "left_hand_drive"
    return lab
