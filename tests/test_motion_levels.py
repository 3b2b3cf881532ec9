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


def _camera_clip(n=30, seed=0):
    """A camera sliding sideways past a wall of static points (z 8–12), an object of 20 points moving rigidly upward
    in front, 6 lost tracks (static points whose track jumps 15 px at frame 10–19) and the slowly drifting static
    tracks every tracker has. → tracks (N, P, 2), visible, cameras, kind (P,): 0 static, 1 object, 2 lost."""
    from tracks4d.contracts import Cameras
    from tracks4d.geometry.transforms import pose_matrix

    rng = np.random.default_rng(seed)
    k = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    w2c = np.stack([np.linalg.inv(pose_matrix(np.eye(3), np.array([0.04 * t, 0, 0]))) for t in range(n)])
    wall = np.column_stack([rng.uniform(-5, 5, 200), rng.uniform(-4, 4, 200), rng.uniform(8, 12, 200)])
    body = np.column_stack([rng.uniform(-0.5, 0.5, 20), rng.uniform(-0.5, 0.5, 20), rng.uniform(4.8, 5.2, 20)])
    world = np.concatenate([np.repeat(wall[None], n, 0),
                            body[None] + np.array([0, -0.05, 0]) * np.arange(n)[:, None, None]], 1)
    cam = np.einsum("nij,npj->npi", w2c[:, :3, :3], world) + w2c[:, None, :3, 3]
    tracks = cam[..., :2] / cam[..., 2:] * 500 + np.array([320, 240]) + rng.normal(0, 0.3, cam.shape[:2] + (2,))
    kind = np.r_[np.zeros(200, int), np.ones(20, int)]
    lost = rng.choice(200, 6, replace=False)
    for p in lost:                                       # a jump to another surface, 15 px across the epipolar lines
        tracks[rng.integers(10, 20):, p, 1] += rng.choice([-15.0, 15.0])
    kind[lost] = 2
    return tracks, np.ones((n, 220), bool), Cameras(w2c, np.broadcast_to(k, (n, 3, 3)).copy()), kind


def test_three_way_decision_static_moving_unreliable():
    """A rigidly moving object is moving; a track that fails the static fit alone is unreliable, never moving."""
    from tracks4d.geometry.motion import MOVING, STATIC, UNRELIABLE, motion_states, static_fit

    tracks, visible, cameras, kind = _camera_clip()
    _, errors = static_fit(tracks, visible, cameras, rotation_only=False)
    levels = motion_levels(errors, visible, 500.0)
    state = motion_states(tracks, visible, cameras, levels, (640, 480))
    assert state.dtype == np.int8
    assert (state[kind == 1] == MOVING).mean() >= 0.9
    assert (state[kind == 2] == UNRELIABLE).all()
    assert (state[kind == 0] == STATIC).mean() >= 0.98 and not (state[kind == 0] == MOVING).any()
    meta = levels.with_states(state).to_meta()
    assert meta["states"] == {"static": int((state == 0).sum()), "moving": int((state == 1).sum()),
                              "unreliable": int((state == 2).sum())}


def test_static_threshold_adapts_to_the_clips_spread():
    """Static tracks that drift a little more than the noise level (a common LK artefact) stay still (the static
    state), while the static set geometry is built on stays strict."""
    rng = np.random.default_rng(3)
    n, p = 40, 300
    drift = rng.gamma(2.0, 0.4, p)                       # per-track drift, px: most small, a tail to ~3 px
    errors = np.abs(rng.normal(0, 0.3, (n, p))) + drift * np.linspace(0, 1, n)[:, None]
    moving = np.arange(p) < 30
    errors[:, moving] += 20.0
    levels = motion_levels(errors, np.ones((n, p), bool), 500.0)
    assert levels.still_px > 4 * levels.noise_px
    assert levels.still[~moving].mean() > 0.98 and not levels.still[moving].any()
    assert levels.static[~moving].mean() < levels.still[~moving].mean() and not levels.static[moving].any()


def test_a_mover_that_fits_a_static_point_at_a_wrong_depth_is_moving():
    """Points sliding with the camera at 0.7 × its speed fit a static point well — three times as far as they are,
    beyond every static surface around them. A residual above the static set's but under the clip's adaptive
    threshold says still; the depth of that static point says no."""
    from dataclasses import replace

    from tracks4d.geometry.motion import MOVING, STATIC, motion_states, static_fit

    tracks, visible, cameras, kind = _camera_clip()
    rng = np.random.default_rng(7)
    n = tracks.shape[0]
    slider = np.column_stack([rng.uniform(1.5, 2.5, 12), rng.uniform(-1.0, 0.0, 12), rng.uniform(6.8, 7.2, 12)])
    world = slider[None] + np.array([0.028, 0, 0]) * np.arange(n)[:, None, None]    # camera moves 0.04 a frame
    w2c = cameras.world_to_camera
    cam = np.einsum("nij,npj->npi", w2c[:, :3, :3], world) + w2c[:, None, :3, 3]
    pixels = cam[..., :2] / cam[..., 2:] * 500 + np.array([320, 240]) + rng.normal(0, 0.3, cam.shape[:2] + (2,))
    tracks = np.concatenate([tracks, pixels], 1)
    visible = np.ones(tracks.shape[:2], bool)
    placed, errors = static_fit(tracks, visible, cameras, rotation_only=False)
    levels = motion_levels(errors, visible, 500.0)
    in_band = np.r_[np.zeros(220, bool), np.ones(12, bool)]            # as if their residual sat in the band
    levels = replace(levels, static=levels.static & ~in_band, still_px=max(levels.still_px, 10.0))
    blind = motion_states(tracks, visible, cameras, levels, (640, 480))
    state = motion_states(tracks, visible, cameras, levels, (640, 480), placed)
    assert (blind[-12:] == STATIC).all() and (state[-12:] == MOVING).mean() >= 0.9
    assert not (state[:220][kind == 0] == MOVING).any()


def test_noise_level_holds_when_a_close_mover_has_most_tracks():
    """Two thirds of the tracks on a mover (errors 8–20 px): the noise level still comes from the static third, so
    the static set keeps none of the mover."""
    rng = np.random.default_rng(4)
    n, p = 30, 300
    moving = np.arange(p) < 200
    errors = np.abs(rng.normal(0, 0.5, (n, p))) + rng.uniform(8, 20, p) * moving
    levels = motion_levels(errors, np.ones((n, p), bool), 500.0)
    assert levels.noise_px < 1.0
    assert not levels.static[moving].any() and levels.static[~moving].mean() > 0.9


def test_an_unreliable_track_whose_static_fit_is_off_the_scene_is_not_left_there():
    """The static fit of a track that failed it can lie 30× beyond the scene (a mover sliding along its rays): it is
    kept only within the static tracks' depth range."""
    from tracks4d.geometry.motion import static_fit
    from tracks4d.geometry.points import _in_scene

    tracks, visible, cameras, kind = _camera_clip()
    fitted, _ = static_fit(tracks, visible, cameras, rotation_only=False)
    static = kind == 0
    far = fitted.copy()
    far[~static] = fitted[~static] * [1, 1, 30]                 # the object's fits, 30× as deep
    assert _in_scene(fitted, visible, cameras, static)[static].all()
    assert not _in_scene(far, visible, cameras, static)[~static].any()
