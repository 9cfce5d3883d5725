"""Linear centred kernel alignment (Kornblith et al., 2019) between two representations.

SimFreeze asks "has this layer group's representation of the probe batch stopped changing?".
Linear CKA answers that invariant to rotation and isotropic scaling of the features, so a
layer whose weights drift without changing what it computes still counts as converged.

We use the Gram (sample x sample) form: the probe batch is small (tens of samples) while a
convolutional group's flattened output can have tens of thousands of features, so ``N x N``
Grams are far cheaper than ``D x D`` cross-covariances. Everything runs in float64.
"""

from __future__ import annotations

import numpy as np
import torch

_EPS = 1e-12


def _as_matrix(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """``[N, ...]`` -> centred float64 ``[N, D]`` (features flattened per sample)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    m = np.asarray(x, dtype=np.float64)
    if m.ndim == 1:
        m = m[:, None]
    m = m.reshape(m.shape[0], -1)
    if not np.all(np.isfinite(m)):
        raise ValueError("linear_cka: non-finite values in the representation")
    return m - m.mean(axis=0, keepdims=True)


def linear_cka(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Linear CKA in [0, 1] between ``x`` and ``y`` (same number of samples, any widths).

    Conventions for degenerate inputs (a representation with no variance across the batch):
    both constant -> 1.0 (nothing distinguishes the two, so nothing changed: SimFreeze may
    freeze); exactly one constant -> 0.0 (all structure appeared or vanished). Identical
    inputs give exactly 1.0.
    """
    a, b = _as_matrix(x), _as_matrix(y)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"linear_cka: {a.shape[0]} vs {b.shape[0]} samples")
    if a.shape[0] < 2:
        raise ValueError("linear_cka needs at least 2 samples")
    # Scale each to unit Frobenius norm first: avoids overflow for huge activations and makes
    # the constant-input test independent of magnitude.
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1.0)
    const_a, const_b = na <= _EPS * scale, nb <= _EPS * scale
    if const_a and const_b:
        return 1.0
    if const_a or const_b:
        return 0.0
    if a is b or (a.shape == b.shape and np.array_equal(a, b)):
        return 1.0
    a, b = a / na, b / nb
    ka, kb = a @ a.T, b @ b.T  # centred data -> centred Grams
    hsic = float(np.sum(ka * kb))
    denom = float(np.linalg.norm(ka) * np.linalg.norm(kb))
    if denom <= _EPS:
        return 1.0 if hsic <= _EPS else 0.0
    return float(min(1.0, max(0.0, hsic / denom)))
