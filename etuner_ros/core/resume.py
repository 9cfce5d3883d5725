"""What a restarted tuner reloads from the sample store, bounded, instead of retraining it all.

Labels up to the persisted watermark (the highest labelled id a finished round trained on) are
not trained again; they come back as the engine's memory of the past: a uniform sample of at
most ``replay_capacity`` of them for replay (what a reservoir over them would hold, in
distribution) and the newest ``val_size`` held-out ones (held-out by the same id hash as ever)
for validation. Memory is bounded by those two sizes, not by the store.
"""

from __future__ import annotations

import numpy as np

from etuner_ros.core.store import Sample, SampleStore
from etuner_ros.core.trainer import TrainConfig, is_holdout


def resume_samples(store: SampleStore, trained_through: int, train: TrainConfig,
                   rng: np.random.Generator) -> tuple[list[Sample], list[Sample], int]:
    """(validation samples, replay samples, how many labels the watermark covers)."""
    w = int(trained_through)
    if w <= 0:
        return [], [], 0
    frac = train.holdout_fraction
    replay = [s for s in store.sample_labelled(train.replay_capacity, rng, before_id=w + 1)
              if not is_holdout(s.id, frac)]
    recent: list[Sample] = []
    if frac > 0 and train.val_size > 0:
        ids, i = [], w  # newest val_size held-out ids at or below w, found by the id hash
        while i > 0 and len(ids) < train.val_size and w - i < 100 * train.val_size:
            if is_holdout(i, frac):
                ids.append(i)
            i -= 1
        if ids:
            recent = [s for s in store.labelled_since(ids[-1] - 1)
                      if s.id <= w and is_holdout(s.id, frac)]
    seen = store.count_labelled() - store.count_labelled(w)
    return recent, replay, seen


def checked_watermark(state: dict, store_id: int, max_labelled_id: int) -> tuple[dict, str]:
    """The persisted watermark if it is of this store, else zeros, and why (empty if kept).

    The ids are the store's: with another store file (``store_file`` changed, the file deleted
    or replaced) the same numbers name other labels, and a stale watermark would skip every new
    label up to it without a word. A file written before the store id was recorded is trusted
    unless its watermark is above every labelled id the store has."""
    zero = {"trained_through": 0, "unlabelled_through": 0, "store_id": store_id}
    w = int(state.get("trained_through", 0))
    known = state.get("store_id")
    if known is not None and known != store_id:
        return zero, (f"the watermark (labelled id {w}) is of another sample store "
                      f"(id {known}, this one {store_id}): training from its first label")
    if w > max_labelled_id:
        return zero, (f"the watermark (labelled id {w}) is above this store's newest "
                      f"labelled id {max_labelled_id}: another store; training from its "
                      "first label")
    return {**state, "store_id": store_id}, ""
