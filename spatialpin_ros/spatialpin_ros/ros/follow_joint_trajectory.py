"""The manipulation node's client of a ros2_control arm: control_msgs/action/FollowJointTrajectory,
as a joint_trajectory_controller serves it.

One goal at a time: before a new trajectory is sent the previous goal is cancelled and its end
awaited; when it does not end, nothing is sent. Every goal ends in a typed :class:`ArmOutcome`:
the server missing, the goal rejected (ros2_control's controller refuses bad joint names or an
empty trajectory at the goal request and logs why; other drivers accept it and abort with
INVALID_JOINTS or INVALID_GOAL), aborted with the controller's error code and error string
(PATH_TOLERANCE_VIOLATED, GOAL_TOLERANCE_VIOLATED, ...), cancelled, no answer in time, or
succeeded. The caller polls :meth:`outcome` while the arm moves and :meth:`cancel` stops it.

Waits are polls of futures that the node's executor completes on other threads, so the caller
must run in a callback of a multi-threaded executor (as the ExecuteTask goals do) or outside it.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass
from typing import Optional

from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg

from spatialpin_ros.core.waiting import wait_until
from spatialpin_ros.ros import conversions as conv

#: FollowJointTrajectory.Result error codes (control_msgs), by value.
ERROR_CODES = {0: "SUCCESSFUL", -1: "INVALID_GOAL", -2: "INVALID_JOINTS",
               -3: "OLD_HEADER_TIMESTAMP", -4: "PATH_TOLERANCE_VIOLATED",
               -5: "GOAL_TOLERANCE_VIOLATED"}


class ArmStatus(enum.Enum):
    """How one FollowJointTrajectory goal ended."""

    SUCCEEDED = "succeeded"      # the controller reports SUCCESSFUL
    NO_SERVER = "no_server"      # no action server within the timeout: nothing sent
    REJECTED = "rejected"        # the controller refused the goal
    ABORTED = "aborted"          # the controller ended it with an error code
    CANCELED = "canceled"        # cancelled on request (a stop)
    TIMEOUT = "timeout"          # no answer to the request, or no result in time
    BUSY = "busy"                # the previous goal did not end: nothing sent


@dataclass(frozen=True)
class ArmOutcome:
    """The end of one goal. ``error_code``: the controller's FollowJointTrajectory.Result
    error_code (0 when it sent none); ``error_string``: its text, or ours where it sent none."""

    status: ArmStatus
    error_code: int = 0
    error_string: str = ""

    @property
    def ok(self) -> bool:
        return self.status is ArmStatus.SUCCEEDED

    @property
    def code_name(self) -> str:
        return ERROR_CODES.get(self.error_code, str(self.error_code))

    def describe(self) -> str:
        """One line for result messages and logs."""
        text = conv.bounded(self.error_string, 200)
        if self.status is ArmStatus.ABORTED:
            return ("the arm's controller aborted the trajectory"
                    + (f": {self.code_name} ({self.error_code})" if self.error_code else "")
                    + (f": {text}" if text else ""))
        if self.status is ArmStatus.CANCELED:
            return ("the arm's controller cancelled the trajectory"
                    + (f": {self.code_name} ({self.error_code})" if self.error_code else "")
                    + (f": {text}" if text else ""))
        if self.status is ArmStatus.REJECTED:
            return ("the arm's controller rejected the trajectory"
                    + (f": {self.code_name} ({self.error_code})" if self.error_code else "")
                    + (f": {text}" if text else ""))
        if self.status is ArmStatus.SUCCEEDED:
            return "the arm's controller reports the goal reached"
        return text or self.status.value


class FollowJointTrajectoryClient:
    """FollowJointTrajectory goals to ``action_name``, one at a time.

    ``timeout_s``: seconds to wait for the server, for the answer to a goal request and for a
    cancel to end the goal. ``goal_time_tolerance_s``: sent in each goal (seconds after the
    trajectory's end that the arm may take to settle within the goal tolerance); the result is
    awaited that long past the end, plus ``timeout_s``."""

    def __init__(self, node, action_type, action_name: str, timeout_s: float,
                 goal_time_tolerance_s: float) -> None:
        self.node, self.action_type, self.action_name = node, action_type, action_name
        self.timeout_s = float(timeout_s)
        self.goal_time_tolerance_s = float(goal_time_tolerance_s)
        self.client = ActionClient(node, action_type, action_name)
        self._lock = threading.Lock()
        self._goal_fut = None       # the request of the current goal
        self._result_fut = None     # its result, once accepted
        self._deadline = 0.0        # monotonic time after which the result is overdue
        self._ended: Optional[ArmOutcome] = None
        #: the latest feedback (control_msgs FollowJointTrajectory.Feedback) of the current goal
        self.feedback = None

    # -- sending ------------------------------------------------------------------------------
    def send(self, msg: JointTrajectoryMsg, duration_s: float) -> Optional[ArmOutcome]:
        """Send ``msg`` (lasting ``duration_s``) as a new goal. None: accepted, the arm moves;
        else why nothing moves (the outcome, already final)."""
        if self.busy():
            prev = self.cancel()
            if prev is None or self.busy():
                return self._log(ArmOutcome(ArmStatus.BUSY, error_string=(
                    "the previous trajectory did not end; nothing was sent")))
        if not self.client.wait_for_server(timeout_sec=self.timeout_s):
            return self._log(ArmOutcome(ArmStatus.NO_SERVER, error_string=(
                f"no FollowJointTrajectory server at {self.action_name} within "
                f"{self.timeout_s:g} s; nothing was sent")))
        goal = self.action_type.Goal(trajectory=msg)
        goal.goal_time_tolerance = conv.sec_to_duration(self.goal_time_tolerance_s)
        with self._lock:
            self.feedback, self._ended, self._result_fut = None, None, None
            self._goal_fut = self.client.send_goal_async(goal, feedback_callback=self._on_feedback)
            fut = self._goal_fut
        if not wait_until(fut.done, self.timeout_s):
            # It may still be accepted later: busy() stays true and the next send or stop
            # cancels it.
            return self._log(ArmOutcome(ArmStatus.TIMEOUT, error_string=(
                f"no answer from {self.action_name} to the goal within {self.timeout_s:g} s")))
        handle = fut.result()
        if handle is None or not handle.accepted:
            with self._lock:
                self._goal_fut = None
            return self._log(ArmOutcome(ArmStatus.REJECTED, error_string=(
                f"{self.action_name} refused the goal (a joint_trajectory_controller logs why: "
                "joint names that are not its joints, an empty or badly timed trajectory)")))
        with self._lock:
            self._result_fut = handle.get_result_async()
            self._deadline = (time.monotonic() + max(0.0, duration_s)
                              + self.goal_time_tolerance_s + self.timeout_s)
        return None

    def _on_feedback(self, msg) -> None:
        self.feedback = msg.feedback

    # -- following ------------------------------------------------------------------------------
    def busy(self) -> bool:
        """A goal was sent and has not ended (or its request is unanswered)."""
        with self._lock:
            if self._goal_fut is None:
                return False
            if not self._goal_fut.done():
                return True
            handle = self._goal_fut.result()
            if handle is None or not handle.accepted:
                return False
            return self._result_fut is not None and not self._result_fut.done()

    def outcome(self) -> Optional[ArmOutcome]:
        """None while the current goal runs; its outcome once it ended, or TIMEOUT (the goal
        then cancelled) when the result is overdue."""
        with self._lock:
            fut, deadline = self._result_fut, self._deadline
        if fut is None:
            return self._ended
        if fut.done():
            return self._finish(fut.result())
        if time.monotonic() > deadline:
            self.cancel()
            with self._lock:
                self._ended = ArmOutcome(ArmStatus.TIMEOUT, error_string=(
                    f"no result from {self.action_name} within {self.goal_time_tolerance_s:g} s "
                    f"(goal_time_tolerance) + {self.timeout_s:g} s after the trajectory's end; "
                    "the goal was cancelled"))
                out = self._ended
            return self._log(out)
        return None

    def cancel(self) -> Optional[ArmOutcome]:
        """Stop the arm: cancel the current goal and wait for it to end (up to ``timeout_s``).
        Its outcome, or None when no goal ran or it did not end in time (logged)."""
        with self._lock:
            goal_fut = self._goal_fut
        if goal_fut is None:
            return self._ended
        if not wait_until(goal_fut.done, self.timeout_s):
            self.node.get_logger().error(f"{self.action_name}: the goal request is unanswered; "
                                         "cannot cancel it")
            return None
        handle = goal_fut.result()
        if handle is None or not handle.accepted:
            return self._ended
        with self._lock:
            result_fut = self._result_fut
        if result_fut is not None and not result_fut.done():
            handle.cancel_goal_async()
            if not wait_until(result_fut.done, self.timeout_s):
                self.node.get_logger().error(
                    f"{self.action_name}: the goal did not end within {self.timeout_s:g} s "
                    "of its cancel")
                return None
        return self._finish(result_fut.result()) if result_fut is not None else self._ended

    def _finish(self, response) -> ArmOutcome:
        """The outcome of a finished goal (GetResult response), logged once."""
        with self._lock:
            if self._result_fut is None:
                return self._ended
            self._result_fut = None
            self._goal_fut = None
        res = response.result
        code, text = int(res.error_code), str(res.error_string)
        if response.status == GoalStatus.STATUS_SUCCEEDED and code == 0:
            out = ArmOutcome(ArmStatus.SUCCEEDED, code, text)
        elif response.status == GoalStatus.STATUS_CANCELED:
            out = ArmOutcome(ArmStatus.CANCELED, code, text)
        elif code in (-1, -2):  # a driver that accepts a bad goal, then aborts it
            out = ArmOutcome(ArmStatus.REJECTED, code, text)
        else:
            out = ArmOutcome(ArmStatus.ABORTED, code, text or
                             f"goal status {response.status} without an error code")
        return self._log(out)

    def _log(self, out: ArmOutcome) -> ArmOutcome:
        with self._lock:
            self._ended = out
        log = self.node.get_logger()
        if out.ok or out.status is ArmStatus.CANCELED:
            log.info(f"{self.action_name}: {out.describe()}")
        else:
            log.warning(f"{self.action_name}: {out.describe()}")
        return out

