"""The benchmark scripts run and print their tables (a few steps of the tiny config each)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("bench_ops.py", ["--rounds", "1", "--number", "20"], ["engine fwd", "add", "matmul"]),
        ("bench_train_step.py", ["--configs", "tiny", "--steps", "2", "--warmup", "1"], ["ms/step", "tiny"]),
        ("profile_step.py", ["--steps", "2", "--top", "3"], ["ms per step", "in primitives", "matmul"]),
        ("compare_checkouts.py", [".", ".", "--rounds", "1", "--steps", "2", "--warmup", "1"], ["b/a", "backward"]),
        ("bench_gpt2.py", ["--folder", "tests/fixtures/tiny_gpt2", "--rounds", "1"], ["tokens/s", "train step B=1"]),
    ],
)
def test_benchmark_script_prints_its_table(script, args, expected):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    for words in expected:
        assert words in result.stdout, result.stdout
