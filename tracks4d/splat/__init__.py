"""Gaussian splatting: one differentiable rasteriser with a CPU (numba), a pure-torch and a CUDA (gsplat) path."""

from .projection import Projected, project, quaternion_to_matrix
from .rasterize import BACKENDS, Rendered, rasterize

__all__ = ["BACKENDS", "Projected", "Rendered", "project", "quaternion_to_matrix", "rasterize"]
