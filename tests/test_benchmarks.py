"""The benchmark scripts run and print their tables (a few steps of the tiny config each), and
report with the right arithmetic: MFU is checked here on made-up timings, never by timing anything."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
NO_TORCH = "torch is not installed here: CI deliberately runs without torch, the optional `bench` extra"


@pytest.fixture(scope="module")
def scripts():
    """The benchmark modules, imported as the scripts import each other (their folder on the path)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCHMARKS))
        import bench_train_step
        import harness

    class Scripts:
        pass

    found = Scripts()
    found.harness, found.bench_train_step = harness, bench_train_step
    return found


def run_script(script, *args, hide_torch=False, timeout=300):
    """Run a benchmark script as a user does; ``hide_torch`` runs it as if torch were not installed."""
    path = str(BENCHMARKS / script)
    if hide_torch:  # None in sys.modules makes `import torch` fail and find_spec("torch") return None
        code = (
            "import runpy, sys; sys.modules['torch'] = None; sys.path.insert(0, sys.argv[1]); "
            "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')"
        )
        command = [sys.executable, "-c", code, str(BENCHMARKS), path, *args]
    else:
        command = [sys.executable, path, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("bench_ops.py", ["--rounds", "1", "--number", "20"], ["engine fwd", "add", "matmul"]),
        (
            "bench_train_step.py",
            ["--configs", "tiny", "--steps", "2", "--warmup", "1", "--blocks", "2", "--peak-size", "128"],
            ["ms/step", "tiny", "MFU", "peak GFLOP/s"],
        ),
        ("profile_step.py", ["--steps", "2", "--top", "3"], ["ms per step", "in primitives", "matmul"]),
        ("compare_checkouts.py", [".", ".", "--rounds", "1", "--steps", "2", "--warmup", "1"], ["b/a", "backward"]),
    ],
)
def test_benchmark_script_prints_its_table(script, args, expected):
    result = run_script(script, *args)
    assert result.returncode == 0, result.stderr
    for words in expected:
        assert words in result.stdout, result.stdout


# -- MFU: a figure only when it can be believed ----------------------------------------------------


def test_mfu_against_the_best_peak_seen(scripts):
    m = scripts.bench_train_step.mfu(1e9, 0.010, [380.0, 410.0, 400.0])  # 100 GFLOP/s against 410
    assert m.value == pytest.approx(100 / 410) and m.problem is None and str(m) == "24.4%"


def test_mfu_above_100_percent_is_not_printed(scripts):
    """The figure that started this: 129.5% of a peak measured while the machine was busy."""
    m = scripts.bench_train_step.mfu(1.295 * 30e9 * 0.010, 0.010, [29.0, 30.0])
    assert str(m) == "n/a" and m.value == pytest.approx(1.295)
    assert "would read 129.5%, above 100%" in m.problem


def test_mfu_of_a_run_whose_peaks_disagree_is_not_printed(scripts):
    m = scripts.bench_train_step.mfu(1e9, 0.100, [30.0, 70.0, 65.0])  # 10 GFLOP/s: 14% of 70, but of which machine?
    assert str(m) == "n/a" and "ranged from 30.0 to 70.0 GFLOP/s (2.3x)" in m.problem
    assert scripts.bench_train_step.mfu(1e9, 0.100, [50.0, 70.0]).problem is None  # 1.4x: a VM's usual drift


def test_mfu_of_steps_that_waited_for_the_cpu_is_not_printed(scripts):
    bts = scripts.bench_train_step
    assert "80% of the steps waited for a CPU" in bts.mfu(1e9, 0.1, [70.0], contended_share=0.8).problem
    assert bts.mfu(1e9, 0.1, [70.0], contended_share=0.2).problem is None
    with pytest.raises(ValueError, match="positive peak"):
        bts.mfu(1e9, 0.1, [])


def test_steps_split_into_blocks_between_peak_measurements(scripts):
    split = scripts.bench_train_step.split
    assert split(10, 4) == [3, 3, 2, 2] and split(2, 4) == [1, 1] and split(8, 1) == [8]
