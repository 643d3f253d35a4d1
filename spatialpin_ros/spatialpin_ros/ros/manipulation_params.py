"""The manipulation node's parameters: name, default, description and check of each (declared
by ``ManipulationNode``; ``config/manipulation.yaml`` holds the same defaults, read alike by the
launch files and ``spatialpin bringup``)."""

from __future__ import annotations

from spatialpin_ros.ros.params import Param, non_negative, one_of, positive

PARAMS = {
    "algorithm": Param("rrtstar", "OMPL planner: rrtstar or rrtconnect",
                       one_of("rrtstar", "rrtconnect")),
    "planning_time_limit": Param(2.0, "Seconds allowed to plan one motion", positive),
    "task_time_limit": Param(10.0, "Seconds allowed to plan a whole task", positive),
    "max_clearing": Param(3, "When a task is blocked by neighbours, how many of them to try "
                          "moving to a free spot first (0: never)", non_negative),
    "max_clearing_moves": Param(2, "Neighbours moved at most, one after the other, to clear "
                                "the way for one task", non_negative),
    "robot": Param("panda", "Robot description: a name under config/robots/ (panda, xarm6) or "
                   "a YAML file naming base link, arm and gripper joints, TCP, home and limits",
                   read_only=True),
    "robot_description": Param("", "URDF text of the robot (as robot_state_publisher's "
                               "parameter); empty: the URDF file the robot's YAML names",
                               read_only=True),
    "velocity_scale": Param(0.5, "Fraction of the joint velocity limits the planner uses "
                            "(replaces the robot YAML's limits.velocity_scale)", positive),
    "world_frame": Param("world", "Frame of the scene priors, the path and the markers"),
    "scene_priors_topic": Param("/spatialpin/scene_priors", "ScenePriors input"),
    "joint_states_topic": Param("/joint_states", "Joint states of the arm and the gripper "
                                "(several publishers' messages merged by joint name)"),
    "joint_trajectory_topic": Param("/joint_trajectory_controller/joint_trajectory",
                                    "Where trajectories go (JointTrajectory)"),
    "use_follow_joint_trajectory": Param(False, "Send through a control_msgs "
                                         "FollowJointTrajectory action instead (ros2_control)"),
    "follow_joint_trajectory_action": Param(
        "/joint_trajectory_controller/follow_joint_trajectory", "FollowJointTrajectory action"),
    "gripper_follow_joint_trajectory_action": Param(
        "", "The gripper's own FollowJointTrajectory action (a second controller, as "
        "ros2_control setups often have); empty: the gripper joints go with the arm's"),
    "follow_joint_trajectory_timeout_s": Param(
        5.0, "Seconds to wait for the FollowJointTrajectory server, for its answer to a goal, "
        "for a cancelled goal to end, and for the result past the trajectory's end plus "
        "goal_time_tolerance_s", positive),
    "goal_time_tolerance_s": Param(
        1.0, "Sent as each FollowJointTrajectory goal's goal_time_tolerance: seconds after the "
        "trajectory's end the arm may take to settle within the controller's goal tolerance",
        non_negative),
    "joint_states_timeout_s": Param(
        1.0, "Seconds a goal waits for a joint state stamped after it started planning (a "
        "stale state would start the trajectory where the arm no longer is); the goal fails "
        "with the reason when none comes", positive),
    "start_tolerance_rad": Param(
        0.02, "Largest difference (rad or m, per joint) between where the arm is and the "
        "trajectory's first point when it is sent; past it the task is planned once more "
        "from where the arm is, and failing again nothing is sent (MoveIt's "
        "allowed_start_tolerance)", positive),
    "path_topic": Param("/spatialpin/planned_path", "Planned end-effector path (nav_msgs/Path)"),
    "plan_markers_topic": Param("/spatialpin/plan_markers", "The planned task for rviz "
                                "(MarkerArray: path by stage, grasp, goal poses, text)"),
    "action_name": Param("/spatialpin/execute_task", "ExecuteTask action name"),
    "verify_timeout_s": Param(10.0, "Seconds to wait for a fresh scene to check the result",
                              positive),
    "goal_policy": Param(
        "reject", "What a new ExecuteTask goal does while another runs (plans, executes or "
        "verifies): 'reject' refuses it and the running goal goes on; 'preempt' stops the "
        "running goal as ros2_control's joint_trajectory_controller does (the arm is stopped "
        "where it is and that goal ends ABORTED with 'preempted by a new goal'), waits for it "
        "to end, then starts the new one. Never two trajectories at once",
        one_of("reject", "preempt")),
    "fresh_scene_timeout_s": Param(
        5.0, "Seconds a goal waits for a scene stamped after its arrival, the last scene load "
        "(reset) and the end of the last arm motion, to be checked, planned and executed on; "
        "the goal fails with the reason when none comes", positive),
    "slip_retry": Param(True, "Check the object is in the hand after closing and after the "
                        "lift (finger gap and speed from the joint states); when the hand is "
                        "empty, stop, go home, re-perceive and try the task once more"),
    "scene_loaded_topic": Param(
        "/spatialpin/sim/scene_loaded", "Latched std_msgs/Header stamped at each scene load "
        "or reset (the simulator's); scenes stamped earlier are stale. Empty: none"),
}
