"""benchmarks/timing.py's arguments: --device cuda without a GPU stops with what to do, a bad device is
named, and a run for some thread counts keeps the rows of the others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: --device cuda runs")
def test_cuda_without_a_gpu_stops_with_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    import timing

    with pytest.raises(SystemExit) as e:
        timing.main(["--device", "cuda", "--quick"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--device cuda: torch" in err and "sees no CUDA device" in err
    assert "or time with --device cpu" in err


@pytest.mark.parametrize(("device", "message"), [("gpu0", "use cpu, cuda or cuda:N"), ("meta", "cpu or cuda only")])
def test_a_bad_device_is_named(device: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    import timing

    with pytest.raises(SystemExit) as e:
        timing.main(["--device", device, "--quick"])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_a_run_keeps_the_rows_of_other_thread_counts_and_devices(tmp_path: Path) -> None:
    import timing

    other = [{"method": "SDLGM", "ms_per_iter": 1.0, "threads": 2}, {"method": "SDLGM", "ms_per_iter": 0.5,
                                                                       "threads": 1, "device": "cuda"}]
    stale = {"method": "SDLGM", "ms_per_iter": 99.0, "threads": 1}  # an older file's CPU row has no device
    (tmp_path / "timing.json").write_text(json.dumps([*other, stale]))
    assert timing.main(["--quick", "--threads", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "timing.json").read_text())
    assert rows[:2] == other and stale not in rows
    assert {r["method"] for r in rows[2:]} >= {"SDLGM", "GS-VAE 20x10"} and all(r["device"] == "cpu" for r in rows[2:])


@pytest.mark.parametrize("argv", [["--threads", "2"], ["--threads", "1", "2"]])
def test_the_cpu_clock_is_refused_where_it_would_mislead(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    import timing

    with pytest.raises(SystemExit) as e:
        timing.main(["--quick", "--clock", "cpu", *argv])
    assert e.value.code == 2 and "--clock cpu sums the CPU time of every thread" in capsys.readouterr().err
