"""ContinualTuner: pending/merge bookkeeping, a change makes a round come soon, a round never
touches the serving model, labels arriving during a round wait, status fields."""

from __future__ import annotations

import threading

import numpy as np
import torch

from etuner_ros.core.model import ModelBundle, build_model, preprocess
from etuner_ros.core.store import Sample
from etuner_ros.core.trainer import TrainConfig
from etuner_ros.core.tuner import ContinualTuner, TunerConfig
from etuner_ros.sim.pretrain import recalibrate_batchnorm

torch.set_num_threads(1)  # shared CPU: one thread is faster and steadier
ARCH = "mobilenet_v3_small"
NAMES = ["a", "b"]


def start_bundle() -> ModelBundle:
    """Random weights, but with non-vanishing features (torchvision's 0.01-std Linear init
    and untouched BatchNorm statistics make a fresh model's embeddings ~1e-10)."""
    torch.manual_seed(0)
    m = build_model(ARCH, 2)
    for layer in m.modules():
        if isinstance(layer, torch.nn.Linear):
            layer.reset_parameters()
    recalibrate_batchnorm(m, preprocess(images(64, 60) + images(64, 200, seed=9), 32))
    return ModelBundle(m, ARCH, list(NAMES), 1, 32)


def images(n, value, seed=0):
    rng = np.random.default_rng(seed)
    return [np.clip(rng.normal(value, 4, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            for _ in range(n)]


def labels(start, n, label="a", predicted="a", value=100):
    return [Sample(start + i, img, label, 0, predicted=predicted)
            for i, img in enumerate(images(n, value, seed=start))]


def cfg(**policy) -> TunerConfig:
    return TunerConfig(train=TrainConfig(epochs=1, replay_size=8, max_pseudo=4),
                       policy_params=policy)


def test_immediate_round_trains_a_candidate_and_clears_pending():
    b = start_bundle()
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    t = ContinualTuner(b, "immediate", cfg())
    t.observe_labels(labels(1, 12, label="c"), now=1.0)  # a new class
    assert t.status()["pending"] > 0
    d = t.decide(2.0)
    assert d.tune
    r = t.run_round(2.0)
    assert r.candidate.version == 2 and "c" in r.candidate.class_names
    assert r.n_labels > 0 and r.duration_s > 0 and r.train_flops > 0 and r.energy_joules >= 0
    assert t.status()["pending"] == 0 and t.status()["rounds_done"] == 1
    for k, v in b.model.state_dict().items():
        assert torch.equal(v, before[k])
    t.deploy(r.candidate)
    assert t.deployed is r.candidate


def test_lazytune_defers_and_merges_batches():
    t = ContinualTuner(start_bundle(), "lazytune", cfg(batch_labels=30, max_wait_s=1000))
    for k in range(3):
        t.observe_labels(labels(1 + 10 * k, 10), now=float(k))
        assert not t.decide(float(k)).tune
    s = t.status()
    assert s["rounds_deferred"] == 3 and "defer" in s["last_reason"]
    t.observe_labels(labels(100, 30), now=5.0)
    assert t.decide(5.0).tune
    t.run_round(5.0)
    assert t.status()["rounds_merged"] == 3  # four batches in one round


def test_staleness_bound_forces_round():
    t = ContinualTuner(start_bundle(), "lazytune", cfg(batch_labels=100, max_wait_s=30))
    t.observe_labels(labels(1, 4), now=0.0)
    assert not t.decide(10.0).tune
    d = t.decide(31.0)
    assert d.tune and "staleness" in d.reason


def test_detected_change_makes_a_round_come_soon():
    t = ContinualTuner(start_bundle(), "etuner", cfg(batch_labels=1000, max_wait_s=1000,
                                                     min_labels=4))
    # Features = per-channel means plus noise: a random network's embeddings barely move
    # with the scene, and this test is about the tuner's rule, not the network.
    gen = torch.Generator().manual_seed(0)
    t._embed = lambda _b, x: x.mean(dim=(2, 3)) + 0.05 * torch.randn(x.shape[0], 3,
                                                                     generator=gen)
    now = 0.0
    for k in range(12):  # a long stable scene
        now += 1
        t.observe_frames(images(16, 60, seed=k), now)
    t.observe_labels(labels(1, 6, value=60), now)
    assert not t.decide(now).tune
    for k in range(6):  # the home changes
        now += 1
        t.observe_frames(images(16, 200, seed=100 + k), now)
    assert t.status()["change_detected"]
    d = t.decide(now)
    assert d.tune and d.unfreeze and "scenario change" in d.reason
    assert t.status()["overhead_seconds"] > 0


def test_labels_during_a_round_wait_for_the_next():
    t = ContinualTuner(start_bundle(), "immediate", cfg())
    t.observe_labels(labels(1, 16), now=0.0)
    result = {}
    th = threading.Thread(target=lambda: result.setdefault("r", t.run_round(1.0)))
    th.start()
    t.observe_labels(labels(1000, 5), now=1.5)  # from another thread, mid-round
    th.join()
    assert result["r"].n_labels > 0
    assert t.status()["pending"] > 0  # the late ones are still pending


def test_force_needs_something_to_train_on():
    t = ContinualTuner(start_bundle(), "none", cfg())
    assert not t.decide(0.0, force=True).tune
    t.observe_labels(labels(1, 6), now=0.0)
    assert not t.decide(1.0).tune
    assert t.decide(1.0, force=True).tune


def test_recent_accuracy_from_predictions():
    t = ContinualTuner(start_bundle(), "lazytune", cfg())
    t.observe_labels(labels(1, 10, label="a", predicted="b"), now=0.0)
    assert t.status()["recent_accuracy"] == 0.0
    t.observe_labels(labels(50, 10, label="a", predicted="a"), now=0.0)
    assert t.status()["recent_accuracy"] == 0.5


def test_etuner_round_adapts_bn_and_gates_pseudo_labels_on_recent_accuracy():
    b = start_bundle()
    t = ContinualTuner(b, "etuner", cfg())
    t.observe_unlabelled(images(16, 150, seed=5))
    t.observe_labels(labels(1, 12, predicted="b"), now=0.0)  # recent accuracy 0: no pseudo
    r = t.run_round(1.0)
    assert r.n_pseudo == 0
    bn = torch.nn.modules.batchnorm._BatchNorm
    old = [m.running_mean for m in b.model.modules() if isinstance(m, bn)]
    new = [m.running_mean for m in r.candidate.model.modules() if isinstance(m, bn)]
    assert not torch.allclose(old[0], new[0])  # AdaBN: adopted the new frames' statistics
    t2 = ContinualTuner(start_bundle(), "etuner", cfg())
    t2.config.train.pseudo_threshold = 0.0
    t2.observe_unlabelled(images(16, 150, seed=5))
    t2.observe_labels(labels(1, 12, predicted="a"), now=0.0)  # recent accuracy 1.0
    r2 = t2.run_round(1.0)
    assert 0 < r2.n_pseudo <= min(4, r2.n_labels)  # capped by max_pseudo and by real labels


def test_bn_only_round_changes_only_bn_buffers_and_keeps_labels_pending():
    t = ContinualTuner(start_bundle(), "etuner", cfg(batch_labels=1000, max_wait_s=1000))
    t._embed = lambda _b, x: x.mean(dim=(2, 3))
    now = 0.0
    for k in range(4):
        now += 1
        t.observe_frames(images(16, 60, seed=k), now)
    t.observe_labels(labels(1, 3, value=60), now)
    assert not t.decide(now).tune
    for k in range(4):  # the light changes: input statistics move
        now += 1
        t.observe_frames(images(16, 200, seed=50 + k), now)
    d = t.decide(now)
    assert d.tune and d.bn_only
    pending = t.status()["pending"]
    before = {k: v.clone() for k, v in t.deployed.model.state_dict().items()}
    r = t.run_round(now)
    assert r.accepted and r.n_labels == 0 and r.train_flops > 0 and t.status()["pending"] == pending
    after = r.candidate.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(("running_mean", "running_var")) for k in changed)
    t.deploy(r.candidate)
    assert not t.decide(now).tune  # adapted: the shift is measured from the new statistics
