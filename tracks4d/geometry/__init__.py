"""Geometry stages: rigid/similarity transforms (:mod:`.transforms`, re-exported here), cameras from tracks
(:mod:`.track_sfm`), bundle adjustment (:mod:`.bundle_adjust`)."""

from .transforms import *  # noqa: F401,F403
from .transforms import __all__  # noqa: F401
