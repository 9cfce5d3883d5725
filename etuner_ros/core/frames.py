"""Unlabelled inputs for the label-free parts of a round: which frames are available.

Two pools, both of preprocessed frames, newest last:

* ``camera``: the newest ``camera_capacity`` frames from ``observe_frames``; a round takes
  ``n`` of them spread evenly over that window (:meth:`FramePools.camera`): what BatchNorm
  re-estimation adapts to, what the input shift is measured on and what the label-free
  acceptance test scores. Spread, so a longer window can be sampled without more forward
  passes: a robot's camera looks at one object for 1-4 s, so the newest 48 frames (6 s) show
  2-4 objects, and BN statistics of every layer from those collapsed the model (DEV seed 100:
  ``adabn`` 21.4 % against 43.1 % for ``none``). With the shipped ``adabn_depth`` 3 only
  shallow statistics adapt, and the shipped window equals ``adabn_frames`` (48): the newest 48
  frames, not a spread (``TunerConfig``). Each frame
  remembers when it arrived, so the validation gate can ask for held-out labels from the same
  stretch of time.
* ``unlabelled``: the newest ``unlabelled_capacity`` frames nobody labelled (from the store or
  the benchmark's caregiver): what pseudo-labels come from.

The *methods* that use them (AdaBN, pseudo-labelling, consistency) live in ``core/trainer.py``;
this module only says which frames a round may use.
"""

from __future__ import annotations

from collections import deque

import torch


class FramePools:
    """See the module docstring. Not thread-safe: the tuner holds its lock."""

    def __init__(self, camera_capacity: int, unlabelled_capacity: int) -> None:
        self._camera: deque[tuple[float, torch.Tensor]] = deque(maxlen=max(1, camera_capacity))
        self._unlabelled: deque[torch.Tensor] = deque(maxlen=max(1, unlabelled_capacity))
        self._unlabelled_t: deque[float] = deque(maxlen=max(1, unlabelled_capacity))

    def add_camera(self, x: torch.Tensor, now: float) -> None:
        self._camera.extend((float(now), f) for f in x)

    def add_unlabelled(self, x: torch.Tensor, stamps: list[float] | None = None) -> None:
        """``stamps``: each frame's time in seconds (NaN: unknown)."""
        self._unlabelled.extend(x)
        self._unlabelled_t.extend(stamps if stamps is not None else [float("nan")] * len(x))

    @property
    def n_camera(self) -> int:
        return len(self._camera)

    @property
    def n_unlabelled(self) -> int:
        return len(self._unlabelled)

    def _spread(self, n: int) -> list[tuple[float, torch.Tensor]]:
        """``n`` camera entries evenly spread over the window, the newest always included."""
        pool = list(self._camera)
        if n <= 0 or not pool:
            return []
        if n >= len(pool):
            return pool
        step = len(pool) / n
        return [pool[len(pool) - 1 - int(i * step)] for i in range(n)][::-1]

    def camera(self, n: int) -> torch.Tensor | None:
        """``n`` camera frames spread over the window (the newest unlabelled frames when the
        camera gave none); None below 2 frames (BatchNorm variance needs two)."""
        if self._camera:
            frames = [f for _, f in self._spread(n)]
        else:
            frames = list(self._unlabelled)[-n:] if n > 0 else []
        return torch.stack(frames) if len(frames) >= 2 else None

    def camera_since(self, n: int) -> float | None:
        """Arrival time of the oldest frame :meth:`camera` (``n``) returns."""
        spread = self._spread(n)
        return spread[0][0] if spread else None

    def unlabelled_stamped(self) -> tuple[torch.Tensor, list[float]] | None:
        """Every pooled unlabelled frame and its stamp (seconds), None if there are none."""
        if not self._unlabelled:
            return None
        return torch.stack(list(self._unlabelled)), list(self._unlabelled_t)

    def unlabelled(self, n: int) -> torch.Tensor | None:
        """The newest ``n`` unlabelled frames (the current scene), None if there are none."""
        frames = list(self._unlabelled)[-n:] if n > 0 else []
        return torch.stack(frames) if frames else None
