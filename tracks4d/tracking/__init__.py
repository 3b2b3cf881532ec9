"""2D point tracking: the built-in Lucas–Kanade grid tracker (:mod:`.lk`, re-exported here) and the optional
CoTracker backend (:mod:`.cotracker`)."""

from .lk import *  # noqa: F401,F403
from .lk import __all__  # noqa: F401
