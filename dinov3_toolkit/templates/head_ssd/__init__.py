"""Template head: SSD (default boxes, hard-negative mining) on one feature map, after dinov3_stack; no weights."""
