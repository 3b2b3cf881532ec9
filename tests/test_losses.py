"""Losses on hand-computed cases."""

import math

import torch

from tracks4d.geometry import project_normalized, rot6d_to_matrix
from tracks4d.network.losses import LossWeights, cauchy_nll, pretrain_camera_loss, supervised_loss, tracks4d_loss
from tracks4d.network.model import ModelOutput, to_camera


def scene(n=4, p=6, k=3, seed=0, requires_grad=False):
    """Cameras on a line looking down +z at points around z = 5, with a small dynamic component."""
    g = torch.Generator().manual_seed(seed)
    rotation = torch.eye(3).expand(1, n, 3, 3).clone()
    centre = torch.zeros(1, n, 3)
    centre[0, :, 0] = torch.linspace(-0.5, 0.5, n)
    bases = torch.randn(1, p, k, 3, generator=g) * 0.1
    bases[:, :, 0] = torch.randn(1, p, 3, generator=g) + torch.tensor([0.0, 0.0, 5.0])
    coeff = torch.randn(1, n, k, generator=g)
    coeff[..., 0] = 1
    gamma = torch.rand(1, p, generator=g) + 0.5
    tensors = [rotation, centre, coeff, bases, gamma]
    if requires_grad:
        tensors = [t.requires_grad_() for t in tensors]
    return ModelOutput(*tensors, torch.ones(1, n))


def observe(out: ModelOutput, static: bool = False):
    pts = out.static_points[:, None].expand(-1, out.centre.shape[1], -1, -1) if static else out.points()
    return project_normalized(to_camera(pts, out.rotation, out.centre)).detach()


def test_perfect_reconstruction_has_zero_reprojection():
    out = scene()
    target = observe(out)
    visible = torch.ones(target.shape[:3], dtype=torch.bool)
    terms = tracks4d_loss(out, target, visible)
    assert terms.reprojection.item() < 1e-6
    assert terms.negative_depth.item() == 0.0


def test_static_term_hand_value():
    out = scene()
    target = observe(out, static=True)
    visible = torch.ones(target.shape[:3], dtype=torch.bool)
    terms = tracks4d_loss(out, target, visible)
    # B1 explains the tracks exactly: r = 0, so the term is mean log γ
    expected = out.motion_level.log().mean()
    assert abs(terms.static.item() - expected.item()) < 1e-5


def test_cauchy_minimum_is_at_gamma_equal_r():
    for r in (0.01, 0.3, 2.0):
        gammas = torch.linspace(r / 10, r * 10, 20001)
        best = gammas[cauchy_nll(torch.tensor(r), gammas).argmin()]
        assert abs(best.item() - r) / r < 1e-3
        assert abs(cauchy_nll(torch.tensor(r), torch.tensor(r)).item() - math.log(2 * r)) < 1e-6


def test_negative_depth_hand_value():
    out = scene(n=2, p=1, k=1)
    out.bases[0, 0, 0] = torch.tensor([0.0, 0.0, -2.0])  # behind both cameras at z = 0 → Z = −2
    target = torch.zeros(1, 2, 1, 2)
    visible = torch.tensor([[[True], [False]]])
    terms = tracks4d_loss(out, target, visible)
    assert abs(terms.negative_depth.item() - 2.0) < 1e-6  # only the visible entry counts


def test_sparse_hand_value():
    out = scene(n=2, p=2, k=2)
    out.bases[0, :, 1] = torch.tensor([[1.0, -2.0, 3.0], [0.0, 0.0, 0.0]])
    out.motion_level[:] = torch.tensor([[2.0, 1.0]])
    terms = tracks4d_loss(out, observe(out), torch.ones(1, 2, 2, dtype=torch.bool))
    assert abs(terms.sparse.item() - (6.0 / 2.0) / 6.0) < 1e-6  # mean over 2 tracks × 3 coords of |B|/γ


def test_weights_and_total():
    out = scene()
    target = observe(out) + 0.01
    visible = torch.ones(target.shape[:3], dtype=torch.bool)
    t = tracks4d_loss(out, target, visible)
    expected = 50 * t.reprojection + t.static + t.negative_depth + 0.001 * t.sparse
    assert torch.allclose(t.total, expected)
    t2 = tracks4d_loss(out, target, visible, weights=LossWeights(reprojection=0.0, sparse=0.0))
    assert torch.allclose(t2.total, t.static + t.negative_depth)


def test_reprojection_term_detaches_cameras_and_static_basis():
    out = scene(requires_grad=True)
    target = observe(out) + 0.05
    terms = tracks4d_loss(out, target, torch.ones(target.shape[:3], dtype=torch.bool))
    terms.reprojection.backward()
    assert out.rotation.grad is None and out.centre.grad is None
    assert out.bases.grad[:, :, 0].abs().sum() == 0  # B1 detached
    assert out.bases.grad[:, :, 1:].abs().sum() > 0 and out.coefficients.grad.abs().sum() > 0


def test_masked_entries_do_not_count():
    out = scene()
    target = observe(out)
    visible = torch.ones(target.shape[:3], dtype=torch.bool)
    target_bad = target.clone()
    target_bad[0, 0, 0] += 100.0
    visible_bad = visible.clone()
    visible_bad[0, 0, 0] = False
    assert tracks4d_loss(out, target_bad, visible_bad).reprojection.item() < 1e-6


def test_pretrain_loss():
    out = scene(n=3)
    out.centre[:] = torch.tensor([0.0, 0.0, -15.0])
    assert pretrain_camera_loss(out).item() < 1e-12
    out.centre[0, 0] = torch.tensor([10.0, 0.0, -15.0])  # one of three frames off by 10: 100/100/3
    assert abs(pretrain_camera_loss(out).item() - 1.0 / 3.0) < 1e-6
    mask = torch.tensor([[False, True, True]])
    assert pretrain_camera_loss(out, mask).item() < 1e-12


def ground_truth_of(out: ModelOutput):
    """The true camera-frame points (1, N, P, 3) and camera-to-world poses (1, N, 4, 4) of a scene."""
    return to_camera(out.points(), out.rotation, out.centre).detach(), out.camera_to_world().detach()


def similar(out: ModelOutput, scale: float, seed: int = 3) -> ModelOutput:
    """The same scene seen through a Sim(3) of the world: every camera-frame point scales by ``scale``."""
    g = torch.Generator().manual_seed(seed)
    rot = rot6d_to_matrix(torch.randn(6, generator=g))
    shift = torch.randn(3, generator=g)
    world = lambda x: scale * x @ rot.T + shift  # noqa: E731
    bases = out.bases.clone()
    bases[:, :, 0] = world(out.bases[:, :, 0])
    bases[:, :, 1:] = scale * out.bases[:, :, 1:] @ rot.T
    return ModelOutput(rot @ out.rotation, world(out.centre), out.coefficients, bases, out.motion_level,
                       out.focal_scale)


def test_supervised_loss_is_zero_up_to_similarity_and_grows_with_errors():
    truth = scene(n=6, p=10)
    points, poses = ground_truth_of(truth)
    mask, has = torch.ones(points.shape[:3], dtype=torch.bool), torch.ones(1, dtype=torch.bool)
    exact = supervised_loss(similar(truth, 2.5), points, poses, mask, has)
    assert all(v.item() < 1e-5 for v in exact.values())
    bent = similar(truth, 2.5)
    bent.rotation[0, 3] = rot6d_to_matrix(torch.tensor([1.0, 0.1, 0.0, -0.1, 1.0, 0.0])) @ bent.rotation[0, 3]
    moved = similar(truth, 2.5)
    moved.centre[0, 2] += 0.3
    wrong = supervised_loss(bent, points, poses, mask, has)
    assert wrong["rotation"].item() > 0.01 and wrong["points"].item() > 1e-3
    assert supervised_loss(moved, points, poses, mask, has)["translation"].item() > 1e-3


def test_supervised_loss_ignores_windows_without_ground_truth_and_masked_entries():
    truth = scene(n=5, p=8)
    points, poses = ground_truth_of(truth)
    mask = torch.ones(points.shape[:3], dtype=torch.bool)
    garbage = points.clone()
    garbage[0, :, -2:] = 50.0                                 # wrong truth only on masked tracks
    mask[0, :, -2:] = False
    kept = supervised_loss(truth, garbage, poses, mask, torch.ones(1, dtype=torch.bool))
    assert kept["points"].item() < 1e-5
    none = supervised_loss(truth, garbage, poses, mask, torch.zeros(1, dtype=torch.bool))
    assert all(v.item() == 0.0 for v in none.values())
