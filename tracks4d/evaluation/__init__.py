"""Evaluation: trajectory and depth metrics, the scene renderer with exact ground truth, TAP-Vid scoring."""
