"""Template head: RetinaNet (anchors, focal loss) on one feature map, after dinov3_stack; no published weights."""
