"""Motion levels: geometry decides where it is sure; the network's γ fills in only as far as it agrees with it."""

import numpy as np

from tracks4d.geometry.motion import motion_levels


def clip(seed: int = 0, n: int = 30, p: int = 200, short: int = 40):
    """Static-fit errors of p tracks (a quarter moving: errors of 8 px) of which ``short`` are seen in 3 frames."""
    rng = np.random.default_rng(seed)
    moving = np.arange(p) % 4 == 0
    errors = np.abs(rng.normal(0, 0.5, (n, p))) + 8.0 * moving
    visible = np.ones((n, p), bool)
    visible[3:, p - short:] = False
    return np.where(visible, errors, np.nan), visible, moving


def auc_short(gamma, moving, short):
    g, m = gamma[-short:], moving[-short:]
    return np.mean(g[m][:, None] > g[~m][None])


def test_the_network_fills_in_short_tracks_only_when_it_agrees_with_geometry():
    errors, visible, moving = clip()
    rng = np.random.default_rng(1)
    good = moving + 0.3 * rng.random(moving.size)            # ranks movers above static tracks
    bad = 1.0 - good                                         # ranks them below (the shipped network does)
    trusted = motion_levels(errors, visible, 500.0, good)
    ignored = motion_levels(errors, visible, 500.0, bad)
    assert trusted.network_trust > 0.8 and ignored.network_trust == 0.0
    # short tracks (3 frames): geometry alone is weak there; a network that agrees helps, one that disagrees is not used
    geometry = motion_levels(errors, visible, 500.0)
    np.testing.assert_allclose(ignored.gamma, geometry.gamma)
    assert auc_short(trusted.gamma, moving, 40) >= auc_short(geometry.gamma, moving, 40)
    assert ignored.to_meta()["network_trust"] == 0.0
