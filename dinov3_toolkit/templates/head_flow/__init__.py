"""Optical flow between consecutive frames of one stream (a LiteFlowHead layout)."""
