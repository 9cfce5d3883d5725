"""Trainer round: holdout by id, pseudo-label threshold, frozen prefix untouched, serving model
untouched, worse candidate rejected."""

from __future__ import annotations

import torch

from etuner_ros.core.model import ModelBundle, build_model, layer_groups
from etuner_ros.core.trainer import TrainConfig, is_holdout, pseudo_label, train_round

torch.set_num_threads(1)  # shared CPU: one thread is faster and steadier

ARCH = "mobilenet_v3_small"


def bundle(n=3, seed=0) -> ModelBundle:
    torch.manual_seed(seed)
    m = build_model(ARCH, n)
    m.eval()
    return ModelBundle(m, ARCH, [f"c{i}" for i in range(n)], 1, 32)


def data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g)


def test_holdout_is_deterministic_and_close_to_fraction():
    a = [is_holdout(i, 0.2) for i in range(5000)]
    assert a == [is_holdout(i, 0.2) for i in range(5000)]
    assert 0.17 < sum(a) / len(a) < 0.23
    assert not any(is_holdout(i, 0.0) for i in range(100))


def test_pseudo_labels_below_threshold_are_never_used():
    b = bundle()
    x = data(32)
    with torch.no_grad():
        conf = torch.softmax(b.model(x), 1).max(1).values
    thr = float(conf.median())
    px, _, pc = pseudo_label(b, x, thr, max_n=100)
    assert len(pc) == int((conf >= thr).sum()) and bool((pc >= thr).all())
    _, _, top = pseudo_label(b, x, 0.0, max_n=3)
    assert torch.allclose(top, conf.sort(descending=True).values[:3])
    px, _, _ = pseudo_label(b, x, 1.01, max_n=100)
    assert px.shape[0] == 0


def test_frozen_prefix_and_serving_model_are_untouched():
    b = bundle()
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    x = data()
    y = torch.randint(0, 3, (24,))
    cfg = TrainConfig(epochs=2, lr=0.05, early_stop_loss=0.0)
    out = train_round(b, [*b.class_names, "c3"], x, y, torch.ones(24), x[:8], y[:8], 3, cfg)
    for k, v in b.model.state_dict().items():
        assert torch.equal(v, before[k]), f"serving model changed: {k}"
    cand = out.candidate
    assert cand.version == 2 and cand.class_names[-1] == "c3" and cand.num_classes == 4
    groups = layer_groups(cand.model, ARCH)
    orig = layer_groups(b.model, ARCH)
    for (_, g), (_, o) in zip(groups[:3], orig[:3], strict=True):
        for p, q in zip(g.parameters(), o.parameters(), strict=True):
            assert torch.equal(p, q)
    changed = any(not torch.equal(p, q) for p, q in
                  zip(groups[4][1].parameters(), orig[4][1].parameters(), strict=True))
    assert changed and out.train_flops > 0 and out.epochs_run == 2


def test_worse_candidate_is_rejected_and_tie_passes():
    b = bundle(seed=1)
    x = data(32, seed=1)
    with torch.no_grad():
        y_cur = b.model(x).argmax(1)  # the serving model is perfect on this validation set
    wrong = (y_cur + 1) % 3
    cfg = TrainConfig(epochs=6, lr=0.1, early_stop_loss=0.0, bn_eval=True)
    out = train_round(b, b.class_names, x, wrong, torch.ones(32), x, y_cur, 0, cfg)
    assert out.baseline_val_accuracy == 1.0
    assert out.val_accuracy < 1.0 and not out.accepted
    tie = train_round(b, b.class_names, x[:0], y_cur[:0], torch.ones(0), x, y_cur, 0, cfg)
    assert tie.accepted and tie.val_accuracy == tie.baseline_val_accuracy


def test_adabn_changes_only_batchnorm_buffers_and_matches_frame_statistics():
    from etuner_ros.core.trainer import adapt_bn

    b = bundle()
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    x = data(16, seed=3) * 0.3 + 1.0  # a "new light": other input statistics
    assert adapt_bn(b.model, x) > 0
    after = b.model.state_dict()
    bn = torch.nn.modules.batchnorm._BatchNorm
    bn_stats = {f"{n}.{s}" for n, m in b.model.named_modules() if isinstance(m, bn)
                for s in ("running_mean", "running_var")}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= bn_stats  # weights, biases, num_batches_tracked untouched
    assert not b.model.training
    first = next(m for m in b.model.modules() if isinstance(m, bn))
    with torch.no_grad():
        z = b.model.features[0][0](x)  # the stem conv feeding the first BN
    assert torch.allclose(first.running_mean, z.mean(dim=(0, 2, 3)), atol=1e-4)
    assert adapt_bn(b.model, x[:1]) == 0  # one frame has no variance: nothing changes


def test_validation_weights_favour_the_newest_samples():
    from etuner_ros.core.trainer import recency_weights

    w = recency_weights(17, 8.0)
    assert float(w[-1]) == 1.0 and abs(float(w[-9]) - 0.5) < 1e-6 and bool((w[1:] > w[:-1]).all())
    assert torch.equal(recency_weights(5, 0.0), torch.ones(5))
