"""Joint-space motion planning with OMPL (RRT* or RRTConnect), shortcutting, smoothing and time
parameterisation (ROS-free).

``MotionPlanner.plan`` answers one motion q_start -> q_goal in a PlanningScene:

1. both ends must be valid (else reason "start in collision" / "goal in collision", naming the
   colliding pair);
2. when the straight joint-space segment is collision-free it is the answer (the shortest path
   in the joint-space metric; no sampling needed);
3. otherwise OMPL plans in the 7-D joint space (bounds: the joint limits less a margin) with the
   scene's validity checker, motions checked every ``resolution`` rad. RRT* (default) runs until
   it has an exact solution and has refined it for ``optimize_time`` s more (or ``time_limit``
   passes); RRTConnect stops at its first solution. ``should_cancel()`` is polled by the
   termination condition. No solution within ``time_limit`` gives reason "timeout: ...";
4. the path is shortcut with OMPL's PathSimplifier (collision-checked);
5. it is timed with Ruckig under the velocity, acceleration and jerk limits; interior waypoints
   are blended (passed with a velocity, rounding the corners) when the blended trajectory passes
   the collision check at every sample, else the arm stops at each waypoint and follows the
   checked straight segments exactly.

``MotionPlanner.reference`` runs the same problem with RRT* for a long time (a path-length
reference for benchmarks).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from spatialpin_ros.core.trajectory import JointTrajectory
from spatialpin_ros.planning.robot import ARM_JOINTS, PandaModel
from spatialpin_ros.planning.scene import PlanningScene
from spatialpin_ros.planning.timing import TimedPath, time_path, to_joint_trajectory

ALGORITHMS = ("rrtstar", "rrtconnect")


@dataclass
class PlanResult:
    """One planned motion.

    ``success``; ``path`` (N, 7) waypoints after shortcutting (None on failure); ``reason``
    ("" on success); ``planning_time`` s (wall clock, validity checks included, time
    parameterisation excluded); ``trajectory``: the timed arm trajectory (None without timing);
    ``sampled``: whether OMPL was needed (False: the direct segment was free); ``raw_length`` and
    ``length``: joint-space path length (rad) before and after shortcutting.
    """

    success: bool
    path: Optional[np.ndarray] = None
    reason: str = ""
    planning_time: float = 0.0
    trajectory: Optional[JointTrajectory] = None
    timed: Optional[TimedPath] = field(default=None, repr=False)
    sampled: bool = False
    raw_length: float = float("nan")
    length: float = float("nan")
    algorithm: str = ""
    timing_time: float = 0.0


def path_length(path: np.ndarray) -> float:
    """Joint-space length of a waypoint path (sum of Euclidean segment lengths, rad)."""
    P = np.asarray(path, dtype=float)
    return float(np.sum(np.linalg.norm(np.diff(P, axis=0), axis=1))) if len(P) > 1 else 0.0


def _ompl():
    from ompl import base as ob, geometric as og, util as ou
    ou.setLogLevel(ou.LOG_ERROR)
    return ob, og, ou


class MotionPlanner:
    """Plans arm motions for ``robot`` (a PandaModel).

    ``resolution``: joint-space step (rad, Euclidean) at which motions are collision-checked.
    ``optimize_time``: extra seconds RRT* refines after its first exact solution.
    ``simplify_time``: seconds for OMPL's path simplifier. ``dt``: trajectory sample period (s).
    """

    def __init__(self, robot: PandaModel, resolution: float = 0.02, optimize_time: float = 0.05,
                 simplify_time: float = 0.05, dt: float = 0.01, seed: Optional[int] = None):
        self.robot = robot
        self.resolution = float(resolution)
        self.optimize_time = float(optimize_time)
        self.simplify_time = float(simplify_time)
        self.dt = float(dt)
        ob, og, ou = _ompl()
        if seed is not None:
            ou.RNG.setSeed(int(seed))

    # -- the public entry points ---------------------------------------------------------------
    def plan(self, q_start: Sequence[float], q_goal: Sequence[float], scene: PlanningScene,
             time_limit: float = 1.0, algorithm: str = "rrtstar",
             should_cancel: Optional[Callable[[], bool]] = None, timing: bool = True,
             try_direct: bool = True, optimize_time: Optional[float] = None) -> PlanResult:
        """Plan q_start -> q_goal (each (7,)) in ``scene`` within ``time_limit`` seconds."""
        t0 = time.perf_counter()
        algorithm = algorithm.lower()
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        qs, qg = np.asarray(q_start, dtype=float), np.asarray(q_goal, dtype=float)
        if should_cancel is not None and should_cancel():
            return PlanResult(False, reason="cancelled", algorithm=algorithm)
        for label, q in (("start", qs), ("goal", qg)):
            if not self.robot.within_limits(q):
                return PlanResult(False, reason=f"{label} outside the joint limits",
                                  planning_time=time.perf_counter() - t0, algorithm=algorithm)
            if not scene.is_valid(q):
                pairs = ", ".join(f"{a}-{b}" for a, b, _ in scene.collisions(q)[:3])
                return PlanResult(False, reason=f"{label} in collision ({pairs})",
                                  planning_time=time.perf_counter() - t0, algorithm=algorithm)
        sampled = False
        if try_direct and scene.motion_valid(qs, qg, self.resolution):
            path = np.stack([qs, qg])
            raw_len = path_length(path)
        else:
            sampled = True
            res = self._ompl_plan(qs, qg, scene, time_limit - (time.perf_counter() - t0),
                                  algorithm, should_cancel,
                                  self.optimize_time if optimize_time is None else optimize_time,
                                  self.simplify_time)
            if isinstance(res, str):
                return PlanResult(False, reason=res, planning_time=time.perf_counter() - t0,
                                  sampled=True, algorithm=algorithm)
            path, raw_len = res
        planning_time = time.perf_counter() - t0
        out = PlanResult(True, path=path, planning_time=planning_time, sampled=sampled,
                         raw_length=raw_len, length=path_length(path), algorithm=algorithm)
        if timing:
            t1 = time.perf_counter()
            out.timed = self.time(path, scene)
            out.trajectory = to_joint_trajectory(out.timed, ARM_JOINTS)
            out.timing_time = time.perf_counter() - t1
        return out

    def reference(self, q_start: Sequence[float], q_goal: Sequence[float], scene: PlanningScene,
                  time_limit: float = 5.0) -> PlanResult:
        """A long-run RRT* reference: RRT* for the whole ``time_limit`` (no direct shortcut
        unless the direct segment is free, where it is optimal), then simplification."""
        return self.plan(q_start, q_goal, scene, time_limit=time_limit, algorithm="rrtstar",
                         timing=False, optimize_time=time_limit)

    def time(self, path: np.ndarray, scene: Optional[PlanningScene] = None,
             blend: bool = True) -> TimedPath:
        """Time a waypoint path under the robot's planning limits (see ``timing.time_path``)."""
        r = self.robot
        check = scene.is_valid if scene is not None else None
        return time_path(path, r.vmax, r.amax, r.jmax, r.lower, r.upper, dt=self.dt,
                         blend=blend, check=check)

    # -- OMPL ----------------------------------------------------------------------------------
    def _ompl_plan(self, qs: np.ndarray, qg: np.ndarray, scene: PlanningScene,
                   time_limit: float, algorithm: str,
                   should_cancel: Optional[Callable[[], bool]], optimize_time: float,
                   simplify_time: float):
        """(path, raw length) or a failure reason."""
        ob, og, _ = _ompl()
        r = self.robot
        space = ob.RealVectorStateSpace(7)
        bounds = ob.RealVectorBounds(7)
        for i in range(7):
            bounds.setLow(i, float(r.lower[i]))
            bounds.setHigh(i, float(r.upper[i]))
        space.setBounds(bounds)
        si = ob.SpaceInformation(space)
        is_valid = scene.is_valid

        def valid(state) -> bool:
            return is_valid([state[0], state[1], state[2], state[3], state[4], state[5],
                             state[6]])

        si.setStateValidityChecker(valid)
        si.setStateValidityCheckingResolution(self.resolution / space.getMaximumExtent())
        si.setup()
        start, goal = si.allocState(), si.allocState()
        for i in range(7):
            start[i], goal[i] = float(qs[i]), float(qg[i])
        ss = og.SimpleSetup(si)
        ss.setStartAndGoalStates(start, goal)
        if algorithm == "rrtstar":
            planner = og.RRTstar(si)
            ss.setOptimizationObjective(ob.PathLengthOptimizationObjective(si))
        else:
            planner = og.RRTConnect(si)
        planner.setRange(1.0)
        ss.setPlanner(planner)
        ss.setup()
        t_start = time.perf_counter()
        deadline = t_start + max(0.0, time_limit)
        state = {"found_at": None, "cancelled": False}
        pdef = ss.getProblemDefinition()

        def stop() -> bool:
            now = time.perf_counter()
            if now >= deadline:
                return True
            if should_cancel is not None and should_cancel():
                state["cancelled"] = True
                return True
            if algorithm == "rrtstar":
                if state["found_at"] is None and pdef.hasExactSolution():
                    state["found_at"] = now
                if state["found_at"] is not None and now - state["found_at"] >= optimize_time:
                    return True
            return False

        status = ss.solve(ob.PlannerTerminationCondition(stop))
        if state["cancelled"]:
            return "cancelled"
        if not ss.haveExactSolutionPath():
            return (f"timeout: no collision-free path within {time_limit:.3g} s "
                    f"({algorithm}, status {status.asString()})")
        path = ss.getSolutionPath()
        raw = self._to_array(path)
        raw_len = path_length(raw)
        ps = og.PathSimplifier(si)
        ps.simplify(path, float(simplify_time))
        simplified = self._to_array(path)
        # The simplifier checks its shortcuts; re-check the result to be sure.
        if not all(scene.motion_valid(a, b, self.resolution)
                   for a, b in zip(simplified[:-1], simplified[1:])):
            simplified = raw
        simplified[0], simplified[-1] = qs, qg
        return simplified, raw_len

    @staticmethod
    def _to_array(path) -> np.ndarray:
        return np.array([[s[i] for i in range(7)] for s in path.getStates()], dtype=float)
