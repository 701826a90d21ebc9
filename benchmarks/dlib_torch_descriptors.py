"""dlib's face-recognition ResNet in torch (``privacy.dlib_net``) against dlib itself: agreement and speed.

Images: scikit-image astronaut, matplotlib grace_hopper (and both mirrored), 12 scikit-image LFW
thumbnails upscaled 6x, 14 procedural renders (identity seeds 0..13). Faces: dlib's HOG detector
(upsample 1); where it finds none, the image's central square starts the 5-point predictor (the
network comparison needs only *a* shape). Per face: dlib's ``compute_face_descriptor(img, shape, 0)``
vs torch on ``dlib.get_face_chip(img, shape, 150, 0.25)``: max |difference| per component and the L2
distance between the two descriptors.

Timing, one thread (``torch.set_num_threads(1)``), ``time.process_time``, median of ``--repeats``
calls on each of the first 5 faces: dlib per descriptor; torch per descriptor (chip + network, batch 1);
torch per descriptor in a batch of 3 (one identity's 3 views). Last line: one JSON object, speed as the
ratio dlib / torch measured in the same run.

    PYTHONPATH=src nice -n 10 .venv/bin/python benchmarks/dlib_torch_descriptors.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def images() -> list[tuple[str, np.ndarray]]:
    import cv2
    import matplotlib.cbook as cb
    from PIL import Image
    from skimage import data

    from dmsfactory.generators.procedural import example_plan_entry, render

    out = [("astronaut", data.astronaut())]
    grace = np.asarray(Image.open(cb.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    out += [("grace_hopper", grace), ("astronaut_mirror", data.astronaut()[:, ::-1]), ("grace_mirror", grace[:, ::-1])]
    lfw = data.lfw_subset()
    for i in range(12):
        g = cv2.resize((lfw[i] * 255).round().astype(np.uint8), (150, 150), interpolation=cv2.INTER_CUBIC)
        out.append((f"lfw{i}", np.stack([g] * 3, -1)))
    for s in range(14):
        out.append((f"render{s}", render(example_plan_entry(identity_seed=s, sample_seed=100 + s)).image))
    return [(n, np.ascontiguousarray(im[..., :3])) for n, im in out]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()

    import dlib  # heavy: dlib
    import face_recognition_models as frm
    import torch  # heavy: torch

    from dmsfactory.privacy.dlib_net import TorchFaceRecognizer

    torch.set_num_threads(1)
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    t0 = time.process_time()
    tr = TorchFaceRecognizer()
    load_s = time.process_time() - t0

    faces = []
    rows = []
    for name, img in images():
        dets = det(img, 1)
        if dets:
            box, src = dets[0], "hog"
        else:
            h, w = img.shape[:2]
            s = min(h, w) * 3 // 5
            box, src = dlib.rectangle((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2), "centre"
        shape = sp(img, box)
        ref = np.asarray(rec.compute_face_descriptor(img, shape, 0), np.float64)
        chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
        via_chip = np.asarray(rec.compute_face_descriptor(chip, 0), np.float64)
        got = tr.describe_chips(chip)[0].astype(np.float64)
        rows.append({
            "image": name, "box": src,
            "max_abs": float(np.abs(got - ref).max()), "l2": float(np.linalg.norm(got - ref)),
            "dlib_chip_vs_dlib": float(np.abs(via_chip - ref).max()), "norm": float(np.linalg.norm(ref)),
        })
        faces.append((img, shape, chip))
        print(json.dumps(rows[-1]))

    def med(fn) -> float:
        ts = []
        for _ in range(args.repeats):
            t = time.process_time()
            fn()
            ts.append(time.process_time() - t)
        return statistics.median(ts)

    t_dlib, t_torch, t_chip, t_batch3 = [], [], [], []
    for img, shape, chip in faces[:5]:
        tr.describe_chips(chip)  # warm-up
        t_dlib.append(med(lambda: rec.compute_face_descriptor(img, shape, 0)))
        t_chip.append(med(lambda: dlib.get_face_chip(img, shape, size=150, padding=0.25)))
        t_torch.append(med(lambda: tr.describe_chips(dlib.get_face_chip(img, shape, size=150, padding=0.25))))
        three = np.stack([chip] * 3)
        tr.describe_chips(three)
        t_batch3.append(med(lambda: tr.describe_chips(three)) / 3)
    ms = lambda v: round(1000 * statistics.median(v), 2)  # noqa: E731
    l2 = [r["l2"] for r in rows]
    result = {
        "benchmark": "dlib_torch_descriptors", "faces": len(rows), "torch": torch.__version__, "dlib": dlib.__version__,
        "max_l2": max(l2), "median_l2": statistics.median(l2), "max_abs": max(r["max_abs"] for r in rows),
        "dlib_ms_per_descriptor": ms(t_dlib), "torch_ms_per_descriptor": ms(t_torch), "chip_ms": ms(t_chip),
        "torch_ms_per_descriptor_batch3": ms(t_batch3), "torch_load_s": round(load_s, 2),
        "speedup_vs_dlib": round(statistics.median(t_dlib) / statistics.median(t_torch), 2),
        "speedup_vs_dlib_batch3": round(statistics.median(t_dlib) / statistics.median(t_batch3), 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
