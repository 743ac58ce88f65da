"""Tools around the engine that the node never runs: ONNX export, the benchmark and the
transformers twin of our ViT (the benchmark's reference and the tests')."""
