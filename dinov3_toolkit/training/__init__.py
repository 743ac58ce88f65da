"""Training and evaluating heads on frozen backbone features (``dinov3 train`` / ``dinov3 eval``).

ROS-free like the rest of the toolkit. See docs/training.md.
"""
