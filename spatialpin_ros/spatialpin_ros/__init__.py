"""spatialpin_ros: 3D scene priors from camera images, spatial questions, and acting on them.

The package is split in two:

* a ROS-free core (``core``, ``perception``, ``reasoning``, ``vlm``, ``planning``, ``sim``), plain
  Python that imports no rclpy and no message package;
* the ROS glue (``ros``): nodes and message conversions, the only place that imports rclpy.
"""

__version__ = "0.1.0"
