"""The Gaussian rasteriser: projection, tiling, the numba path against the pure-torch reference (values and
gradients), a float64 gradient check, and gsplat parity where a GPU is present."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from tracks4d.splat import project, rasterize
from tracks4d.splat.cpu import composite_cpu
from tracks4d.splat.projection import BLUR_PX
from tracks4d.splat.tiles import TILE, bin_tiles

K = torch.tensor([[60.0, 0.0, 31.5], [0.0, 60.0, 23.5], [0.0, 0.0, 1.0]])


def random_scene(count: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(count, 3, generator=g) * torch.tensor([0.8, 0.6, 0.4]) + torch.tensor([0.0, 0.0, 4.0])
    quats = torch.randn(count, 4, generator=g)
    scales = 0.02 + 0.15 * torch.rand(count, 3, generator=g)
    opacities = 0.05 + 0.9 * torch.rand(count, generator=g)
    features = torch.rand(count, 4, generator=g)
    return [t.to(dtype) for t in (means, quats, scales, opacities, features)]


def render(backend: str, params, width=64, height=48, background=None):
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    like = params[0]
    out = rasterize(*leaves, K.to(like), torch.eye(4).to(like), width, height, background=background,
                    backend=backend)
    weights = torch.linspace(0.5, 1.5, out.features.shape[-1]).to(like)
    ((out.features * weights).sum() + 0.7 * out.alpha.sum() + 0.05 * out.depth.sum()).backward()
    return out, [p.grad for p in leaves]


def test_projection_of_an_isotropic_gaussian():
    proj = project(torch.tensor([[0.5, -0.25, 5.0]]), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.1), K,
                   torch.eye(4), 64, 48)
    assert torch.allclose(proj.means2d, torch.tensor([[31.5 + 6.0, 23.5 - 3.0]]))
    assert proj.depths.item() == pytest.approx(5.0)
    # on-axis σ = f·s/z px; the Jacobian's off-axis terms tilt it a little
    var = (60 * 0.1 / 5) ** 2 + BLUR_PX
    assert proj.conics[0, 0].item() == pytest.approx(1 / var, rel=0.02)
    assert proj.radii.item() >= 3 * np.sqrt(var)


def test_culling_behind_and_off_screen():
    means = torch.tensor([[0.0, 0.0, -1.0], [100.0, 0.0, 2.0], [0.0, 0.0, 2.0]])
    proj = project(means, torch.tensor([[1.0, 0, 0, 0]] * 3), torch.full((3, 3), 0.05), K, torch.eye(4), 64, 48)
    assert proj.radii.tolist()[:2] == [0, 0] and proj.radii[2] > 0


def test_tiles_hold_each_splat_where_its_square_reaches_sorted_near_to_far():
    rng = np.random.default_rng(0)
    means2d = rng.uniform(-10, 80, (50, 2))
    radii = rng.integers(0, 20, 50)
    depths = rng.uniform(1, 5, 50)
    tiles = bin_tiles(means2d, radii, depths, 64, 48)
    assert tiles.tiles_x == 4 and tiles.tiles_y == 3
    for t in range(12):
        x0, x1, y0, y1 = tiles.pixels(t, 64, 48)
        got = tiles.gaussians[tiles.ranges[t]:tiles.ranges[t + 1]]
        assert np.all(np.diff(depths[got]) >= 0)
        want = [g for g in range(50) if radii[g] > 0
                and np.floor((means2d[g, 0] - radii[g]) / TILE) * TILE < x1 and means2d[g, 0] + radii[g] >= x0
                and np.floor((means2d[g, 1] - radii[g]) / TILE) * TILE < y1 and means2d[g, 1] + radii[g] >= y0]
        assert sorted(got.tolist()) == sorted(want)


def test_one_splat_composites_over_the_background():
    params = [torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.2),
              torch.tensor([0.6]), torch.tensor([[1.0, 0.5, 0.0, 2.0]])]
    background = torch.tensor([0.0, 0.0, 1.0, 0.0])
    for backend in ("cpu", "torch"):
        out = rasterize(*params, K, torch.eye(4), 64, 48, background=background, backend=backend)
        # the splat's centre falls between pixels (31.5, 23.5): its four nearest pixels see the same α
        alpha = out.alpha[23, 31].item()
        assert 0.5 < alpha < 0.6
        assert torch.allclose(out.features[23, 31], alpha * params[4][0] + (1 - alpha) * background, atol=1e-6)
        assert out.depth[23, 31].item() == pytest.approx(alpha * 3.0, rel=1e-5)
        assert out.alpha[0, 0].item() == 0.0 and torch.equal(out.features[0, 0], background)


def test_cpu_matches_the_torch_reference():
    params = random_scene(300)
    ref, ref_grads = render("torch", params)
    out, grads = render("cpu", params)
    assert ref.alpha.max() > 0.9                     # overlapping splats: ordering and transmittance matter
    for a, b in ((out.features, ref.features), (out.alpha, ref.alpha), (out.depth, ref.depth)):
        assert torch.allclose(a, b, atol=2e-5)
    for name, a, b in zip(("means", "quats", "scales", "opacities", "features"), grads, ref_grads):
        assert torch.isfinite(a).all()
        assert (a - b).abs().max() <= 1e-4 * b.abs().max(), name


def test_cpu_compositing_passes_a_float64_gradient_check():
    params = random_scene(5, seed=3, dtype=torch.float64)
    proj = project(params[0], params[1], params[2], K.double(), torch.eye(4, dtype=torch.float64), 20, 16)
    tiles = bin_tiles(proj.means2d.numpy(), proj.radii.numpy(), proj.depths.numpy(), 20, 16)
    inputs = [t.detach().clone().requires_grad_(True)
              for t in (proj.means2d, proj.conics, 0.2 + 0.5 * params[3], params[4])]
    background = torch.tensor([0.1, 0.2, 0.3, 0.0], dtype=torch.float64)

    def composite(means2d, conics, opacities, features):
        return composite_cpu(means2d, conics, opacities, features, background, tiles, 20, 16)

    assert torch.autograd.gradcheck(composite, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_full_rasterizer_passes_a_float64_gradient_check():
    means, quats, scales, opacities, features = random_scene(4, seed=5, dtype=torch.float64)
    opacities = 0.2 + 0.5 * opacities
    inputs = [t.detach().clone().requires_grad_(True) for t in (means, quats, scales, opacities, features)]

    def render_all(*args):
        out = rasterize(*args, K.double(), torch.eye(4, dtype=torch.float64), 20, 16, backend="cpu")
        return out.features, out.alpha, out.depth

    assert torch.autograd.gradcheck(render_all, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend"):
        rasterize(*random_scene(3), K, torch.eye(4), 8, 8, backend="opengl")


@pytest.mark.skipif(not (torch.cuda.is_available() and importlib.util.find_spec("gsplat")),
                    reason="gsplat parity needs a CUDA GPU and gsplat")
def test_gsplat_matches_the_cpu_path():  # pragma: no cover - GPU only
    params = random_scene(300)
    ref, ref_grads = render("cpu", params)
    out, grads = render("gsplat", [p.cuda() for p in params])
    assert (out.features.cpu() - ref.features).abs().max() < 1e-2
    assert (out.alpha.cpu() - ref.alpha).abs().max() < 1e-2
    for a, b in zip(grads, ref_grads):
        assert (a.cpu() - b).abs().max() <= 0.05 * b.abs().max()
