"""Training: datasets (synthetic scenes, track folders) and the trainer behind `tracks4d-train`."""
