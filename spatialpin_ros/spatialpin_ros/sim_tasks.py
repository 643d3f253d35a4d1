"""Run one proposed task in the embedded simulator without ROS, as the manipulation node does:
plan on the perceived scene, execute, check the object is in the hand after closing and after
the lift (finger gap and speed from the joint states), on a slip go home, re-perceive and try
once more, and judge the result with the task's own rule on a freshly perceived scene. Grasps
are sampled on the perceived points of the object (``planning.antipodal``): each perceived
scene keeps its frame, whose points the priors' masks split by object
(``planning.object_cloud``).

The pipeline here reads only rendered images (optionally with the D435 depth-noise model) and
the arm's joint states; the simulator's truth is left to the caller, for scoring (``watch`` is
called between physics steps so it can track the true objects)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from spatialpin_ros.core.task_kinds import BASE_KINDS, TaskCheck, TaskKind
from spatialpin_ros.core.types import Scene
from spatialpin_ros.core.plan_status import PlanStatus
from spatialpin_ros.planning import RobotModel, TaskPlan, limit_violations, plan_task
from spatialpin_ros.planning.object_cloud import SceneCloud
from spatialpin_ros.planning.recovery import (HandCheck, describe_grasp, hand_check,
                                              plan_recovery)
from spatialpin_ros.reasoning.task_rules import (check_task, find_dropped, find_target, task_pose,
                                                verify_task)
from spatialpin_ros.reasoning.tasks import TaskProposal
from spatialpin_ros.sim.depth_noise import apply_d435_noise


@dataclass
class TaskRun:
    """What happened to one task: the plan's ``code`` (and ``reason``), the grasp chosen, the
    hand checks, whether a slip (or miss) was seen and retried, and the success check."""

    task: TaskProposal
    kind: TaskKind
    status: Optional[PlanStatus] = None
    reason: str = ""
    grasp: str = ""
    hand: list[HandCheck] = field(default_factory=list)
    slipped: bool = False
    retried: bool = False
    check: Optional[TaskCheck] = None
    plans: list[TaskPlan] = field(default_factory=list)
    violations: dict = field(default_factory=lambda: {"joint": 0, "velocity": 0,
                                                      "acceleration": 0})

    @property
    def success(self) -> bool:
        return self.check is not None and self.check.ok


class SimTaskRunner:
    """Perceive, plan and execute tasks in a ``SimWorld`` (see the module doc)."""

    def __init__(self, world, backend, robot: RobotModel, noise_seed: Optional[int] = None,
                 max_clearing: int = 3, max_moves: int = 2,
                 watch: Optional[Callable[[], None]] = None, use_points: bool = True):
        self.world, self.backend, self.robot = world, backend, robot
        self.rng = None if noise_seed is None else np.random.default_rng(noise_seed)
        self.max_clearing, self.max_moves = max_clearing, max_moves
        self.watch = watch
        self.nominal = robot.joint_limits(nominal=True)
        self.use_points = use_points
        self._frames: dict[str, object] = {}

    def perceive(self) -> Scene:
        """A freshly perceived scene (its frame kept, for its points)."""
        frame = self.world.render()
        if self.rng is not None:
            frame = dataclasses.replace(frame, depth=apply_d435_noise(frame.depth, frame.rgb,
                                                                      self.rng))
        scene_id = f"sim-{len(self._frames)}"
        self._frames[scene_id] = frame
        return self.backend.perceive(frame, scene_id=scene_id)

    def points(self, scene: Scene) -> Optional[SceneCloud]:
        """The perceived points of ``scene`` by object (None: not one of this runner's
        scenes, or points not used)."""
        frame = self._frames.get(scene.scene_id)
        if frame is None or not self.use_points:
            return None
        return SceneCloud.from_frame(frame, scene)

    def plan(self, scene: Scene, kind: TaskKind, object_id: str, target_id: str,
             place_pose) -> TaskPlan:
        q0, f0 = self._state()
        on_target = kind in BASE_KINDS
        return plan_task(self.robot, scene, object_id, target_id if on_target else None,
                         None if on_target else place_pose, q_start=q0,
                         finger_start=f0, max_clearing=self.max_clearing,
                         max_moves=self.max_moves, kind=kind.value if on_target else "",
                         points=self.points(scene))

    def _step_until(self, t_end: float, t0: float) -> None:
        while self.world.sim_time - t0 < t_end:
            self.world.step(4)
            if self.watch is not None:
                self.watch()

    def _state(self) -> tuple[np.ndarray, float]:
        """The arm's configuration and one finger's opening (m) in the world now."""
        names, q, _, _ = self.world.joint_state()
        return self.robot.split([q[names.index(n)] for n in self.robot.joint_names])

    def _hand(self, plan: TaskPlan) -> HandCheck:
        names, q, v, _ = self.world.joint_state()
        idx = [names.index(n) for n in self.robot.gripper_joints]
        f, vf = self.robot.finger_state(q[idx], v[idx])
        return hand_check([f, f], plan.grasp, [vf, vf])

    def execute(self, plan: TaskPlan, run: TaskRun) -> bool:
        """Run the plan; False (arm stopped) when the hand turns out empty after the close or
        the lift."""
        traj = plan.trajectory
        v = limit_violations(traj, self.nominal)
        for k in run.violations:
            run.violations[k] += v[k]
        self.world.start_trajectory(traj)
        t0 = self.world.sim_time
        checks = [b for n, _, b in plan.stages if n in ("close", "lift")]
        for t_check in checks:
            self._step_until(t_check, t0)
            h = self._hand(plan)
            run.hand.append(h)
            if h.state.value == "empty":
                self.world.cancel_trajectory()
                return False
        self._step_until(traj.duration + 0.6, t0)
        return True

    def recover(self, scene: Scene, run: TaskRun) -> None:
        """Fingers open, up and home after an empty grasp."""
        q, f = self._state()
        traj = plan_recovery(self.robot, scene, q, f)
        if traj is None:
            return
        v = limit_violations(traj, self.nominal)
        for k in run.violations:
            run.violations[k] += v[k]
        self.world.start_trajectory(traj)
        t0 = self.world.sim_time
        self._step_until(traj.duration + 0.5, t0)

    def run(self, scene: Scene, task: TaskProposal, retry: bool = True,
            plan: Optional[TaskPlan] = None) -> TaskRun:
        """Plan (unless ``plan`` is given), execute (retrying once after a slip) and check
        ``task`` on ``scene``."""
        kind = TaskKind(task.kind)
        run = TaskRun(task, kind)
        oid, tid, pose = task.object_id, task.target_id, task.place_pose
        for attempt in range(2 if retry else 1):
            if plan is None or attempt > 0:
                plan = self.plan(scene, kind, oid, tid, pose)
            run.plans.append(plan)
            run.status, run.reason = plan.status, plan.reason
            if not plan.success:
                return run
            run.grasp = describe_grasp(plan)
            if self.execute(plan, run):
                break
            run.slipped = True
            self.recover(scene, run)
            if attempt == 1 or not retry:
                run.status, run.reason = PlanStatus.SLIPPED, run.hand[-1].detail
                break
            # Re-perceive and find the object and the target again.
            run.retried = True
            fresh = self.perceive()
            a = find_dropped(fresh, scene, scene.get(oid))
            b, found = find_target(fresh, scene.get(tid)) if tid else (None, True)
            if a is None or not found:
                run.status, run.reason = (PlanStatus.MISSING_OBJECT,
                                          "not seen again after the slip")
                return run
            why = check_task(fresh, kind, a.id, b.id if b is not None else "")
            if why:
                run.status, run.reason = PlanStatus.INFEASIBLE_AFTER_SLIP, why
                return run
            oid, tid = a.id, (b.id if b is not None else "")
            pose = (task_pose(fresh, kind, oid, tid) if kind != TaskKind.MOVE else pose)
            scene = fresh
        after = self.perceive()
        run.check = verify_task(after, scene, kind, oid, tid,
                                pose if kind in (TaskKind.MOVE, TaskKind.PLACE_NEXT_TO) else None)
        return run
