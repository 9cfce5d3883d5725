"""What the tuner node needs from the engine to resume after a restart: labels an earlier run
trained on come back as replay/validation (never pending), and a round's candidate carries the
version the node's registry chose."""

from __future__ import annotations

import numpy as np
import torch

from etuner_ros.core.model import ModelBundle, build_model
from etuner_ros.core.store import Sample
from etuner_ros.core.trainer import TrainConfig, is_holdout
from etuner_ros.core.tuner import ContinualTuner, TunerConfig

torch.set_num_threads(1)


def bundle() -> ModelBundle:
    torch.manual_seed(0)
    return ModelBundle(build_model("mobilenet_v3_small", 2), "mobilenet_v3_small", ["a", "b"],
                       1, 32)


def samples(ids) -> list[Sample]:
    rng = np.random.default_rng(0)
    return [Sample(i, rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), "ab"[i % 2], 0,
                   predicted="a") for i in ids]


def test_restored_labels_are_replay_and_validation_never_pending():
    cfg = TunerConfig(train=TrainConfig(epochs=1, holdout_fraction=0.25, replay_size=4,
                                        holdout_block_s=0.0))
    t = ContinualTuner(bundle(), "immediate", cfg)
    old = samples(range(1, 41))
    t.restore(old, seen=40)
    st = t.status()
    n_hold = sum(is_holdout(s.id, 0.25) for s in old)
    assert st["pending"] == 0 and st["holdout_size"] == n_hold
    assert st["replay_size"] == 40 - n_hold
    assert not t.decide(1.0).tune  # nothing new: immediate has nothing to do
    t.observe_labels(samples([41, 42, 43, 45]), now=2.0)
    assert t.status()["pending"] == sum(not is_holdout(i, 0.25) for i in (41, 42, 43, 45))
    assert t.decide(3.0).tune
    r = t.run_round(3.0, version=17)
    assert r.candidate.version == 17 and r.n_replay == 4


def test_resume_samples_are_bounded_and_stop_at_the_watermark(tmp_path):
    from etuner_ros.core.resume import resume_samples
    from etuner_ros.core.store import SampleStore

    store = SampleStore(tmp_path / "s.db")
    img = np.zeros((8, 8, 3), np.uint8)
    for i in range(300):
        store.add_labelled(img, "ab"[i % 2], i)
    tc = TrainConfig(holdout_fraction=0.2, val_size=10, replay_capacity=50)
    recent, replay, seen = resume_samples(store, 200, tc, np.random.default_rng(0))
    assert seen == 200
    assert len(replay) <= 50 and all(s.id <= 200 and not is_holdout(s.id, 0.2) for s in replay)
    assert len(recent) == 10 and all(s.id <= 200 and is_holdout(s.id, 0.2) for s in recent)
    newest = sorted(i for i in range(1, 201) if is_holdout(i, 0.2))[-10:]
    assert [s.id for s in recent] == newest
    assert resume_samples(store, 0, tc, np.random.default_rng(0)) == ([], [], 0)
    store.close()


def test_a_watermark_of_another_store_is_not_applied(tmp_path):
    """The watermark is a labelled id of one store file: with another file (``store_file``
    changed, the file replaced) it would silently skip the new store's labels up to it."""
    from etuner_ros.core.resume import checked_watermark
    from etuner_ros.core.store import SampleStore

    img = np.zeros((8, 8, 3), np.uint8)
    a = SampleStore(tmp_path / "a.db")
    for i in range(5):
        a.add_labelled(img, "a", i)
    assert SampleStore(tmp_path / "a.db").store_id == a.store_id  # a file keeps its identity
    b = SampleStore(tmp_path / "b.db")
    assert b.store_id != a.store_id
    state = {"trained_through": 4, "unlabelled_through": 2, "store_id": a.store_id}
    kept, why = checked_watermark(state, a.store_id, a.max_labelled_id())
    assert kept == state and why == ""
    zero, why = checked_watermark(state, b.store_id, b.max_labelled_id())
    assert zero == {"trained_through": 0, "unlabelled_through": 0, "store_id": b.store_id}
    assert "another sample store" in why
    # a file written before the store id was recorded: trusted unless it cannot be this store's
    legacy = {"trained_through": 4, "unlabelled_through": 2, "store_id": None}
    assert checked_watermark(legacy, a.store_id, 5)[0]["trained_through"] == 4
    zero, why = checked_watermark(legacy, b.store_id, 0)
    assert zero["trained_through"] == 0 and "above this store's newest labelled id 0" in why
