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
    # adabn_momentum 1.0: these tests check the BN-round bookkeeping on frames whose
    # statistics the candidate adopts outright (the default blends, see TunerConfig);
    # holdout_block_s 0: these frames all share stamp 0, so hold out by sample id
    return TunerConfig(train=TrainConfig(epochs=1, replay_size=8, max_pseudo=4,
                                         holdout_block_s=0.0),
                       policy_params=policy, adabn_momentum=1.0)


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


def test_a_failed_training_round_loses_no_label(monkeypatch):
    """Training that raises (out of memory, a bad frame) gives its labels back: they are
    pending again, ahead of later ones, and the next round trains on them."""
    import etuner_ros.core.tuner as tuner_module

    t = ContinualTuner(start_bundle(), "immediate", cfg())
    t.observe_labels(labels(1, 12), now=1.0)
    pending = t.status()["pending"]
    assert pending > 0 and t.decide(2.0).tune

    def boom(*_args, **_kwargs):
        raise RuntimeError("out of memory")

    real = tuner_module.run_training
    monkeypatch.setattr(tuner_module, "run_training", boom)
    try:
        t.run_round(2.0)
        raise AssertionError("the round should have raised")
    except RuntimeError as exc:
        assert "out of memory" in str(exc)
    assert t.status()["pending"] == pending and not t.busy
    t.observe_labels(labels(100, 4), now=3.0)
    both = t.status()["pending"]
    assert both > pending  # the later ones queue behind the given-back ones
    monkeypatch.setattr(tuner_module, "run_training", real)
    assert t.decide(4.0).tune
    r = t.run_round(4.0)
    assert r.n_labels == both and t.status()["pending"] == 0


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
    t.config.pseudo_min_accuracy = 0.7
    t.config.train.pseudo_threshold = 0.0
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
    t3 = ContinualTuner(start_bundle(), "etuner", cfg())  # default bar 0: a struggling
    t3.config.train.pseudo_threshold = 0.0                # model's round gets them too
    t3.observe_unlabelled(images(16, 150, seed=5))
    t3.observe_labels(labels(1, 12, predicted="b"), now=0.0)
    assert t3.run_round(1.0).n_pseudo > 0


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


def _shifted_tuner(policy="etuner", **params):
    """A tuner whose camera went from dark to bright frames: a BN round is due."""
    if policy == "etuner":
        params = {"batch_labels": 1000, "max_wait_s": 1000, **params}
    t = ContinualTuner(start_bundle(), policy, cfg(**params))
    t._embed = lambda _b, x: x.mean(dim=(2, 3))
    now = 0.0
    for k in range(4):
        now += 1
        t.observe_frames(images(16, 60, seed=k), now)
    for k in range(4):
        now += 1
        t.observe_frames(images(16, 200, seed=50 + k), now)
    return t, now


def test_deploying_a_bn_round_twice_keeps_bn_reference_evidence_and_drift_reference(
        monkeypatch):
    from etuner_ros.core import gate, rounds
    # this test is about the swap bookkeeping: let the gate accept (it is tested below)
    monkeypatch.setattr(rounds, "bn_round_gate",
                        lambda *a, **k: gate.Verdict(True, 1.0, 1.0, "test", 0))
    t, now = _shifted_tuner(acc_threshold=0.0)
    t.observe_labels(labels(1, 10, predicted="b"), now)  # evidence: the model is wrong
    acc = t.status()["recent_accuracy"]
    assert acc == 0.0
    d = t.decide(now)
    assert d.tune and d.bn_only
    r = t.run_round(now)
    assert r.bn_only and r.accepted
    ref = t.drift.reference_size
    t.deploy(r.candidate)                       # the swap answer
    again = r.candidate.clone()                 # model_info: same version, another object
    t.deploy(again)
    assert t.deployed is r.candidate            # the second deploy was a no-op
    assert t.status()["input_shift"] == 0.0
    assert not t.decide(now + 1).tune           # no BN round on every poll
    assert t.status()["recent_accuracy"] == acc  # evidence kept across the BN-only swap
    assert t.drift.reference_size == ref        # the change detector keeps its reference


def test_deploying_a_trained_model_twice_does_not_wipe_the_new_evidence():
    t = ContinualTuner(start_bundle(), "lazytune", cfg())
    t.observe_labels(labels(1, 16), now=0.0)
    r = t.run_round(1.0)
    t.deploy(r.candidate)
    # labels predicted by the new model arrive before perception's model_info does
    new = [Sample(s.id, s.image, s.label, 0, predicted="a", model_version=r.candidate.version)
           for s in labels(100, 10)]
    old = [Sample(s.id, s.image, s.label, 0, predicted="b", model_version=1)
           for s in labels(200, 10)]
    t.observe_labels(new + old, now=2.0)         # old model's predictions do not count
    assert t.status()["recent_accuracy"] == 1.0
    t.deploy(r.candidate.clone())                # model_info: same version again
    assert t.status()["recent_accuracy"] == 1.0


def test_every_bn_candidate_passes_the_gate_and_a_rejected_one_waits_for_new_frames():
    t, now = _shifted_tuner("adabn")
    assert t.decide(now).tune
    r = t.run_round(now)
    assert r.gate.startswith("information:")      # label-free policy: label-free gate
    assert r.accepted == (r.val_accuracy >= r.baseline_val_accuracy)
    assert r.flops_by_kind["adabn"] > 0 and r.flops_by_kind["validate"] > 0
    if not r.accepted:
        assert not t.decide(now).tune           # same frames would give the same verdict
        for k in range(4):
            now += 1
            t.observe_frames(images(16, 200, seed=90 + k), now)
        assert t.decide(now).tune


def test_bn_gate_uses_held_out_labels_of_the_current_frames():
    from etuner_ros.core.trainer import is_holdout
    t, now = _shifted_tuner("etuner")
    holdout = [s for s in labels(1, 200, value=200)
               if is_holdout(s.id, t.config.train.holdout_fraction)]
    t.observe_labels(holdout[:5], 0.5)  # before the frames the round adapts to: not evidence
    t.observe_labels(holdout[5:7], now)
    assert t.decide(now).bn_only
    assert t.run_round(now).gate.startswith("information:")  # 2 < MIN_LABELS: label-free
    t2, now = _shifted_tuner("etuner")
    t2.observe_labels(holdout[:5], now)
    assert t2.decide(now).bn_only
    assert t2.run_round(now).gate == "labels:5"


def test_label_gate_rejects_a_worse_candidate_and_a_tie_passes():
    from etuner_ros.core import gate
    from etuner_ros.core.label_book import LabelItem
    b = start_bundle()
    x = preprocess(images(8, 100), 32)
    items = [LabelItem(i, x[i], "a") for i in range(8)]
    assert gate.with_labels(b, b, items, 8.0).accepted  # tie passes
    worse = b.clone()
    with torch.no_grad():
        head = [m for m in worse.model.modules() if isinstance(m, torch.nn.Linear)][-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor([-10.0, 10.0]))  # always "b"
    v = gate.with_labels(worse, b, items, 8.0)
    assert v.candidate_score == 0.0
    assert not v.accepted or v.serving_score == 0.0
    # label-free: a model that answers one class with full confidence scores ~0 information
    assert gate.mean_confidence(worse, x) > 0.99 and gate.information(worse, x) < 1e-3
    assert gate.label_free(b, worse, x).accepted  # a collapsed model never vetoes a fix
    mixed = torch.cat([x, preprocess(images(8, 200, seed=3), 32)])
    assert gate.label_free(b, worse, mixed).accepted


def test_every_piece_of_work_is_charged_and_counted_flops_are_deterministic():
    def run():
        t = ContinualTuner(start_bundle(), "etuner", cfg(min_labels=4))
        t.config.train.pseudo_threshold = 0.0
        now = 0.0
        for k in range(6):
            now += 1
            t.observe_frames(images(16, 60 + 20 * k, seed=k), now)
        t.observe_unlabelled(images(16, 150, seed=5))
        t.observe_labels(labels(1, 40, predicted="a"), now)
        r = t.run_round(now)
        t.deploy(r.candidate) if r.accepted else None
        return r, t.status()
    r1, s1 = run()
    r2, s2 = run()
    for kind in ("train", "adabn", "pseudo", "validate"):
        assert r1.flops_by_kind[kind] > 0, kind
    assert r1.train_flops == sum(r1.flops_by_kind.values())
    assert s1["overhead_flops_by_kind"]["embed"] > 0 and s1["overhead_cpu_seconds"] >= 0
    assert r1.cpu_seconds >= 0 and r1.energy_joules >= 0
    assert r1.flops_by_kind == r2.flops_by_kind and s1["overhead_flops"] == s2["overhead_flops"]
    w1, w2 = r1.candidate.model.state_dict(), r2.candidate.model.state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_change_is_confirmed_despite_frequent_swaps_and_rebased_after_it():
    t = ContinualTuner(start_bundle(), "simfreeze", cfg())
    gen = torch.Generator().manual_seed(0)
    t._embed = lambda _b, x: x.mean(dim=(2, 3)) + 0.05 * torch.randn(x.shape[0], 3,
                                                                     generator=gen)
    now, version = 0.0, t.deployed.version

    def swap():  # a new model every couple of seconds, as under immediate timing
        nonlocal version
        version += 1
        b = t.deployed.clone()
        b.version = version
        t.deploy(b)

    for k in range(14):
        now += 1
        t.observe_frames(images(16, 60, seed=k), now)
        if k % 2:
            swap()
    ref = t.drift.reference_size
    assert ref == t.config.drift.reference and not t.status()["change_detected"]
    for k in range(6):  # the home changes, swaps go on
        now += 1
        t.observe_frames(images(16, 200, seed=100 + k), now)
        swap() if k % 2 and not t.status()["change_detected"] else None
    assert t.status()["change_detected"]
    embedder = t.changes.embedder
    swap()  # the round that absorbs the change serves: the detector moves to it
    assert t.changes.embedder is t.deployed and t.changes.embedder is not embedder
    assert not t.status()["change_detected"]


def test_simfreeze_probes_only_what_may_still_freeze():
    from etuner_ros.core.simfreeze import SimFreezeConfig
    c = cfg()
    c.simfreeze = SimFreezeConfig(threshold=0.0, patience=1, check_every=1, min_trainable=2)
    t = ContinualTuner(start_bundle(), "simfreeze", c)
    t.observe_labels(labels(1, 16), now=0.0)
    r1 = t.run_round(1.0)
    assert r1.flops_by_kind["probe"] > 0 and t.simfreeze.done
    n = len(t.simfreeze.group_names)
    assert t.status()["frozen_groups"] == t.simfreeze.group_names[:n - 2]
    t.deploy(r1.candidate)
    t.observe_labels(labels(100, 16), now=2.0)
    r2 = t.run_round(3.0)
    assert r2.frozen_groups == t.simfreeze.group_names[:n - 2]
    assert r2.flops_by_kind.get("probe", 0.0) == 0.0  # everything that may freeze is frozen
    assert r2.flops_by_kind["train"] < r1.flops_by_kind["train"]  # the frozen prefix is cached


def test_a_single_camera_frame_does_not_break_a_bn_adapting_tuner():
    """A node that just started has seen one camera frame: too few for BN statistics, so the
    input shift is not measured yet (it crashed with None.shape in the tuner node)."""
    t = ContinualTuner(start_bundle(), "etuner", cfg())
    t.observe_frames(images(1, 60), now=1.0)
    assert t.status()["input_shift"] == 0.0
    t.observe_labels(labels(1, 6), now=1.5)
    assert t.decide(2.0, force=True).tune
    assert t.run_round(2.0).n_labels > 0
