"""Head-pose and gaze angle conventions: moved to :mod:`dmsfactory.geometry` (issue 22).

Re-exported here so ``from dmsfactory.augment.pose import ...`` keeps working.
"""

from dmsfactory.geometry import (  # noqa: F401
    F,
    euler_from_matrix,
    forward,
    gaze_angles,
    image_rotation_cam,
    matrix_from_euler,
    rotate_head_pose,
)
