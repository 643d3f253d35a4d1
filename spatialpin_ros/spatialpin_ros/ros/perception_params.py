"""The perception node's parameters: name, default, description and check of each (declared
by ``PerceptionNode``; ``config/perception.yaml`` holds the same defaults, read alike by the
launch files and ``spatialpin bringup``)."""

from __future__ import annotations

from spatialpin_ros.perception.depth_scale import MIN_MEDIAN_DEPTH_M
from spatialpin_ros.ros.params import Param, non_negative, numbers, one_of, positive

PARAMS = {
    "backend": Param("geometric", "Perception backend: geometric (no weights, CPU) or models "
                     "(depth, detection and segmentation models)", one_of("geometric", "models")),
    "models.depth_model": Param("depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf",
                                "models backend: metric depth model (Hugging Face id or local "
                                "path), used when the camera gives no depth"),
    "models.detector_model": Param("google/owlv2-base-patch16-ensemble", "models backend: "
                                   "open-vocabulary detector (id or path)"),
    "models.segmenter_model": Param("facebook/sam-vit-base", "models backend: promptable "
                                    "segmenter (id or path)"),
    "models.object_names": Param(["block", "cube", "cylinder", "ball", "cup", "bowl", "can"],
                                 "models backend: names the detector looks for"),
    "models.names_source": Param("both", "models backend: object names to look for from the "
                                 "parameter list, from the VLM (object_names_topic), or both",
                                 one_of("parameter", "vlm", "both")),
    "models.object_names_topic": Param("/spatialpin/object_names", "models backend: the VLM's "
                                       "object list (std_msgs/String, SpatialPIN's 'Object idx: "
                                       "x of color y ...' lines)"),
    "models.box_threshold": Param(0.3, "models backend: detector score threshold (SpatialPIN: "
                                  "0.3)"),
    "models.device": Param("auto", "models backend: auto, cuda or cpu (CPU with a warning)"),
    "models.cuda_graphs": Param(True, "models backend: capture each frame as a CUDA graph on "
                                "the GPU (falls back to eager with a warning)"),
    "models.overlap_lifting": Param(True, "models backend: lift the depth-only half of each "
                                    "frame on the host while the GPU runs the detector and SAM"),
    "models.lifting": Param("auto", "models backend: where the masks are lifted to priors: "
                            "torch (on the models' device, the masks stay there; the same "
                            "priors), numpy (the geometric code on the host), or auto (torch on "
                            "a GPU, else numpy)", one_of("auto", "numpy", "torch")),
    "models.lifting_compile": Param(False, "models backend, torch lifting on CUDA: torch.compile "
                                    "the lifting's device half inside its CUDA graph (about 2 ms "
                                    "less a frame; the first frame runs eagerly, the second "
                                    "compiles for about a minute; "
                                    "priors equal to the uncompiled path's up to rounding)"),
    "models.fov_deg": Param(60.0, "models backend: vertical field of view when no camera_info "
                            "is published", positive),
    "models.plane_distance": Param(0.0, "models backend: known camera height above the table "
                                   "(m) to align monocular depth's scale; 0 = none"),
    "geometric.flat_items": Param("list", "geometric backend: thin things lying on the table "
                                  "(paper, boards, a phone): list them in the ScenePriors' "
                                  "flat_items, or drop them", one_of("list", "drop")),
    "geometric.max_object_size": Param(0.5, "geometric backend: largest object footprint (m); "
                                       "larger pieces (furniture, walls, monitors) are not "
                                       "objects", positive),
    "geometric.min_object_height": Param(0.015, "geometric backend: smallest object height (m) "
                                         "above what it rests on", non_negative),
    "geometric.edge_cuts": Param(True, "geometric backend: cut pieces along strong colour edges "
                                 "into flat-coloured objects (never textured or labelled ones)"),
    "geometric.edge_step": Param(12.0, "geometric backend: colour difference between "
                                 "neighbouring pixels that is an edge (rg chromaticity x 300 "
                                 "plus 0.2 x lightness)", positive),
    "geometric.sink_tolerance": Param(0.01, "geometric backend: an object rests on another only "
                                      "if its lowest visible point is at most this far (m) "
                                      "below the other's top", non_negative),
    "geometric.carry_margin": Param(0.0, "geometric backend: a box base seen from one face "
                                    "grows on its hidden side to hold what stands on it, plus "
                                    "this margin (m)", non_negative),
    "geometric.join_share": Param(0.5, "geometric backend: two fitted objects whose boxes share "
                                  "at least this much of the smaller one's volume are one "
                                  "object (0: off)", non_negative),
    "geometric.top_circle_ratio": Param(1.25, "geometric backend: no cylinder whose diameter "
                                        "exceeds this many times the diagonal of its seen top "
                                        "face (a box face fits a circle of any size)", positive),
    "geometric.corner_share": Param(0.06, "geometric backend: a top face with more than this "
                                    "share of its points in its rectangle's corners (by two "
                                    "standard deviations) is a box's, not a can's or a ball's "
                                    "(0: off)", non_negative),
    "geometric.keep_freed_memory": Param(
        True, "geometric backend: raise glibc's mmap and trim thresholds once for the process, "
        "so a frame's arrays reuse the last frame's freed memory (a few ms a frame; up to 256 MB "
        "of freed heap kept); false leaves malloc as it is"),
    "world_frame": Param("world", "World frame id of the published priors (z up)"),
    "rgb_only": Param(False, "RGB camera without depth: process colour alone (camera_info when "
                      "published, else intrinsics from models.fov_deg); needs the models backend "
                      "for depth and a camera pose from the parameter, topic or TF"),
    "camera_pose": Param([], "Camera optical-frame pose in the world frame [x, y, z, qx, qy, qz, "
                         "qw]; empty = from camera_pose_topic, else from TF", numbers(7)),
    "camera_pose_topic": Param("/spatialpin/sim/camera_pose", "PoseStamped of the camera optical "
                               "frame in the world frame; empty = not used"),
    "use_tf": Param(True, "Look the camera pose up in TF (world_frame <- image frame) when tf2_ros "
                    "is installed and no other source is set"),
    "pose_from_plane": Param(True, "With no camera pose from any source, perceive in a gravity "
                             "frame built from the support plane (frame plane_frame; hand-held "
                             "cameras): heights and sizes stay metric, x/y follow the camera"),
    "plane_frame": Param("support_plane", "Frame id of scenes perceived in the support-plane "
                         "gravity frame"),
    "color_topic": Param("/camera/camera/color/image_raw", "Colour image topic (rgb8, bgr8, "
                         "rgba8, bgra8, mono8); default: realsense-ros 4.x"),
    "depth_topic": Param("/camera/camera/aligned_depth_to_color/image_raw", "Depth aligned to "
                         "colour (32FC1 metres or 16UC1 millimetres; realsense-ros: "
                         "align_depth.enable:=true)"),
    "depth_min_median_m": Param(MIN_MEDIAN_DEPTH_M, "A frame whose median valid depth is "
                                "nearer than this (m) is refused as bad_image ('depth scale "
                                "looks wrong': 16UC1 not in millimetres); 0 = no check",
                                non_negative),
    "camera_info_topic": Param("/camera/camera/color/camera_info", "Camera info of the colour "
                               "image"),
    "scene_priors_topic": Param("/spatialpin/scene_priors", "Published ScenePriors, one per "
                                "processed frame (status and status_message say how it went)"),
    "markers_topic": Param("/spatialpin/markers", "Published MarkerArray for rviz"),
    "cloud_topic": Param("/spatialpin/scene_cloud", "Published PointCloud2 (world frame)"),
    "status_topic": Param("/spatialpin/perception/status", "Status per processed frame "
                          "(std_msgs/String): 'ok: ...' or 'error: <status>: <reason>'"),
    "detections_topic": Param("/spatialpin/detections_3d", "Published vision_msgs/Detection3DArray "
                              "(only where vision_msgs is installed)"),
    "max_rate_hz": Param(5.0, "Most frames processed per second; newer frames replace unprocessed "
                         "ones", positive),
    "sync_slop_s": Param(0.05, "Largest stamp difference (s) between paired colour, depth and "
                         "camera_info", positive),
    "sync_queue_size": Param(5, "Messages kept per input stream while pairing", positive),
    "scene_history": Param(10, "Scenes kept by id (for questions about two views)", positive),
    "cloud_stride": Param(4, "Publish every n-th pixel (in each direction) in the scene cloud",
                          positive),
    "publish_cloud": Param(True, "Publish the scene point cloud"),
    "publish_markers": Param(True, "Publish rviz markers"),
    "scene_id_prefix": Param("scene", "Scene ids are <prefix>_<token>_<n>"),
    "scene_id_token": Param("", "Token in the scene ids; empty = 6 random hex digits drawn at "
                            "start-up, so ids are unique across restarts", read_only=True),
    "self_filter.enabled": Param(True, "Remove the robot's own body from the depth image before "
                                 "segmenting (needs self_filter.urdf, /joint_states and a camera "
                                 "pose in the robot's world frame)"),
    "self_filter.robot": Param("panda", "Robot description (a name under config/robots/ or a "
                               "YAML file) whose URDF and base position the self-filter uses "
                               "when self_filter.urdf is empty; both empty = no self-filter",
                               read_only=True),
    "self_filter.urdf": Param("", "Robot model for the self-filter: a URDF file, a path under "
                              "pybullet_data or the URDF XML (robot_description); empty = the "
                              "URDF of self_filter.robot", read_only=True),
    "self_filter.base_pose": Param([], "Robot base pose in world_frame [x, y, z, qx, qy, qz, qw]; "
                                   "empty = the world origin", numbers(7), read_only=True),
    "self_filter.joint_states_topic": Param("/joint_states", "JointState topic that poses the "
                                            "robot model", read_only=True),
    "self_filter.margin_m": Param(0.02, "Margin around the robot's links (m, at the arm's "
                                  "nearest depth in view); measured depth this much in front of "
                                  "the arm is kept", non_negative),
    "self_filter.margin_px": Param(4, "Pixels added to the self-filter margin", non_negative),
}
