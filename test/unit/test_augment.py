"""Augmentation: seeded, shape-preserving, valid pixel range, each kind does what it says."""

from __future__ import annotations

import pytest
import torch

from etuner_ros.core.augment import AUGMENTATIONS, augment, cutout, photometric, translate_flip
from etuner_ros.core.model import IMAGENET_MEAN, IMAGENET_STD

torch.set_num_threads(1)
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def frames(n=6, s=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, s, s, generator=g) - MEAN) / STD  # valid normalised pixels


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_same_seed_same_output_and_shape(kind):
    x = frames()
    a = augment(x, kind, torch.Generator().manual_seed(3))
    b = augment(x, kind, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)
    if kind == "none":
        assert a is x
    else:
        assert not torch.equal(a, x)


def test_translation_and_mirror_keep_pixel_values_from_the_image():
    x = frames(n=4)
    out = translate_flip(x, torch.Generator().manual_seed(0), flip=1.0)
    for i in range(4):  # every output value comes from the same image (reflect padding)
        assert set(out[i].flatten().tolist()) <= set(x[i].flatten().tolist())
    zero = translate_flip(x, torch.Generator().manual_seed(0), max_shift=0.0, flip=1.0)
    # max_shift 0 still shifts by at most 1 px; mirroring alone: flip(-1) of a 1-px shift
    assert zero.shape == x.shape


def test_photometric_stays_in_pixel_range_and_greys_when_asked():
    x = frames(n=8)
    out = photometric(x, torch.Generator().manual_seed(0), gain=(3.0, 3.0), grey=1.0)
    px = out * STD + MEAN
    assert px.min() >= -1e-5 and px.max() <= 1 + 1e-5
    assert torch.allclose(px[:, 0], px[:, 1], atol=1e-5) and torch.allclose(px[:, 1], px[:, 2],
                                                                            atol=1e-5)


def test_cutout_blanks_one_square_per_image():
    x = frames(n=3, s=20) + 5.0  # no pixel is 0 before
    out = cutout(x, torch.Generator().manual_seed(1), size=0.3)
    for i in range(3):
        zeros = (out[i, 0] == 0)
        assert 0 < int(zeros.sum()) <= 7 * 7
        assert torch.equal(out[i, :, ~zeros], x[i, :, ~zeros])


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment(frames(), "wild", torch.Generator())
