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
    from etuner_ros.core.adabn import adapt_bn

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


def test_class_balanced_weights_give_every_class_the_same_total():
    from etuner_ros.core.trainer import class_balanced_weights

    y = torch.tensor([0, 0, 0, 0, 1, 2, 2])
    w = class_balanced_weights(y)
    totals = [float(w[y == c].sum()) for c in (0, 1, 2)]
    assert max(totals) - min(totals) < 1e-5 and abs(float(w.mean()) - 1.0) < 1e-5
    w2 = class_balanced_weights(y, torch.tensor([1.0, 1, 1, 1, 1, 0.5, 1.5]))
    assert abs(float(w2[5] / w2[6]) - 1 / 3) < 1e-5  # within a class the given ratio stays


def test_balanced_accuracy_is_not_fooled_by_a_one_class_run():
    from etuner_ros.core.trainer import accuracy

    class Always0(torch.nn.Module):
        def forward(self, x):
            return torch.stack([torch.ones(x.shape[0]), torch.zeros(x.shape[0])], 1)

    y = torch.tensor([0] * 9 + [1])
    x = torch.zeros(10, 1)
    assert abs(accuracy(Always0(), x, y) - 0.9) < 1e-6
    assert abs(accuracy(Always0(), x, y, balanced=True) - 0.5) < 1e-6


def test_class_balanced_replay_spreads_over_classes():
    import random

    from etuner_ros.core.trainer import class_balanced_sample

    labels = ["a"] * 50 + ["b"] * 3 + ["c"] * 10
    idx = class_balanced_sample(labels, 9, random.Random(0))
    assert len(set(idx)) == 9
    assert sorted(labels[i] for i in idx) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    idx = class_balanced_sample(labels, 20, random.Random(0))
    got = [labels[i] for i in idx]
    assert got.count("b") == 3 and got.count("a") + got.count("c") == 17
    assert idx == class_balanced_sample(labels, 20, random.Random(0))
    assert class_balanced_sample(labels, 0, random.Random(0)) == []
    assert len(class_balanced_sample(labels, 999, random.Random(0))) == len(labels)


def test_imprinting_points_a_new_row_at_its_examples():
    from etuner_ros.core.model import embed, head
    from etuner_ros.core.trainer import imprint

    b = bundle()
    b.ensure_classes(["new"])
    x = data(8, seed=5)
    y = torch.tensor([3] * 4 + [0] * 4)
    flops = imprint(b, x, y, [3])
    lin = head(b.model, ARCH)
    with torch.no_grad():
        mu = embed(b.model, ARCH, x[:4]).mean(0)
    w, mu = lin.weight[3].detach().double(), mu.double()  # random-init features are ~1e-9
    assert torch.allclose(w / w.norm(), mu / mu.norm(), atol=1e-6) and flops > 0
    w = lin.weight.detach()
    assert abs(float(w[3].norm() - w[:3].norm(dim=1).mean())) < 1e-4
    assert imprint(b, x[4:], y[4:], [3]) == 0.0  # no example of the class: nothing changes


def test_augmented_round_with_frozen_prefix_trains_only_the_back_and_counts_prefix_passes():
    b = bundle()
    x = data()
    y = torch.randint(0, 3, (24,))
    plain = TrainConfig(epochs=2, early_stop_loss=0.0)
    aug = TrainConfig(epochs=2, early_stop_loss=0.0, augment="light")
    a = train_round(b, b.class_names, x, y, torch.ones(24), x[:0], y[:0], 3, plain)
    c = train_round(b, b.class_names, x, y, torch.ones(24), x[:0], y[:0], 3, aug)
    # the prefix runs every epoch on new views instead of once on a cache
    from etuner_ros.core.flops import group_flops
    prefix = 24 * sum(group_flops(b)[:3])
    assert abs((c.train_flops - a.train_flops) - prefix) < 1e-3 * prefix
    for (_, g), (_, o) in zip(layer_groups(c.candidate.model, ARCH)[:3],
                              layer_groups(b.model, ARCH)[:3], strict=True):
        assert all(torch.equal(p, q) for p, q in zip(g.parameters(), o.parameters(),
                                                      strict=True))


def test_consistency_needs_unlabelled_frames_and_a_weight_and_is_charged():
    b = bundle()
    x, u = data(16), data(16, seed=9)
    y = torch.randint(0, 3, (16,))
    off = TrainConfig(epochs=1, early_stop_loss=0.0)
    on = TrainConfig(epochs=1, early_stop_loss=0.0, consistency_weight=1.0,
                     consistency_threshold=0.0)
    base = train_round(b, b.class_names, x, y, torch.ones(16), x[:0], y[:0], 0, off,
                       unlabelled=u)
    same = train_round(b, b.class_names, x, y, torch.ones(16), x[:0], y[:0], 0, on)
    more = train_round(b, b.class_names, x, y, torch.ones(16), x[:0], y[:0], 0, on,
                       unlabelled=u)
    assert base.train_flops == same.train_flops < more.train_flops
    diff = [not torch.equal(p, q) for p, q in zip(same.candidate.model.parameters(),
                                                  more.candidate.model.parameters(),
                                                  strict=True)]
    assert any(diff)


def test_adabn_blend_moves_statistics_part_of_the_way():
    from etuner_ros.core.adabn import adapt_bn

    bn = torch.nn.modules.batchnorm._BatchNorm
    x = data(16, seed=4) * 0.5 + 2.0
    full, part = bundle(), bundle()
    old = [m.running_mean.clone() for m in part.model.modules() if isinstance(m, bn)]
    adapt_bn(full.model, x, 1.0)
    adapt_bn(part.model, x, 0.3)
    # the first BN sees the same input either way, so its blend is exact
    f = next(m for m in full.model.modules() if isinstance(m, bn))
    p = next(m for m in part.model.modules() if isinstance(m, bn))
    assert torch.allclose(p.running_mean, 0.3 * f.running_mean + 0.7 * old[0], atol=1e-5)


def test_shallow_adabn_adapts_only_the_front_groups_and_charges_only_their_flops():
    from etuner_ros.core.adabn import adapt_bn_front
    from etuner_ros.core.flops import group_flops
    from etuner_ros.core.model import layer_groups

    b = bundle()
    groups = layer_groups(b.model, b.arch)
    bn = torch.nn.modules.batchnorm._BatchNorm
    front_bns = {id(m) for _, g in groups[:2] for m in g.modules() if isinstance(m, bn)}
    before = {n: m.running_mean.clone() for n, m in b.model.named_modules() if isinstance(m, bn)}
    x = data(16, seed=3) * 0.3 + 1.0
    flops = adapt_bn_front(b, x, 1.0, depth=2)
    assert flops == 16 * sum(group_flops(b)[:2])
    for n, m in b.model.named_modules():
        if isinstance(m, bn):
            moved = not torch.equal(before[n], m.running_mean)
            assert moved == (id(m) in front_bns), n
    # depth 0: every BN layer, the whole forward
    assert adapt_bn_front(b, x, 1.0, depth=0) == 16 * sum(group_flops(b))


def test_embed_flops_count_every_layer_embed_runs():
    """The drift detector's features run the classifier's hidden linear too; counting only the
    groups before the head left it out (~11 % of an embedding)."""
    from torch.utils.flop_counter import FlopCounterMode

    from etuner_ros.core.flops import embed_flops, group_flops
    from etuner_ros.core.model import embed

    b = bundle()
    x = torch.zeros(1, 3, b.input_size, b.input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        embed(b.model, ARCH, x)
    assert embed_flops(b) == float(fc.get_total_flops()) > sum(group_flops(b)[:-1])
