"""2D point tracking: the built-in Lucas–Kanade grid tracker (:mod:`.lk`, re-exported here), the optional
CoTracker backend (:mod:`.cotracker`) and the tracks of returning views seen again where they return
(:mod:`.revisits`)."""

from .lk import *  # noqa: F401,F403
from .lk import __all__  # noqa: F401
