"""dlib's face-recognition ResNet read from its .dat and run in torch (privacy.dlib_net) against dlib itself.

dlib runs for real here: the reference descriptors are dlib's own ``compute_face_descriptor`` output on
the same images and shapes; nothing is stored or faked.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmsfactory.privacy.descriptors import FaceDescriber, resolve_descriptor_backend
from dmsfactory.privacy.dlib_net import DlibNetFormatError, TorchFaceRecognizer, default_recognizer, read_dlib_resnet

torch.set_num_threads(1)


def _images() -> list[np.ndarray]:
    import matplotlib.cbook as cb
    from PIL import Image
    from skimage import data

    from dmsfactory.generators.procedural import example_plan_entry, render

    grace = np.asarray(Image.open(cb.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    return [data.astronaut(), grace, render(example_plan_entry(identity_seed=3, sample_seed=7)).image[..., :3]]


def _dlib():
    import dlib
    import face_recognition_models as frm

    return (dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
            dlib.face_recognition_model_v1(frm.face_recognition_model_location()))


def test_torch_network_equals_dlibs_descriptors():
    dlib, det, sp, rec = _dlib()
    tr = default_recognizer()
    chips, refs = [], []
    for img in _images():
        img = np.ascontiguousarray(img)
        dets = det(img, 1)
        assert dets, "HOG finds the face of each test image"
        shape = sp(img, dets[0])
        refs.append(np.asarray(rec.compute_face_descriptor(img, shape, 0)))
        chips.append(dlib.get_face_chip(img, shape, size=150, padding=0.25))
    got_one = np.stack([tr.describe_chips(c)[0] for c in chips])
    got_batch = tr.describe_chips(np.stack(chips))
    refs = np.stack(refs)
    for got in (got_one, got_batch):
        assert got.shape == (3, 128) and got.dtype == np.float32
        l2 = np.linalg.norm(got - refs, axis=1)
        assert l2.max() < 1e-4, l2  # measured 7e-7 .. 1.5e-6
    # different faces stay different (the comparison above is not trivially satisfied)
    assert np.linalg.norm(refs[0] - refs[1]) > 0.3


def test_face_describer_backends_agree():
    from skimage import data

    img = np.ascontiguousarray(data.astronaut())
    t, d = FaceDescriber(("hog",), backend="torch"), FaceDescriber(("hog",), backend="dlib")
    assert (t.backend, d.backend) == ("torch", "dlib") and resolve_descriptor_backend("auto") == "torch"
    ft, fd = t.describe(img), d.describe(img)
    assert len(ft) == len(fd) >= 1
    for a, b in zip(ft, fd):
        assert a.box == b.box
        assert np.linalg.norm(a.descriptor - b.descriptor) < 1e-4


def test_deferred_descriptors_go_through_the_network_together_and_equal_one_at_a_time():
    """``describe(defer=True)`` cuts the chips, ``complete`` describes the faces of several images in one
    call (what the privacy gate does for an identity's views): the same descriptors as describing each
    image on its own, and the dlib backend ignores ``defer``."""
    imgs = [np.ascontiguousarray(i) for i in _images()]
    t = FaceDescriber(("hog",), backend="torch")
    single = [t.describe(i) for i in imgs]
    deferred = [t.describe(i, defer=True) for i in imgs]
    faces = [f for fs in deferred for f in fs]
    assert len(faces) >= 3 and all(f.descriptor is None and f.extra["chip"].shape == (150, 150, 3) for f in faces)
    t.complete(faces)
    assert all("chip" not in f.extra for f in faces)
    for a, b in zip([f for fs in single for f in fs], faces):
        assert a.box == b.box and np.linalg.norm(a.descriptor - b.descriptor) < 1e-4
    d = FaceDescriber(("hog",), backend="dlib")
    assert all(f.descriptor is not None for f in d.describe(imgs[0], defer=True))


def test_reader_names_the_problem(tmp_path):
    import face_recognition_models as frm

    buf = bytearray(open(frm.face_recognition_model_location(), "rb").read())
    nodes, inp = read_dlib_resnet(frm.face_recognition_model_location())
    assert inp["avg"] == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    assert nodes[-2].data["weight"].shape == (32, 3, 7, 7) and nodes[0].data["weight"].shape == (256, 128)

    short = tmp_path / "short.dat"
    short.write_bytes(bytes(buf[: len(buf) // 2]))
    with pytest.raises(DlibNetFormatError, match="short.dat: byte .*file ends"):
        TorchFaceRecognizer(short)
    renamed = tmp_path / "renamed.dat"
    b = bytearray(buf)
    b[b.index(b"loss_metric_2")] = ord("x")
    renamed.write_bytes(bytes(b))
    with pytest.raises(DlibNetFormatError, match="expected loss_metric"):
        TorchFaceRecognizer(renamed)
    with pytest.raises(DlibNetFormatError, match="cannot read"):
        TorchFaceRecognizer(tmp_path / "missing.dat")
    with pytest.raises(ValueError, match="chips"):
        default_recognizer().describe_chips(np.zeros((10, 10, 3), np.uint8))
