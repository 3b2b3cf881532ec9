"""Motion of the moving Gaussians: B shared SE(3) trajectories ("motion bases", Shape of Motion §3.2), each Gaussian
following a softmax blend of them. A basis is T_{c→t}: a rotation (6D, the project's convention of
:func:`tracks4d.geometry.transforms.rot6d_to_matrix`) and a translation per frame, from the canonical frame c to
frame t; blends mix the 6D rotations and the translations with the same weights.

Initialisation (:func:`init_bases`): k-means (scikit-learn) on the 3D tracks' velocities, then per cluster and frame
a rigid Procrustes fit of the cluster's tracks from the canonical frame to that frame.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..geometry.transforms import matrix_to_rot6d, rot6d_to_matrix

__all__ = ["MotionBases", "matrix_to_quaternion", "quaternion_multiply", "init_bases", "procrustes"]


def matrix_to_quaternion(r: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotations → (..., 4) unit quaternions (w, x, y, z), w ≥ 0."""
    m = r
    w = torch.sqrt((1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]).clamp_min(1e-12)) / 2
    x = torch.sqrt((1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2]).clamp_min(1e-12)) / 2
    y = torch.sqrt((1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2]).clamp_min(1e-12)) / 2
    z = torch.sqrt((1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]).clamp_min(1e-12)) / 2
    x = torch.copysign(x, m[..., 2, 1] - m[..., 1, 2])
    y = torch.copysign(y, m[..., 0, 2] - m[..., 2, 0])
    z = torch.copysign(z, m[..., 1, 0] - m[..., 0, 1])
    return nn.functional.normalize(torch.stack([w, x, y, z], -1), dim=-1)


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of (..., 4) quaternions (w, x, y, z): the rotation b, then a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


class MotionBases(nn.Module):
    """B trajectories over N frames: rotations (B, N, 6) as 6D, translations (B, N, 3)."""

    def __init__(self, rotations: torch.Tensor, translations: torch.Tensor):
        super().__init__()
        self.rotations = nn.Parameter(matrix_to_rot6d(rotations).float())
        self.translations = nn.Parameter(translations.float())

    @property
    def count(self) -> int:
        return self.rotations.shape[0]

    @property
    def frames(self) -> int:
        return self.rotations.shape[1]

    def blend(self, weights: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """weights (G, B), rows summing to 1 → the blended transform at frame t: rotations (G, 3, 3),
        translations (G, 3)."""
        return rot6d_to_matrix(weights @ self.rotations[:, t]), weights @ self.translations[:, t]

    def transforms(self, means: torch.Tensor, logits: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotations (G, 3, 3) and translations (G, 3) at frame t of Gaussians with coefficient ``logits`` (G, B)
        (``means`` unused: the flat model has no nodes)."""
        return self.blend(torch.softmax(logits, -1), t)

    def advance(self, fraction: float) -> None:
        """Told how much of the optimisation's budget is spent (the flat model has no schedule)."""

    def param_groups(self, lr: dict, scale: float) -> list[dict]:
        return [{"params": [self.rotations], "lr": lr["rotations"]},
                {"params": [self.translations], "lr": lr["translations"] * scale}]

    def blend_all(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """weights (G, B) → blended transforms at every frame: rotations (G, N, 3, 3), translations (G, N, 3)."""
        rot6d = torch.einsum("gb,bnk->gnk", weights, self.rotations)
        return rot6d_to_matrix(rot6d), torch.einsum("gb,bnk->gnk", weights, self.translations)

    def acceleration(self) -> torch.Tensor:
        """Mean squared second difference over time of the 6D rotations and translations (0 for < 3 frames)."""
        if self.rotations.shape[1] < 3:
            return self.rotations.sum() * 0
        acc = lambda x: (x[:, 2:] - 2 * x[:, 1:-1] + x[:, :-2]).pow(2).mean()  # noqa: E731
        return acc(self.rotations) + acc(self.translations)


def procrustes(source: np.ndarray, target: np.ndarray, rounds: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Rigid (R, t) taking (M, 3) ``source`` points to ``target`` (M ≥ 3; fewer: a translation), robustly: after a
    least-squares fit, ``rounds`` refits on the pairs within 2.5 × the median residual (a track of another body or
    a bad 3D point does not bend the cluster's motion)."""
    if len(source) < 3:
        return np.eye(3), (target - source).mean(0) if len(source) else np.zeros(3)
    keep = np.ones(len(source), bool)
    for _ in range(rounds + 1):
        cs, ct = source[keep].mean(0), target[keep].mean(0)
        u, _, vt = np.linalg.svd((target[keep] - ct).T @ (source[keep] - cs))
        d = np.sign(np.linalg.det(u @ vt))
        r = u @ np.diag([1.0, 1.0, d]) @ vt
        t = ct - r @ cs
        residual = np.linalg.norm(source @ r.T + t - target, axis=1)
        inliers = residual <= 2.5 * np.median(residual) + 1e-12
        if inliers.sum() < 3 or np.array_equal(inliers, keep):
            break
        keep = inliers
    return r, t


def init_bases(points: np.ndarray, visible: np.ndarray, canonical: int, count: int, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Motion bases from the moving tracks' 3D trajectories.

    points (N, M, 3) world · visible (N, M) bool (frames that may be used) · canonical: frame c · count: B →
    rotations (B', N, 3, 3), translations (B', N, 3), labels (M,) cluster per track, B' = min(B, M). Frames where a
    cluster has no track seen both there and at c take the nearest frame's transform."""
    from sklearn.cluster import KMeans

    n, m = visible.shape
    count = max(1, min(count, m))
    velocity = np.where((visible[1:] & visible[:-1])[..., None], points[1:] - points[:-1], 0.0)
    features = velocity.transpose(1, 0, 2).reshape(m, -1)
    labels = (KMeans(count, n_init=4, random_state=seed).fit_predict(features) if count > 1
              else np.zeros(m, dtype=int))
    rotations = np.tile(np.eye(3), (count, n, 1, 1))
    translations = np.zeros((count, n, 3))
    for b in range(count):
        members = labels == b
        solved = np.zeros(n, bool)
        for t in range(n):
            both = members & visible[t] & visible[canonical]
            if both.sum() >= 1:
                rotations[b, t], translations[b, t] = procrustes(points[canonical, both], points[t, both])
                solved[t] = True
        if solved.any() and not solved.all():
            known = np.flatnonzero(solved)
            nearest = known[np.abs(np.arange(n)[:, None] - known[None]).argmin(1)]
            rotations[b], translations[b] = rotations[b, nearest], translations[b, nearest]
    return rotations, translations, labels
