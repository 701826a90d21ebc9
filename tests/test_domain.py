"""The domain layer (geometry, landmarks, taxonomy): one definition each, the old names still work."""

import typing

import numpy as np

from dmsfactory import geometry, landmarks, taxonomy


def test_pose_convention_is_defined_once():
    import importlib

    from dmsfactory.augment import pose

    render = importlib.import_module("dmsfactory.generators.procedural.render")  # the package exports a render() too

    assert render.euler_to_R is geometry.matrix_from_euler and render.camera_euler is geometry.camera_euler
    assert render.Rx is geometry.rx and render.F_FLIP is geometry.F
    assert pose.matrix_from_euler is geometry.matrix_from_euler and pose.rotate_head_pose is geometry.rotate_head_pose


def test_euler_round_trip_and_signs():
    rng = np.random.default_rng(0)
    for y, p, r in rng.uniform([-80, -60, -40], [80, 60, 40], (50, 3)):
        got = geometry.euler_from_matrix(geometry.matrix_from_euler(y, p, r))
        np.testing.assert_allclose([got["yaw"], got["pitch"], got["roll"]], [y, p, r], atol=1e-9)
    # a head facing the camera squarely: R_cam_head = F, all angles 0; yaw > 0 turns it to image right
    np.testing.assert_allclose(geometry.camera_euler(geometry.F), (0.0, 0.0, 0.0), atol=1e-12)
    g = geometry.gaze_angles(geometry.forward(20.0, -10.0))
    assert abs(g["yaw"] - 20.0) < 1e-9 and abs(g["pitch"] + 10.0) < 1e-9
    assert abs(geometry.rotate_head_pose({"yaw": 0.0, "pitch": 0.0, "roll": 0.0}, 15.0)["roll"] + 15.0) < 1e-9


def test_landmark_topology_is_shared():
    from dmsfactory.generators.procedural import topology
    from dmsfactory.labelers import params, verify
    from dmsfactory.sample import N_LANDMARKS

    assert topology.IBUG68_FROM_MEDIAPIPE is landmarks.IBUG68_FROM_MEDIAPIPE
    assert verify.EAR_LEFT is landmarks.EAR_LEFT and verify.EAR_RIGHT is landmarks.EAR_RIGHT
    assert params.ibug68_index_map() == landmarks.IBUG68_FROM_MEDIAPIPE and N_LANDMARKS == landmarks.N_LANDMARKS == 478
    assert len(set(landmarks.IBUG68_FROM_MEDIAPIPE)) == 68 and max(landmarks.IBUG68_FROM_MEDIAPIPE) < landmarks.N_MESH


def test_taxonomy_is_the_one_source_of_the_value_sets():
    from dmsfactory import plan, spec
    from dmsfactory.labelers import params, schema

    assert tuple(typing.get_args(spec.ClassName)) == taxonomy.CLASSES == tuple(taxonomy.CLASS_STATES)
    assert set(taxonomy.FATIGUE_LEVEL) == set(taxonomy.CLASSES)
    assert plan.GAZE_ZONES is taxonomy.GAZE_ZONES and set(taxonomy.FIXATION_DISTANCE_M) == set(taxonomy.GAZE_ZONES)
    assert set(taxonomy.DRIVING_ZONES) <= set(taxonomy.GAZE_ZONES) and set(taxonomy.DISTRACTION_ZONES) <= set(taxonomy.GAZE_ZONES)
    assert params.FATIGUE_LEVEL is taxonomy.FATIGUE_LEVEL and spec.AGE_RANGES is taxonomy.AGE_RANGES
    assert tuple(typing.get_args(spec.AgeGroup)) == taxonomy.AGE_GROUPS == tuple(taxonomy.AGE_RANGES)
    assert schema.LABEL_SCHEMA["class"]  # the schema reads its enums from here
