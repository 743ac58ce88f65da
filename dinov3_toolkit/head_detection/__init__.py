"""Built-in head: COCO object detection with a light FPN and an FCOS head (Raessan's DinoFCOSHead layout)."""
