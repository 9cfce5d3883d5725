"""The ``python -m etuner_ros.core.bag info|export BAG`` command line.

``info`` prints what a bag holds and which topics would be played; ``export BAG DIR`` writes its
frames as ``DIR/<part>/<class or "unlabelled">/<stamp>.png`` for labelling by hand and for
``bench --stream DIR`` (README, "Replaying a recording"). Apart from ``core/bag.py`` so the
reader, which the replay node and the benchmark import, carries no argument parsing or
printing; ``core/bag.py`` still runs this when started with ``-m``, so the documented command
is unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from etuner_ros.core import bag


def main(argv: list[str] | None = None) -> int:
    """Run ``info`` or ``export``; 0 on success, 2 (message on stderr) for a bag it cannot read."""
    p = argparse.ArgumentParser(prog="python -m etuner_ros.core.bag",
                                description=bag.__doc__.splitlines()[0])
    p.add_argument("command", choices=("info", "export"))
    p.add_argument("bag", type=Path)
    p.add_argument("out", type=Path, nargs="?", help="export: output folder")
    p.add_argument("--camera-topic", default="")
    p.add_argument("--corrections-topic", default="")
    p.add_argument("--parts", type=int, default=1, help="export: cut into N parts (scenarios)")
    a = p.parse_args(argv)
    try:
        with bag.BagSource(a.bag, a.camera_topic, a.corrections_topic) as src:
            if a.command == "info":
                print("\n".join(src.info.lines()))
                return 0
            if a.out is None:
                p.error("export needs an output folder")
            n = bag.export(src, a.out, a.parts)
            print(f"wrote {n} frames under {a.out}")
            return 0
    except bag.BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
