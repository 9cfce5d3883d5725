"""The tuner node's parameters as declared, described, validated ROS parameters.

Three families, declared in this order:

* the node's own settings (:class:`TunerSettings`: where the store and models live, the poll
  period, the swap service, ...);
* training knobs (``epochs``, ``learning_rate``, ...) with the defaults of :class:`TrainConfig`;
* policy knobs, named ``<policy>.<argument>`` after the policy class whose constructor takes
  them (``lazytune.max_wait_s``, ``periodic.period_s``, ``etuner.adapt_shift``; etuner is
  LazyTune plus its own, so it reads ``lazytune.*`` too). Every knob of every policy is
  declared whatever the chosen policy, so a YAML file can hold them all; only the chosen
  policy's reach ``make_policy``, whose constructor checks them once more.

Learning defaults come from the core (one source of truth, shared with the benchmark), so the
code and ``ros2 param describe`` can never disagree on a default. Every parameter is read once
at start-up, so every one is declared ``read_only``: ``ros2 param set`` is refused with a
reason instead of answering success and changing nothing.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from pathlib import Path

from rclpy.node import Node

from etuner_ros.core.policies import POLICY_NAMES, Policy, make_policy
from etuner_ros.core.regions import CROP_CONTEXT
from etuner_ros.core.trainer import TrainConfig
from etuner_ros.core.tuner_config import TunerConfig
from etuner_ros.ros.params import ParameterError, declare
from etuner_ros.ros.qos import RELIABILITY_CHOICES

#: declared with defaults from the core's TrainConfig, not listed in config/etuner.yaml
TRAINING_PARAMETERS = ("epochs", "learning_rate", "replay_size", "holdout_fraction")

# description, minimum, maximum of each known policy argument (ranges: sane values for a robot)
_POLICY_DOC: dict[str, tuple[str, float | None, float | None]] = {
    "max_wait_s": ("staleness bound: tune when the oldest waiting label is this old (s, "
                   "ROS time)", 0.1, 86400.0),
    "min_labels": ("fewest waiting labels for a change- or accuracy-triggered round", 1, 100000),
    "batch_labels": ("labels to merge before a round at fps_ref frames per second", 1, 100000),
    "max_labels": ("upper bound of the merge target whatever the frame rate", 1, 100000),
    "acc_threshold": ("tune when the deployed model's recent accuracy on corrections is "
                      "below this", 0.0, 1.0),
    "fps_ref": ("inference rate at which the merge target is batch_labels (frames/s)",
                0.01, 1000.0),
    "backoff": ("after rejected rounds, ask for more new labels before the next one", None,
                None),
    "period_s": ("seconds between rounds while labels wait (ROS time)", 0.1, 86400.0),
    "adapt_shift": ("input-statistics shift that triggers a BatchNorm-only round", 0.001,
                    100.0),
}


@dataclass(frozen=True)
class TunerSettings:
    """The tuner node's own parameters, as :func:`declare_settings` read them."""

    data_dir: Path            # expanded
    store_file: str
    policy: str
    poll_period_s: float
    swap_service: str
    swap_timeout_s: float
    torch_threads: int
    drift_every_n: int
    image_reliability: str
    keep_checkpoints: int
    no_frames_warn_s: float
    crop_context: float


def declare_settings(node: Node) -> TunerSettings:
    """Declare the node's own parameters on ``node`` and read them."""
    return TunerSettings(
        data_dir=Path(declare(node, "data_dir", "~/.local/share/etuner_ros",
                              "directory of the sample store and checkpoints",
                              read_only=True)).expanduser(),
        store_file=declare(node, "store_file", "samples.db",
                           "SQLite sample store written by label_collector, relative to "
                           "data_dir", read_only=True),
        policy=declare(node, "policy", "immediate", "when and how to fine-tune",
                       choices=POLICY_NAMES, read_only=True),
        poll_period_s=float(declare(node, "poll_period_s", 1.0, "how often new samples are "
                                    "read and the policy asked", minimum=0.05, maximum=3600.0,
                                    read_only=True)),
        swap_service=declare(node, "swap_service", "perception/swap_weights",
                             "perception's SwapWeights service (relative names remap)",
                             read_only=True),
        swap_timeout_s=declare(node, "swap_timeout_s", 30.0,
                               "how long to wait for perception to answer a swap",
                               minimum=1.0, maximum=600.0, read_only=True),
        torch_threads=int(declare(node, "torch_threads", 1, "CPU threads torch may use for "
                                  "tuning", minimum=1, maximum=64, read_only=True)),
        drift_every_n=int(declare(node, "drift_every_n", TunerConfig().drift_every,
                                  "the change detector embeds every n-th camera frame (every "
                                  "frame feeds BatchNorm adaptation)", minimum=1, maximum=1000,
                                  read_only=True)),
        image_reliability=declare(node, "image_reliability", "best_effort",
                                  "QoS reliability of the image subscription",
                                  choices=RELIABILITY_CHOICES, read_only=True),
        keep_checkpoints=int(declare(node, "keep_checkpoints", 5, "newest model versions kept "
                                     "on disk (the base and the active one are always kept)",
                                     minimum=1, maximum=1000, read_only=True)),
        no_frames_warn_s=declare(node, "no_frames_warn_s", 10.0,
                                 "WARN on /diagnostics after this long without a camera frame "
                                 "(ROS time)", minimum=0.5, maximum=86400.0, read_only=True),
        crop_context=float(declare(node, "crop_context", CROP_CONTEXT,
                                   "share of a box added around the crops of the camera frames "
                                   "the engine adapts to (must equal perception's)",
                                   minimum=0.0, maximum=1.0, read_only=True)))


def _arguments() -> dict[str, list[tuple[str, str, object]]]:
    """Per policy: (parameter name, argument, default) from its constructors' signatures."""
    out: dict[str, list[tuple[str, str, object]]] = {}
    for name in POLICY_NAMES:
        args: list[tuple[str, str, object]] = []
        for cls in type(make_policy(name)).__mro__:
            if not (isinstance(cls, type) and issubclass(cls, Policy)) or \
                    "__init__" not in vars(cls):
                continue
            params = inspect.signature(cls.__init__).parameters.values()
            for p in params:
                if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD:
                    args.append((f"{cls.name}.{p.name}", p.name, p.default))
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        out[name] = args
    return out


def policy_parameter_names() -> tuple[str, ...]:
    """Every ``<policy>.<argument>`` name; defaults come from the code, so config/etuner.yaml
    lists them in a comment only (a copied default would go stale when the core is retuned)."""
    return tuple(sorted({p for args in _arguments().values() for p, _, _ in args}))


def declare_policy(node: Node, name: str) -> Policy:
    """Declare every policy's parameters on ``node`` and build policy ``name`` from them."""
    chosen: dict[str, object] = {}
    values: dict[str, object] = {}
    for policy, args in _arguments().items():
        for pname, arg, default in args:
            if pname not in values:
                doc, lo, hi = _POLICY_DOC.get(arg, (f"argument {arg} of the {policy} policy",
                                                    None, None))
                if isinstance(default, bool):
                    lo = hi = None
                values[pname] = declare(node, pname, default,
                                        f"{doc} (policy {pname.split('.')[0]} and those built "
                                        "on it; see etuner_ros/core/policies/)",
                                        minimum=lo, maximum=hi, read_only=True)
            if policy == name:
                chosen[arg] = values[pname]
    try:
        return make_policy(name, **chosen)
    except ValueError as exc:
        raise ParameterError(f"{node.get_name()}: {exc}") from None


def declare_training(node: Node) -> TrainConfig:
    """Training knobs a robot integrator may need, with the core's defaults."""
    d = TrainConfig()
    return replace(
        d,
        epochs=declare(node, "epochs", d.epochs, "max passes over a round's data",
                       minimum=1, maximum=1000, read_only=True),
        lr=declare(node, "learning_rate", d.lr, "optimiser learning rate", minimum=1e-8,
                   maximum=1.0, read_only=True),
        replay_size=declare(node, "replay_size", d.replay_size,
                            "earlier samples re-trained each round (against forgetting)",
                            minimum=0, maximum=100000, read_only=True),
        holdout_fraction=declare(node, "holdout_fraction", d.holdout_fraction,
                                 "share of labels kept out to validate candidates; 0 accepts "
                                 "every candidate", minimum=0.0, maximum=0.9, read_only=True))
