"""Typed outcomes of planning and executing a task (ROS-free).

``PlanStatus`` names every outcome; ``PlanFailure`` is the one exception that carries a status
and a reason in words. Every result (``planning.TaskPlan``, ``planning.PlanResult``,
``sim_tasks.TaskRun``) carries a ``status``. The values are short strings (the enum is a
``str``), so that they travel in messages and JSON as they are.
"""

from __future__ import annotations

from enum import Enum

from spatialpin_ros.core.errors import SpatialPinError


class PlanStatus(str, Enum):
    """What came of planning (or doing) a task."""

    OK = "ok"
    #: The object or the target is not in the scene.
    MISSING_OBJECT = "missing_object"
    #: The gripper cannot open around the object.
    TOO_WIDE = "too_wide"
    #: The target's top cannot support the object.
    TARGET_TOO_SMALL = "target_too_small"
    #: The target has no level top (a ball, a tilted or irregular object).
    NO_FLAT_TOP = "no_flat_top"
    #: Out of the arm's reach.
    UNREACHABLE = "unreachable"
    #: Every grasp or placement collides (neighbours, something on top).
    BLOCKED = "blocked"
    #: Planning took over its time limit.
    TIMEOUT = "timeout"
    #: Cancelled by the caller.
    CANCELLED = "cancelled"
    #: A planned motion found no collision-free path (or starts in collision).
    COLLISION = "collision"
    #: Anything else (a bad request, an internal error).
    ERROR = "error"
    # The task kinds' own refusals (core.task_kinds, core.stacking).
    UNSTABLE = "unstable"
    CONTAINER = "container"
    NOT_CONTAINER = "not_container"
    DOES_NOT_FIT = "does_not_fit"
    NOT_HOLDER = "not_holder"
    ALREADY_DONE = "already_done"
    NO_FREE_SPOT = "no_free_spot"
    NO_SHAPE = "no_shape"
    #: Every grasp that fits holds the object by a narrow part far above its centre of mass
    #: (a bottle by its neck): it would swing in the hand and tip when put down.
    UNSTABLE_GRASP = "unstable_grasp"
    #: The object (or the target it would be stacked on) touches a neighbour of the same top
    #: height and colour, or the object rests on one of its colour or on an irregular one:
    #: the two may be pieces of one object (a tray's walls, a plate's halves, a bottle's neck
    #: and body), so where the object ends is not known
    #: (``planning.scene_queries.fragment_of``).
    NOT_SEPARATE = "not_separate"
    # Execution.
    #: The hand was found empty after closing or lifting.
    SLIPPED = "slipped"
    #: After a slip, the task could no longer be done on the fresh scene.
    INFEASIBLE_AFTER_SLIP = "infeasible_after_slip"

    def __str__(self) -> str:
        return self.value


class PlanFailure(SpatialPinError):
    """A task that cannot be planned or done as asked: ``status`` (a ``PlanStatus``; a string
    is converted) and ``reason`` in words."""

    def __init__(self, status: PlanStatus | str, reason: str):
        super().__init__(reason)
        self.status = PlanStatus(status)
        self.reason = reason

    @property
    def code(self) -> str:
        """The status as a plain string."""
        return self.status.value
