"""Files in and out: video decoding, trajectory files, reconstruction outputs, pictures, the 3D viewer."""
