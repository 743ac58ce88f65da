"""Template head: DETR-style set-prediction detector (learned queries, transformer decoder, Hungarian matching)."""
