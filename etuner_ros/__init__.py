"""Redundancy-aware continual fine-tuning for ROS 2 perception (ETuner).

The generated ``msg``/``srv`` modules live in the colcon install tree; extending ``__path__``
lets a source checkout on ``sys.path`` (development, ``python -m``) still find them there.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
