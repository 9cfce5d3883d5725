"""EnergyMeter: CPU-time model, RAPL/NVML/Jetson parsing on fake counters, fallbacks."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import pytest

from etuner_ros.core.energy import ENV_VAR, EnergyMeter


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1


def _rapl_tree(root: Path, uj: int = 1000, span: int = 10**9) -> Path:
    for zone, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0:0", "core"),
                       ("intel-rapl:1", "psys")):
        d = root / zone
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{uj}\n")
        (d / "max_energy_range_uj").write_text(f"{span}\n")
    return root


def _set(root: Path, zone: str, value: int) -> None:
    (root / zone / "energy_uj").write_text(f"{value}\n")


def test_cpu_time_model_proportional_to_cpu(tmp_path: Path) -> None:
    meter = EnergyMeter(cpu_watts_per_core=10.0, source="cpu-time-model")
    with meter.measure() as short:
        _burn(0.1)
    with meter.measure() as long:
        _burn(0.3)
    with meter.measure() as idle:
        time.sleep(0.2)
    assert short.source == long.source == "cpu-time-model" and short.note == ""
    assert short.joules == pytest.approx(short.cpu_seconds * 10.0)
    assert 0.9 < short.joules < 1.5 and 2.9 < long.joules < 3.6
    assert 2.0 < long.joules / short.joules < 3.6
    assert idle.seconds >= 0.2 and idle.joules < 0.3 * short.joules  # CPU, not wall time


def test_auto_without_counters_uses_model(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails even where it is installed
    meter = EnergyMeter(rapl_root=tmp_path / "none", jetson_root=tmp_path / "none")
    with meter.measure() as m:
        _burn(0.02)
    assert m.source == "cpu-time-model" and m.joules > 0


def test_rapl_sums_packages_only(tmp_path: Path) -> None:
    root = _rapl_tree(tmp_path)
    meter = EnergyMeter(rapl_root=root)
    with meter.measure() as m:
        _set(root, "intel-rapl:0", 1000 + 2_500_000)
        _set(root, "intel-rapl:0:0", 1000 + 9_000_000)  # subzone: inside the package
        _set(root, "intel-rapl:1", 1000 + 9_000_000)  # psys: overlaps the package
    assert m.source == "rapl" and m.joules == pytest.approx(2.5)
    assert meter.probe() == "rapl"


def test_rapl_wrap_around(tmp_path: Path) -> None:
    root = _rapl_tree(tmp_path, uj=999_000, span=1_000_000)
    with EnergyMeter(rapl_root=root).measure() as m:
        _set(root, "intel-rapl:0", 500)
    assert m.joules == pytest.approx((1_000_000 - 999_000 + 500) / 1e6)


def test_rapl_unreadable_falls_back(tmp_path: Path) -> None:
    root = _rapl_tree(tmp_path)
    counter = root / "intel-rapl:0" / "energy_uj"
    counter.write_text("not a number\n")
    meter = EnergyMeter(rapl_root=root, jetson_root=tmp_path / "none")
    with meter.measure() as m:
        _burn(0.02)
    assert m.source == "cpu-time-model" and "rapl unreadable" in m.note and m.joules > 0

    counter.write_text("5\n")
    with meter.measure() as m:  # readable at start, gone at the end (e.g. permissions changed)
        counter.unlink()
        counter.mkdir()
    assert m.source == "cpu-time-model" and "rapl unreadable" in m.note


def test_forced_missing_source_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with EnergyMeter(source="rapl", rapl_root=tmp_path).measure() as m:
        pass
    assert m.source == "cpu-time-model" and "rapl" in m.note and "fell back" in m.note

    root = _rapl_tree(tmp_path / "sys")
    monkeypatch.setenv(ENV_VAR, "cpu-time-model")
    with EnergyMeter(rapl_root=root).measure() as m:
        pass
    assert m.source == "cpu-time-model"
    with EnergyMeter(source="rapl", rapl_root=root).measure() as m:  # argument beats env
        pass
    assert m.source == "rapl"
    monkeypatch.setenv(ENV_VAR, "bogus")
    with pytest.raises(ValueError, match="cpu-time-model"):
        EnergyMeter()
    with pytest.raises(ValueError):
        EnergyMeter(source="watts")


def test_nvml_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    energy_mj = {"gpu0": 10_000, "gpu1": 50}
    fake = types.ModuleType("pynvml")
    fake.nvmlInit = lambda: None
    fake.nvmlDeviceGetCount = lambda: 2
    fake.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"
    fake.nvmlDeviceGetTotalEnergyConsumption = lambda h: energy_mj[h]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with EnergyMeter(source="nvml").measure() as m:
        energy_mj["gpu0"] += 3_000
        energy_mj["gpu1"] += 500
    assert m.source == "nvml" and m.joules == pytest.approx(3.5)


def test_reading_filled_when_block_raises(tmp_path: Path) -> None:
    root = _rapl_tree(tmp_path)
    with pytest.raises(RuntimeError), EnergyMeter(rapl_root=root).measure() as m:
        _set(root, "intel-rapl:0", 1000 + 1_000_000)
        raise RuntimeError("training failed")
    assert m.source == "rapl" and m.joules == pytest.approx(1.0)


def _jetson_iio(root: Path) -> Path:
    dev = root / "ina3221x" / "1-0040" / "iio:device0"
    dev.mkdir(parents=True)
    for i, (rail, mw) in enumerate((("VDD_IN", 5000), ("VDD_CPU_GPU_CV", 2000))):
        (dev / f"in_rail_name{i}").write_text(rail + "\n")
        (dev / f"in_power{i}_input").write_text(f"{mw}\n")
    return root


def test_jetson_iio_uses_board_input_rail(tmp_path: Path) -> None:
    meter = EnergyMeter(source="jetson", jetson_root=_jetson_iio(tmp_path), jetson_interval_s=0.02)
    with meter.measure() as m:
        time.sleep(0.3)
    assert m.source == "jetson"
    assert m.joules == pytest.approx(5.0 * m.seconds, rel=0.15)  # VDD_IN only, not 7 W


def test_jetson_hwmon_volts_times_amps(tmp_path: Path) -> None:
    hw = tmp_path / "ina3221" / "1-0040" / "hwmon" / "hwmon3"
    hw.mkdir(parents=True)
    (hw / "in1_input").write_text("5000\n")  # mV
    (hw / "curr1_input").write_text("800\n")  # mA
    (hw / "in4_input").write_text("10\n")  # shunt voltage channel: no current, ignored
    meter = EnergyMeter(jetson_root=tmp_path, rapl_root=tmp_path / "none",
                        jetson_interval_s=0.02)
    with meter.measure() as m:
        time.sleep(0.2)
    assert m.source == "jetson" and m.joules == pytest.approx(4.0 * m.seconds, rel=0.15)


def test_jetson_rail_vanishing_falls_back(tmp_path: Path) -> None:
    root = _jetson_iio(tmp_path)
    meter = EnergyMeter(source="jetson", jetson_root=root, jetson_interval_s=0.01)
    with meter.measure() as m:
        (root / "ina3221x" / "1-0040" / "iio:device0" / "in_power0_input").unlink()
        time.sleep(0.05)
    assert m.source == "cpu-time-model" and "jetson unreadable" in m.note
