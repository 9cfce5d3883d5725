"""The synthetic world's household objects: shapes as polygons and polylines, and colours.

Objects differ mostly by SHAPE (so every scenario is learnable, greyscale included); in good light
colour is a shortcut too. Coordinates are object units (long side ~1), y down, centred on 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# ----- object shapes: primitives in object units (long side ~1), y down, centred on 0 -----
@dataclass(frozen=True)
class Prim:
    """A filled polygon (width 0) or a polyline of ``width`` object units, in a colour role."""

    points: np.ndarray
    role: str
    width: float = 0.0
    closed: bool = True
    shadow: bool = False  # part of the silhouette that casts the drop shadow


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def _ell(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _pl(*xy: float) -> np.ndarray:
    return np.array(xy, float).reshape(-1, 2)


def _shapes() -> dict[str, list[Prim]]:
    P = Prim
    key_blade = _pl(0.0, -0.04, 0.42, -0.04, 0.42, 0.0, 0.36, 0.0, 0.33, 0.04, 0.28, 0.0,
                    0.22, 0.05, 0.17, 0.0, 0.0, 0.02)
    rot = np.array([[0.5, -0.87], [0.87, 0.5]])  # second key hangs at 60 degrees
    s: dict[str, list[Prim]] = {
        "cup": [P(_pl(-0.28, -0.35, 0.28, -0.35, 0.22, 0.38, -0.22, 0.38), "body", shadow=True),
                P(_ell(0.34, 0.0, 0.13, 0.17), "body", 0.07),
                P(_ell(0.0, -0.35, 0.28, 0.06), "light"), P(_ell(0.0, -0.34, 0.23, 0.04), "dark"),
                P(_rect(-0.19, -0.28, -0.13, 0.3), "light")],
        "bottle": [P(_pl(-0.16, 0.5, -0.16, -0.14, -0.07, -0.3, -0.07, -0.45, 0.07, -0.45,
                         0.07, -0.3, 0.16, -0.14, 0.16, 0.5), "body", shadow=True),
                   P(_rect(-0.08, -0.53, 0.08, -0.45), "accent"),
                   P(_rect(-0.16, 0.05, 0.16, 0.3), "light"),
                   P(_rect(-0.11, -0.1, -0.07, 0.45), "light")],
        "book": [P(_rect(-0.34, -0.48, 0.34, 0.48), "body", shadow=True),
                 P(_rect(-0.34, -0.48, -0.25, 0.48), "dark"),
                 P(_rect(-0.17, -0.3, 0.26, -0.14), "accent"),
                 P(_rect(-0.25, 0.43, 0.34, 0.48), "light"),
                 P(_pl(-0.14, 0.1, 0.22, 0.1), "accent", 0.025, closed=False)],
        "phone": [P(_rect(-0.24, -0.48, 0.24, 0.48), "body", shadow=True),
                  P(_rect(-0.2, -0.4, 0.2, 0.38), "screen"),
                  P(_ell(0.0, -0.44, 0.025, 0.025, 8), "light"),
                  P(_rect(-0.14, -0.3, 0.14, -0.22), "light")],
        "glasses": [P(_ell(-0.25, 0.0, 0.2, 0.15), "lens"), P(_ell(0.25, 0.0, 0.2, 0.15), "lens"),
                    P(_ell(-0.25, 0.0, 0.2, 0.15), "body", 0.05, shadow=True),
                    P(_ell(0.25, 0.0, 0.2, 0.15), "body", 0.05, shadow=True),
                    P(_pl(-0.06, -0.04, 0.0, -0.08, 0.06, -0.04), "body", 0.045, closed=False),
                    P(_pl(-0.45, -0.04, -0.55, -0.12), "body", 0.04, closed=False),
                    P(_pl(0.45, -0.04, 0.55, -0.12), "body", 0.04, closed=False)],
        "pill_box": [P(_rect(-0.5, -0.15, 0.5, 0.15), "body", shadow=True)]
        + [P(_rect(-0.47 + i * 0.135, -0.12, -0.47 + i * 0.135 + 0.11, 0.12),
             ("accent", "light", "screen")[i % 3]) for i in range(7)],
        "remote": [P(_rect(-0.11, -0.5, 0.11, 0.5), "body", shadow=True),
                   P(_ell(0.0, -0.4, 0.04, 0.04, 10), "accent"),
                   P(_ell(0.0, -0.2, 0.075, 0.075, 14), "light")]
        + [P(_ell(x, y, 0.025, 0.025, 8), "light")
           for x in (-0.06, 0.0, 0.06) for y in (0.0, 0.1, 0.2, 0.3, 0.4)],
        "keys": [P(_ell(-0.32, 0.0, 0.14, 0.14), "metal", 0.035, shadow=True),
                 P(_ell(-0.08, -0.02, 0.09, 0.09), "body", shadow=True),
                 P(key_blade - np.array([0.0, 0.02]), "body", shadow=True),
                 P(_ell(-0.08, -0.02, 0.03, 0.03, 8), "dark"),
                 P(_ell(-0.22, 0.13, 0.08, 0.08), "metal", shadow=True),
                 P(key_blade * 0.9 @ rot.T + (-0.2, 0.16), "metal", shadow=True)],
        "walker": [P(_pl(-0.35, -0.45, 0.35, -0.45), "metal", 0.06, closed=False, shadow=True),
                   P(_pl(-0.35, -0.45, -0.42, 0.45), "metal", 0.05, closed=False, shadow=True),
                   P(_pl(0.35, -0.45, 0.42, 0.45), "metal", 0.05, closed=False, shadow=True),
                   P(_pl(-0.26, -0.36, -0.28, 0.4), "metal", 0.03, closed=False),
                   P(_pl(0.26, -0.36, 0.28, 0.4), "metal", 0.03, closed=False),
                   P(_pl(-0.38, 0.05, 0.38, 0.05), "metal", 0.04, closed=False),
                   P(_rect(-0.42, -0.5, -0.28, -0.4), "dark"),
                   P(_rect(0.28, -0.5, 0.42, -0.4), "dark"),
                   P(_ell(-0.42, 0.45, 0.06, 0.06, 12), "dark"),
                   P(_ell(0.42, 0.45, 0.06, 0.06, 12), "dark")],
        "medicine_bottle": [P(_rect(-0.22, -0.2, 0.22, 0.4), "body", shadow=True),
                            P(_rect(-0.26, -0.42, 0.26, -0.2), "light", shadow=True),
                            P(_rect(-0.22, -0.04, 0.22, 0.26), "light")]
        + [P(_pl(x, -0.4, x, -0.22), "dark", 0.015, closed=False) for x in (-0.15, 0.0, 0.15)]
        + [P(_pl(-0.15, y, 0.15, y), "dark", 0.02, closed=False) for y in (0.05, 0.15)],
    }
    return s


SHAPES = _shapes()
# Colour options per role (RGB); a frame picks one option per role, then jitters it.
_DARK, _LIGHT = [(30, 28, 30)], [(236, 236, 230)]
CLASS_PALETTES: dict[str, dict[str, list[tuple[int, int, int]]]] = {
    "cup": {"body": [(200, 40, 40), (210, 80, 40)], "light": _LIGHT, "dark": [(70, 40, 25)]},
    "bottle": {"body": [(40, 150, 70), (60, 170, 110)], "accent": [(30, 60, 180)],
               "light": _LIGHT},
    "book": {"body": [(40, 70, 170), (30, 100, 150)], "dark": [(20, 30, 80)],
             "accent": [(230, 200, 60)], "light": _LIGHT},
    "phone": {"body": _DARK, "screen": [(60, 170, 220), (80, 120, 230)], "light": [(90, 90, 95)]},
    "glasses": {"body": [(70, 40, 20), (25, 25, 25)], "lens": [(190, 210, 220)]},
    "pill_box": {"body": [(150, 50, 160)], "accent": [(240, 120, 200)], "light": _LIGHT,
                 "screen": [(120, 200, 240)]},
    "remote": {"body": [(75, 75, 80)], "accent": [(220, 30, 30)], "light": [(170, 170, 175)]},
    "keys": {"body": [(215, 180, 60)], "metal": [(180, 180, 185)], "dark": _DARK},
    "walker": {"metal": [(190, 192, 198)], "dark": _DARK},
    "medicine_bottle": {"body": [(200, 110, 20)], "light": _LIGHT, "dark": [(60, 60, 60)]},
}
