"""The network stage: the TracksTo4D model, its losses, inference per window, stitching, fine-tuning, checkpoints
and the ONNX Runtime backend."""
