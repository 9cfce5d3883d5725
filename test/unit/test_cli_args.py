"""The package's command lines refuse bad numbers at parse time (cli_args)."""

from __future__ import annotations

import argparse

import pytest

from etuner_ros.cli_args import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from etuner_ros.sim import pretrain


def test_the_types_accept_good_numbers_and_name_bad_ones():
    assert positive_int("3") == 3 and positive_float("0.5") == 0.5
    assert non_negative_float("0") == 0.0 and non_negative_int("0") == 0
    for fn, text, why in [(positive_int, "0", "must be at least 1, got 0"),
                          (positive_int, "2.5", "not an integer: '2.5'"),
                          (non_negative_int, "-1", "must be at least 0, got -1"),
                          (positive_float, "0", "must be above 0, got 0"),
                          (positive_float, "nan", "must be finite, got nan"),
                          (non_negative_float, "-1", "must be at least 0, got -1"),
                          (non_negative_float, "inf", "must be finite, got inf"),
                          (non_negative_float, "soon", "not a number: 'soon'")]:
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            fn(text)


@pytest.mark.parametrize("args, why", [
    (["--frames", "0"], "--frames: must be at least 1"),
    (["--epochs", "-1"], "--epochs: must be at least 1"),
    (["--input-size", "0"], "--input-size: must be at least 1"),
    (["--seed", "-1"], "--seed: must be at least 0")])
def test_pretrain_refuses_a_bad_number_before_training(tmp_path, capsys, args, why):
    with pytest.raises(SystemExit) as exc:
        pretrain.main(["--data-dir", str(tmp_path), *args])
    assert exc.value.code == 2
    assert why in capsys.readouterr().err
    assert not (tmp_path / "models").exists()
