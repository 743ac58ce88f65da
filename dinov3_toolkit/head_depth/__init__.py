"""Built-in head: a small DPT-style monocular depth decoder (DepthHeadLite)."""
