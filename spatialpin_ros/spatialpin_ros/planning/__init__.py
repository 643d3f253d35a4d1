"""Motion and task planning for any arm with a parallel gripper, from its robot description
(``core.robot_description``; ROS-free): kinematics and collision model in an
own PyBullet client, a planning scene built from perceived priors, top-down grasps (sampled on
the perceived points, ``antipodal`` and ``object_cloud``, or from the box) and stacking
placements, OMPL joint-space planning with shortcutting, smoothing and Ruckig timing, and the
pick-and-place task planner.

Usage::

    from spatialpin_ros.planning import RobotModel, plan_pick_and_place

    robot = RobotModel("xarm6")               # own DIRECT client; close() when done
    plan = plan_pick_and_place(robot, scene, "red_block", "blue_block")
    if plan.success:
        world.run_trajectory(plan.trajectory) # a core JointTrajectory (arm + fingers)
    else:
        print(plan.status, plan.reason)       # e.g. PlanStatus.TOO_WIDE, "object too wide ..."
"""

from spatialpin_ros.core.plan_status import PlanFailure, PlanStatus
from spatialpin_ros.core.stacking import MAX_GRASP_WIDTH, Infeasible, check_support
from spatialpin_ros.planning.antipodal import cloud_grasps
from spatialpin_ros.planning.clearing import plan_task
from spatialpin_ros.planning.object_cloud import SceneCloud
from spatialpin_ros.planning.grasps import (Grasp, Hand, Placement, grasp_candidates,
                                            placements_at, placements_on)
from spatialpin_ros.planning.pick_place import plan_pick_and_place
from spatialpin_ros.planning.scene_queries import blockers, object_on_top, supporting_object
from spatialpin_ros.planning.task_plan import MotionRecord, PickPlaceConfig, TaskPlan
from spatialpin_ros.planning.planner import ALGORITHMS, MotionPlanner, PlanResult, path_length
from spatialpin_ros.planning.robot import RobotModel, top_down_pose
from spatialpin_ros.planning.scene import PlanningScene
from spatialpin_ros.planning.timing import limit_violations, time_path

__all__ = [
    "ALGORITHMS", "MAX_GRASP_WIDTH", "Grasp", "SceneCloud", "cloud_grasps", "Hand", "Infeasible", "MotionPlanner",
    "MotionRecord", "PickPlaceConfig", "PlanFailure", "PlanStatus", "RobotModel", "PlanResult", "Placement", "PlanningScene", "TaskPlan", "check_support",
    "grasp_candidates", "limit_violations", "object_on_top", "path_length", "placements_at",
    "placements_on", "plan_pick_and_place", "plan_task", "blockers", "supporting_object", "time_path", "top_down_pose",
]
