"""Energy of a block of work, from the best counter the machine has.

The benchmark compares tuning policies by the energy their training costs, so every measurement
says where its number came from (``source``) and a missing or unreadable counter degrades to a
CPU-time model instead of crashing a node in the middle of a tuning round.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCES = ("auto", "rapl", "nvml", "jetson", "cpu-time-model")
ENV_VAR = "ETUNER_ENERGY_SOURCE"
_COUNTERS = ("rapl", "nvml", "jetson")
_TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")  # Jetson rails that already sum the whole board


class _Unavailable(Exception):
    """The counter does not exist here (as opposed to existing but failing to read)."""


@dataclass
class EnergyReading:
    """Filled in when the ``measure()`` block exits (also when it raises)."""

    joules: float = 0.0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    source: str = ""
    note: str = ""  # why a better counter was not used, e.g. "rapl: PermissionError ..."


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


class _Rapl:
    """Intel/AMD RAPL package zones; subzones (core, uncore, dram) are inside their package and
    ``psys`` overlaps the packages, so only top-level non-psys zones are summed."""

    def __init__(self, root: Path) -> None:
        zones = []
        for zone in sorted(root.glob("intel-rapl:*")):
            if not re.fullmatch(r"intel-rapl:\d+", zone.name):
                continue
            try:
                if (zone / "name").read_text().strip() == "psys":
                    continue
            except OSError:
                pass
            if (zone / "energy_uj").exists():
                zones.append(zone)
        if not zones:
            raise _Unavailable(f"no RAPL zones under {root}")
        self.zones = zones
        self.ranges: list[int | None] = []
        for zone in zones:
            try:
                self.ranges.append(_read_int(zone / "max_energy_range_uj"))
            except (OSError, ValueError):
                self.ranges.append(None)

    def start(self) -> list[int]:
        return [_read_int(z / "energy_uj") for z in self.zones]

    def stop(self, state: list[int]) -> float:
        total = 0
        for before, after, span in zip(state, self.start(), self.ranges, strict=True):
            delta = after - before
            if delta < 0:  # the counter wrapped (every ~minute on busy servers)
                delta = after + span - before if span else 0
            total += delta
        return total / 1e6


class _Nvml:
    """Whole-GPU energy counters (Volta and newer); counts the GPU only, not the CPU."""

    def __init__(self) -> None:
        try:
            import pynvml  # optional: only on machines with an NVIDIA driver
        except ImportError as exc:
            raise _Unavailable("pynvml not installed") from exc
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
        except Exception as exc:
            raise _Unavailable(f"NVML init failed ({type(exc).__name__})") from exc
        if count < 1:
            raise _Unavailable("no NVIDIA GPU")
        self.nvml = pynvml
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]

    def start(self) -> list[int]:  # millijoules since driver load
        return [int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self.handles]

    def stop(self, state: list[int]) -> float:
        return sum(a - b for a, b in zip(self.start(), state, strict=True)) / 1e3


class _Jetson:
    """INA3221 power monitors on Jetson boards; power is sampled in a thread and integrated.

    Fixed-depth globs (not ``**``): sysfs is full of symlink loops. Supports the old iio layout
    (``in_power<N>_input`` in mW, ``in_rail_name<N>``) and the hwmon layout (``in<N>_input`` mV x
    ``curr<N>_input`` mA, ``in<N>_label``). If a board-input rail (VDD_IN) exists it alone is used,
    since the other rails are parts of it.
    """

    def __init__(self, root: Path, interval_s: float) -> None:
        self.interval_s = interval_s
        rails: list[tuple[str, Callable[[], float]]] = []
        for pattern in ("ina3221*/*/iio:device*/in_power*_input", "ina3221*/*/in_power*_input"):
            for p in sorted(root.glob(pattern)):
                idx = p.name[len("in_power"):-len("_input")]
                label = self._label(p.parent / f"in_rail_name{idx}", p.name)
                rails.append((label, lambda p=p: _read_int(p) / 1e3))
        for volt in sorted(root.glob("ina3221*/*/hwmon/hwmon*/in*_input")):
            m = re.fullmatch(r"in(\d+)_input", volt.name)
            curr = volt.parent / f"curr{m.group(1)}_input" if m else None
            if curr is None or not curr.exists():
                continue
            label = self._label(volt.parent / f"in{m.group(1)}_label", str(volt))
            rails.append((label, lambda v=volt, c=curr: _read_int(v) * _read_int(c) / 1e6))
        if not rails:
            raise _Unavailable(f"no INA3221 power rails under {root}")
        total = [r for r in rails if r[0] in _TOTAL_RAILS]
        self.rails = total[:1] or rails

    @staticmethod
    def _label(path: Path, default: str) -> str:
        try:
            return path.read_text().strip()
        except OSError:
            return default

    def power_w(self) -> float:
        return sum(read() for _, read in self.rails)

    def start(self) -> dict[str, Any]:
        state: dict[str, Any] = {"t": time.monotonic(), "p": self.power_w(), "j": 0.0,
                                 "err": None, "stop": threading.Event()}
        state["thread"] = threading.Thread(target=self._sample, args=(state,), daemon=True,
                                           name="energy-jetson")
        state["thread"].start()
        return state

    def _step(self, state: dict[str, Any]) -> None:
        now, p = time.monotonic(), self.power_w()
        state["j"] += 0.5 * (p + state["p"]) * (now - state["t"])  # trapezoid rule
        state["t"], state["p"] = now, p

    def _sample(self, state: dict[str, Any]) -> None:
        while not state["stop"].wait(self.interval_s):
            try:
                self._step(state)
            except Exception as exc:  # reported by stop(), which then falls back
                state["err"] = exc
                return

    def stop(self, state: dict[str, Any]) -> float:
        state["stop"].set()
        state["thread"].join()
        if state["err"] is not None:
            raise state["err"]
        self._step(state)
        return float(state["j"])


class EnergyMeter:
    """Measure the energy of a ``with meter.measure() as m:`` block (``m.joules``, ``m.source``).

    Sources, best first: ``rapl`` (CPU package counters), ``nvml`` (NVIDIA GPU counter),
    ``jetson`` (INA3221 board rails), ``cpu-time-model``. ``source`` (or, when that is "auto", the
    ``ETUNER_ENERGY_SOURCE`` environment variable) forces one; a forced or probed counter that is
    missing or unreadable falls back to the model, and ``m.note`` says why.

    The model is process CPU seconds (``time.process_time``: every thread of this process, not
    child processes) x ``cpu_watts_per_core``. The 7.5 W default is a typical active power of one
    edge-class core under a training load: between a Cortex-A78AE on Jetson Orin (~2-4 W/core)
    and a mobile x86 core in AVX-heavy code (~10-15 W/core). Absolute joules are rough, but the
    figure is the same for every policy, so comparisons between policies stay fair. Configure it
    for the actual board when a real counter is unavailable.
    """

    def __init__(self, cpu_watts_per_core: float = 7.5, *, source: str = "auto",
                 rapl_root: str | os.PathLike[str] = "/sys/class/powercap",
                 jetson_root: str | os.PathLike[str] = "/sys/bus/i2c/drivers",
                 jetson_interval_s: float = 0.05) -> None:
        if source == "auto":
            source = os.environ.get(ENV_VAR, "").strip() or "auto"
        if source not in SOURCES:
            raise ValueError(f"energy source {source!r} is not one of {', '.join(SOURCES)}")
        if cpu_watts_per_core < 0:
            raise ValueError(f"cpu_watts_per_core must be >= 0, got {cpu_watts_per_core}")
        self.cpu_watts_per_core = float(cpu_watts_per_core)
        self.requested = source
        self._rapl_root = Path(rapl_root)
        self._jetson_root = Path(jetson_root)
        self._jetson_interval = float(jetson_interval_s)
        self._backends: dict[str, Any] = {}  # name -> backend or the _Unavailable it raised
        self._lock = threading.Lock()

    def _backend(self, name: str) -> Any:
        with self._lock:
            if name not in self._backends:
                try:
                    if name == "rapl":
                        self._backends[name] = _Rapl(self._rapl_root)
                    elif name == "nvml":
                        self._backends[name] = _Nvml()
                    else:
                        self._backends[name] = _Jetson(self._jetson_root, self._jetson_interval)
                except _Unavailable as exc:
                    self._backends[name] = exc
            backend = self._backends[name]
        if isinstance(backend, _Unavailable):
            raise backend
        return backend

    def _candidates(self) -> tuple[str, ...]:
        return _COUNTERS if self.requested == "auto" else (self.requested,)

    def probe(self) -> str:
        """The source a measurement would use now (for logs and /diagnostics)."""
        with self.measure() as m:
            pass
        return m.source

    @contextmanager
    def measure(self) -> Iterator[EnergyReading]:
        reading = EnergyReading()
        notes: list[str] = []
        backend, state, name = None, None, "cpu-time-model"
        for cand in self._candidates():
            if cand == "cpu-time-model":
                break
            try:
                backend = self._backend(cand)
                state = backend.start()
                name = cand
                break
            except _Unavailable as exc:
                backend = None
                if self.requested != "auto":
                    notes.append(f"{cand}: {exc}")
            except Exception as exc:
                backend = None
                notes.append(f"{cand} unreadable: {type(exc).__name__}: {exc}")
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield reading
        finally:
            reading.seconds = time.perf_counter() - t0
            reading.cpu_seconds = time.process_time() - c0
            joules = None
            if backend is not None:
                try:
                    joules = float(backend.stop(state))
                except Exception as exc:
                    notes.append(f"{name} unreadable: {type(exc).__name__}: {exc}")
                    name = "cpu-time-model"
            if joules is None:
                joules = reading.cpu_seconds * self.cpu_watts_per_core
            reading.joules, reading.source = joules, name
            reading.note = "; ".join(notes) + ("; fell back to cpu-time-model"
                                               if notes and name == "cpu-time-model" else "")
