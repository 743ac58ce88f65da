"""Built-in head: ASPP semantic segmentation, background + 133 COCO-panoptic classes."""
