"""Hierarchical motion (HiMoR, ``papers/himor_supplement.txt``): a two-level tree of motion nodes instead of one
coefficient vector per Gaussian.

- Level 1: K₁ nodes (≤ 50, k-means on the moving tracks) blend B shared SE(3) bases, as the flat model does.
- Level 2: each level-1 node has C children (k-means on the moving Gaussians nearest to it); a child moves as its
  parent composed with a residual blended from B₂ bases shared by its siblings (identity at first).
- A moving Gaussian follows its 3 nearest nodes of the active level (canonical distance, Gaussian weights of the
  nodes' spacing). Coarse to fine: level 1 alone, then level 2 after CHILDREN_AT of the optimisation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..geometry.transforms import matrix_to_rot6d, rot6d_to_matrix
from .motion import MotionBases

__all__ = ["HierarchicalMotion", "NODES", "CHILDREN", "CHILD_BASES", "NEAREST", "CHILDREN_AT"]

NODES = 50          # level-1 nodes at most
CHILDREN = 10       # children per level-1 node
CHILD_BASES = 5     # residual bases shared by the children of one node
NEAREST = 3         # nodes each Gaussian follows
CHILDREN_AT = 0.4   # share of the optimisation after which the second level moves


def _kmeans(points: np.ndarray, count: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    count = min(count, len(points))
    return KMeans(count, n_init=2, random_state=seed).fit(points).cluster_centers_


def _spacing(nodes: torch.Tensor) -> torch.Tensor:
    """(K,) mean distance of each node to its NEAREST nearest others (1 for a lone node)."""
    if len(nodes) < 2:
        return nodes.new_ones(len(nodes))
    d = torch.cdist(nodes, nodes) + torch.eye(len(nodes), device=nodes.device) * 1e9
    k = min(NEAREST, len(nodes) - 1)
    return d.topk(k, largest=False).values.mean(1)


class HierarchicalMotion(nn.Module):
    """bases: level-1 MotionBases (B, N) · nodes (K₁, 3) canonical positions · node_logits (K₁, B) · children
    (K₁·C, 3) · child_logits (K₁·C, B₂) · child_rotations (K₁, B₂, N, 6), child_translations (K₁, B₂, N, 3): the
    residual bases of each node's children."""

    def __init__(self, bases: MotionBases, nodes: np.ndarray, node_logits: np.ndarray, children: np.ndarray,
                 child_bases: int = CHILD_BASES, seed: int = 0):
        super().__init__()
        k, n = len(nodes), bases.rotations.shape[1]
        g = torch.Generator().manual_seed(seed)
        self.bases = bases
        self.nodes = nn.Parameter(torch.as_tensor(nodes, dtype=torch.float32))
        self.node_logits = nn.Parameter(torch.as_tensor(node_logits, dtype=torch.float32))
        self.children_ = nn.Parameter(torch.as_tensor(children, dtype=torch.float32))
        self.child_logits = nn.Parameter(torch.zeros(len(children), child_bases))
        identity = matrix_to_rot6d(torch.eye(3)).expand(k, child_bases, n, 6)
        # a little noise breaks the symmetry between identical residual bases (their coefficients get gradients)
        self.child_rotations = nn.Parameter(identity + 1e-3 * torch.randn(k, child_bases, n, 6, generator=g))
        self.child_translations = nn.Parameter(torch.zeros(k, child_bases, n, 3))
        self.register_buffer("parent", torch.arange(len(children)) // (len(children) // k))
        self.level = 1

    @property
    def count(self) -> int:
        return self.bases.count

    @property
    def frames(self) -> int:
        return self.bases.frames

    @classmethod
    def from_flat(cls, bases: MotionBases, track_means: np.ndarray, track_logits: np.ndarray,
                  moving_means: np.ndarray, seed: int = 0) -> "HierarchicalMotion":
        """Level-1 nodes by k-means on the moving tracks' canonical positions, each with the mean coefficients of its
        tracks; children by k-means on the moving Gaussians nearest to each node."""
        nodes = _kmeans(track_means, NODES, seed)
        nearest = np.argmin(np.linalg.norm(track_means[:, None] - nodes[None], axis=-1), 1)
        logits = np.stack([track_logits[nearest == i].mean(0) if (nearest == i).any() else track_logits.mean(0)
                           for i in range(len(nodes))])
        owner = np.argmin(np.linalg.norm(moving_means[:, None] - nodes[None], axis=-1), 1)
        rng = np.random.default_rng(seed)
        spread = float(np.median(np.linalg.norm(track_means - track_means.mean(0), axis=1))) or 1.0
        children = []
        for i, node in enumerate(nodes):
            members = moving_means[owner == i]
            centres = _kmeans(members, CHILDREN, seed) if len(members) >= CHILDREN else members
            pad = CHILDREN - len(centres)
            children.append(np.concatenate([centres, node + 0.01 * spread * rng.normal(size=(pad, 3))]))
        return cls(bases, nodes, logits, np.concatenate(children), seed=seed)

    def advance(self, fraction: float) -> None:
        """Coarse to fine: the children join once ``fraction`` of the budget is spent."""
        if fraction >= CHILDREN_AT:
            self.level = 2

    def _node_transforms(self, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Positions (K, 3), rotations (K, 3, 3) and translations (K, 3) at frame t of the active level's nodes."""
        rot, trans = self.bases.blend(torch.softmax(self.node_logits, -1), t)
        if self.level == 1:
            return self.nodes, rot, trans
        w = torch.softmax(self.child_logits, -1)                                    # (K₁C, B₂)
        local_rot = rot6d_to_matrix(torch.einsum("cb,cbk->ck", w, self.child_rotations[self.parent, :, t]))
        local_trans = torch.einsum("cb,cbk->ck", w, self.child_translations[self.parent, :, t])
        p_rot, p_trans = rot[self.parent], trans[self.parent]
        # child: x ↦ parent(local(x)) = R_p (R_l x + t_l) + t_p
        return (self.children_, p_rot @ local_rot, (p_rot @ local_trans[..., None]).squeeze(-1) + p_trans)

    def transforms(self, means: torch.Tensor, logits: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotations (G, 3, 3) and translations (G, 3) at frame t of moving Gaussians at canonical ``means`` (G, 3)
        (``logits`` unused: the nodes carry the coefficients)."""
        nodes, rot, trans = self._node_transforms(t)
        k = min(NEAREST, len(nodes))
        with torch.no_grad():
            index = torch.cdist(means.detach(), nodes.detach()).topk(k, largest=False).indices    # (G, k)
            radius = _spacing(nodes.detach())
        d2 = ((means[:, None] - nodes[index]) ** 2).sum(-1)
        w = torch.softmax(-d2 / (2 * radius[index] ** 2), -1)                        # (G, k)
        r6 = torch.einsum("gk,gkj->gj", w, matrix_to_rot6d(rot)[index])
        return rot6d_to_matrix(r6), torch.einsum("gk,gkj->gj", w, trans[index])

    def acceleration(self) -> torch.Tensor:
        acc = self.bases.acceleration()
        if self.level == 2 and self.child_rotations.shape[2] >= 3:
            second = lambda x: (x[:, :, 2:] - 2 * x[:, :, 1:-1] + x[:, :, :-2]).pow(2).mean()  # noqa: E731
            acc = acc + second(self.child_rotations) + second(self.child_translations)
        return acc

    def param_groups(self, lr: dict, scale: float) -> list[dict]:
        """Optimiser groups (the supplement's rates: node positions 1.6e-5, coefficients 1e-2, bases 1.6e-4)."""
        return [{"params": [self.bases.rotations, self.child_rotations], "lr": lr["rotations"]},
                {"params": [self.bases.translations, self.child_translations], "lr": lr["translations"] * scale},
                {"params": [self.nodes, self.children_], "lr": lr["nodes"] * scale},
                {"params": [self.node_logits, self.child_logits], "lr": lr["coefficient_logits"]}]
