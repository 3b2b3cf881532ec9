"""2D point tracking: the settings and query schedule (:mod:`.config`), the built-in Lucas–Kanade grid tracker
(:mod:`.lk`), the optional CoTracker backend (:mod:`.cotracker`), the choice between them (:mod:`.dispatch`) — all
re-exported here but CoTracker's — and the tracks of returning views seen again where they return
(:mod:`.revisits`)."""

from .config import *  # noqa: F401,F403
from .dispatch import *  # noqa: F401,F403
from .lk import *  # noqa: F401,F403
from . import config, dispatch, lk

__all__ = config.__all__ + lk.__all__ + dispatch.__all__
