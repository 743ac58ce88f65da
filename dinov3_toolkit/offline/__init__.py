"""The offline application (`dinov3 run/bag/demo`): frame sources, JSON Lines records, the run loop, Ctrl-C.

Only the command line and the bag tools use it; the engine and the ROS node do not.
"""
