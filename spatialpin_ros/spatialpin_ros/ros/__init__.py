"""ROS 2 glue: nodes and message conversions. The only part of the package that imports rclpy
or message packages (a test enforces it)."""
