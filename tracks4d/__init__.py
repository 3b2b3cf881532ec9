"""tracks4d: 2D point tracks of a casual video → cameras and per-frame 3D points (TracksTo4D)."""

from .contracts import ContractError, GroundTruth, Reconstruction, TrackSet
from .network.model import PRESETS, ModelConfig, ModelOutput, TracksTo4D
from .pipeline import reconstruct

__version__ = "0.1.0"

__all__ = ["ContractError", "GroundTruth", "Reconstruction", "TrackSet", "PRESETS", "ModelConfig", "ModelOutput",
           "TracksTo4D", "reconstruct", "__version__"]
