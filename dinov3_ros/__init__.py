"""ROS 2 layer of dinov3_ros: the node, launch glue and result -> message conversion.

Everything model-related lives in ``dinov3_toolkit``, which never imports ROS.
"""
