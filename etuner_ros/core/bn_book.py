"""BatchNorm-adaptation bookkeeping: when a BN-only round may be asked for, on which frames, and
which candidate versions changed nothing but BN statistics.

Kept apart from :class:`etuner_ros.core.tuner.ContinualTuner` because these few facts were
scattered over every step of it (frames in, observation, decision, round, commit, deploy), and
each must agree with the others:

* the camera's input-statistics shift (:class:`InputShift`) is measured on the newest
  ``n_frames`` camera frames (spread over the pool's window, ``FramePools.camera``);
* a BN-only round whose candidate was rejected is not asked for again until ``n_frames`` new
  camera frames arrived (:attr:`BnBook.shift_seen` reads 0 meanwhile): the same frames would
  give the same verdict;
* a candidate that only changed BN statistics keeps the serving lineage's accuracy evidence when
  it is deployed (same weights): :meth:`BnBook.deployed` says so. Bookkeeping is keyed by model
  *version*, never by object identity.

Not thread-safe: the tuner holds its lock.
"""

from __future__ import annotations

import torch

from etuner_ros.core.changes import InputShift
from etuner_ros.core.frames import FramePools
from etuner_ros.core.policies import Decision


class BnBook:
    """See the module docstring. ``frames``: the tuner's pools (the camera one is fed here)."""

    def __init__(self, frames: FramePools, n_frames: int, serving: int | None = None) -> None:
        self.frames = frames
        self.n_frames = int(n_frames)
        self.shift = InputShift(max(2, self.n_frames), serving)
        self._next = False              # the round decide() asked for is BN-only
        self._bn_only: set[int] = set()  # candidate versions that only changed BN statistics
        self._wait = 0                  # camera frames to wait after a rejected BN round

    # --- frames in ------------------------------------------------------------------------
    def add_camera(self, x: torch.Tensor, now: float, n_images: int) -> None:
        """The newest preprocessed camera frames ``x`` (of ``n_images`` observed at ``now``)."""
        self.frames.add_camera(x, now)
        self._wait = max(0, self._wait - n_images)
        self.shift.update(self.frames.camera(self.n_frames))

    @property
    def shift_seen(self) -> float:
        """The input shift a policy may see: 0 while waiting after a rejected BN round."""
        return self.shift.shift if self._wait == 0 else 0.0

    def camera(self) -> torch.Tensor | None:
        """The frames a round adapts BN statistics to (None below two)."""
        return self.frames.camera(self.n_frames)

    # --- deciding -------------------------------------------------------------------------
    def forced(self) -> Decision:
        """``force`` for a label-free policy: a BN round whenever there are frames."""
        if self.frames.n_camera >= 2:
            return Decision(True, "forced: BN re-estimation", bn_only=True)
        return Decision(False, "no camera frames to adapt to")

    def decided(self, d: Decision) -> Decision:
        """The decision as it stands (a BN round needs frames); remembers whether the next
        round is BN-only."""
        if d.tune and d.bn_only and self.camera() is None:
            d = Decision(False, "BN round asked for but no camera frames yet")
        self._next = bool(d.tune and d.bn_only)
        return d

    def take_next(self) -> bool:
        """Whether the round starting now is the BN-only one decided; clears it."""
        bn_only, self._next = self._next, False
        return bn_only

    # --- rounds ---------------------------------------------------------------------------
    def round_frames(self) -> tuple[torch.Tensor, float | None]:
        """A BN-only round's frames and the arrival time of the oldest of them."""
        frames = self.camera()
        if frames is None:
            raise RuntimeError("BN-only round without camera frames (decide() refuses these)")
        return frames, self.frames.camera_since(self.n_frames)

    def bn_round_done(self, version: int, frames: torch.Tensor, accepted: bool) -> None:
        """A BN-only round made candidate ``version`` from ``frames``."""
        if accepted:
            self.shift.candidate_adapted(version, frames)
            self._bn_only.add(version)
        else:
            self.shift.discard(version)
            self._bn_only.discard(version)
            self._wait = self.n_frames

    def training_round_done(self, version: int, bn_frames: torch.Tensor | None) -> None:
        """A training round made candidate ``version``; ``bn_frames``: the frames its BN
        statistics were adapted to, when it was accepted (None otherwise)."""
        if bn_frames is not None:
            self.shift.candidate_adapted(version, bn_frames)
        else:
            self.shift.discard(version)
        self._bn_only.discard(version)  # this version changed weights

    # --- the serving model ----------------------------------------------------------------
    def deployed(self, version: int) -> bool:
        """``version`` serves now; True when it changed only BN statistics (same weights)."""
        self.shift.deployed(version)
        bn_only = version in self._bn_only
        self._bn_only = {v for v in self._bn_only if v > version}
        return bn_only
