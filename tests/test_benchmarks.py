"""The benchmark scripts run and print their tables (a few steps of the tiny config each), say in
one line what to install when torch is missing, and report with the right arithmetic: paired
ratios, clean rounds and MFU are checked here on made-up timings, never by timing anything.

CI has no torch (it is the optional ``bench`` extra), so what needs torch (the float64 agreement of
the torch reference with the engine) runs only where torch is installed.
"""

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
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
        import bench_vs_torch
        import harness

    class Scripts:
        pass

    found = Scripts()
    found.harness, found.bench_vs_torch, found.bench_train_step = harness, bench_vs_torch, bench_train_step
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
        ("bench_gpt2.py", ["--folder", "tests/fixtures/tiny_gpt2", "--rounds", "1"], ["tokens/s", "train step B=1"]),
    ],
)
def test_benchmark_script_prints_its_table(script, args, expected):
    result = run_script(script, *args)
    assert result.returncode == 0, result.stderr
    for words in expected:
        assert words in result.stdout, result.stdout


# -- bench_vs_torch.py without torch ---------------------------------------------------------------


def test_the_engine_side_runs_alone_and_writes_its_measurements(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--impls", "engine", "--configs", "tiny", "--rounds", "3", "--steps", "2", "--warmup", "1"]
    result = run_script("bench_vs_torch.py", *args, "--quiet-wait", "0", "--memory", f"--json={out}", hide_torch=True)
    assert result.returncode == 0, result.stderr
    assert "engine ms" in result.stdout and "engine MiB (imports)" in result.stdout
    row = r"^tiny +L2 H4 C64, T32, B16 +\d+\.\d\d +\d+/3 +\d+ \(\d+\)$"
    assert re.search(row, result.stdout, flags=re.M), result.stdout
    assert result.stderr.count("tiny round") == 3  # a progress line a round
    [res] = json.loads(out.read_text())["results"]
    assert len(res["per_round_s"]["engine"]) == 3 and res["steps_per_turn"] == 2
    assert res["peak_rss_mib"]["engine"] > 0
    assert res["processes"]["engine"]["engine"] == str(ROOT / "tinygrad_lm")  # this checkout's engine was timed


@pytest.mark.parametrize("args", [["--configs", "tiny"], ["--impls", "engine,torch_sdpa"], ["--check"]])
def test_without_torch_it_says_in_one_line_how_to_install_it(args):
    result = run_script("bench_vs_torch.py", *args, hide_torch=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bench_vs_torch: torch is not installed") and 'pip install -e ".[bench]"' in lines[0]


def test_the_bench_extra_the_message_names_installs_torch():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("torch") for req in extras["bench"]), extras["bench"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--configs", "huge"], "unknown config 'huge'; choose from tiny, small, medium"),
        (["--configs", ""], "no config given"),
        (["--impls", "engine,jax"], "unknown implementation 'jax'"),
        (["--impls", "engine,engine"], "named twice"),
        (["--rounds", "0"], "must be at least 1, got 0"),
        (["--steps", "-2"], "must be at least 1, got -2"),
        (["--threads", "two"], "invalid positive_int value: 'two'"),
    ],
)
def test_bad_arguments_are_refused_with_a_usage_message(scripts, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        scripts.bench_vs_torch.parse_args(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_the_defaults_are_the_three_configs_engine_against_torch(scripts):
    args = scripts.bench_vs_torch.parse_args([])
    assert [bc.name for bc in args.configs] == ["tiny", "small", "medium"]
    assert args.impls == ["engine", "torch"] and args.threads == 2 and args.steps is None
    assert scripts.harness.CONFIGS["medium"].describe() == "L6 H6 C384, T256, B8"


# -- the arithmetic of rounds, on made-up timings ---------------------------------------------------


def turns(scripts, engine_s, torch_s, contended=()):
    """Rounds of Turns of 4 steps each; round r's turns all contended if r is in ``contended``."""
    Turn = scripts.bench_vs_torch.Turn
    return [
        {"engine": Turn(e, 4, 4 * (r in contended)), "torch": Turn(t, 4, 4 * (r in contended))}
        for r, (e, t) in enumerate(zip(engine_s, torch_s))
    ]


def test_paired_ratios_cancel_a_machine_that_drifts(scripts):
    """The machine slows down 3x over the run, and back: each side's time moves 3x, the per-round
    ratio does not (the engine takes 1.1x torch's time in every round)."""
    speed = [1.0, 3.0, 1.5, 2.5, 2.0, 1.2]
    torch_s = [0.010 * s for s in speed]
    engine_s = [1.1 * 0.010 * s for s in speed]
    summary = scripts.bench_vs_torch.summarize(turns(scripts, engine_s, torch_s))
    assert summary["ratios"]["torch"] == pytest.approx((1.1, 1.1, 1.1))  # median and quartiles
    assert summary["trusted"] and summary["problem"] is None and summary["clean_rounds"] == 6
    assert summary["ms"] == pytest.approx({"engine": 1.1 * 17.5, "torch": 17.5})  # medians over rounds


def test_contended_rounds_are_left_out_while_enough_clean_ones_remain(scripts):
    engine_s, torch_s = [0.012, 0.012, 0.050, 0.012, 0.012], [0.010, 0.010, 0.010, 0.010, 0.010]
    summary = scripts.bench_vs_torch.summarize(turns(scripts, engine_s, torch_s, contended={2}))
    assert summary["clean_rounds"] == 4 and summary["trusted"]
    assert summary["ratios"]["torch"] == pytest.approx((1.2, 1.2, 1.2))
    assert summary["contended_steps"] == {"engine": [4, 20], "torch": [4, 20]}


def test_a_busy_run_says_its_figures_cannot_be_trusted(scripts):
    bvt = scripts.bench_vs_torch
    busy = bvt.summarize(turns(scripts, [0.02] * 5, [0.01] * 5, contended={0, 1, 2}))
    assert not busy["trusted"] and busy["clean_rounds"] == 2
    assert "only 2 of 5 rounds ran without another process taking our CPUs" in busy["problem"]
    assert busy["ratios"]["torch"][0] == pytest.approx(2.0)  # every round counts then
    few = bvt.summarize(turns(scripts, [0.02] * 2, [0.01] * 2))
    assert "2 rounds are too few" in few["problem"]
    results = [{**busy, "config": vars(scripts.harness.CONFIGS["tiny"]), "peak_rss_mib": {}}]
    lines = bvt.format_table(results, ["engine", "torch"], memory=False)
    assert lines[1].split()[-3:] == ["2.000", "(2.00-2.00)", "2/5"]
    assert any(line.startswith("tiny: cannot be trusted: only 2 of 5 rounds") for line in lines)


def test_turns_alternate_and_count_contended_steps(scripts):
    bvt = scripts.bench_vs_torch
    assert [bvt.turn_order(["engine", "torch"], r) for r in range(3)] == [
        ["engine", "torch"], ["torch", "engine"], ["engine", "torch"]
    ]  # fmt: skip
    firsts = {bvt.turn_order(["engine", "torch", "torch_sdpa"], r)[0] for r in range(3)}
    assert firsts == {"engine", "torch", "torch_sdpa"}
    turn = bvt.turn_from({"wall_s": [0.010, 0.030, 0.011, 0.012], "wait_s": [0.0, 0.015, 0.0001, 0.001]})
    assert turn.median_s == pytest.approx(0.0115) and turn.steps == 4 and turn.contended == 2 and turn.clean


def test_a_workers_peak_memory_is_its_own_not_its_parents(scripts):
    """Linux carries ru_maxrss over exec: a worker of a parent holding 120 MiB would report 120 MiB."""
    held = b"x" * (120 * 2**20)  # written, so resident  # noqa: F841
    code = "import sys; sys.path.insert(0, sys.argv[1]); import harness; print(harness.peak_rss_mib())"
    result = subprocess.run([sys.executable, "-c", code, str(BENCHMARKS)], capture_output=True, text=True, check=True)
    assert float(result.stdout) < 100, result.stdout  # python and numpy: about 30 MiB


def test_paired_ratios_and_quartiles(scripts):
    harness = scripts.harness
    assert harness.paired_ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]
    with pytest.raises(ValueError, match="same number"):
        harness.paired_ratios([1.0], [1.0, 2.0])
    assert harness.median_and_quartiles([4.0, 1.0, 3.0, 2.0, 5.0]) == (3.0, 2.0, 4.0)
    assert harness.median_and_quartiles([7.0]) == (7.0, 7.0, 7.0)


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


# -- the torch reference computes what the engine computes -------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason=NO_TORCH)
def test_the_torch_reference_agrees_with_the_engine_in_float64():
    result = run_script("bench_vs_torch.py", "--check")
    assert result.returncode == 0, result.stderr
    assert "agree: every difference is below 1e-10" in result.stdout


# -- the documented commands are the project's own ---------------------------------------------------


@pytest.mark.parametrize("doc", ["README.md", "PERFORMANCE.md"])
def test_every_benchmark_command_in_the_docs_runs_a_script_a_clone_has(doc):
    text = (ROOT / doc).read_text()
    scripts_named = set(re.findall(r"benchmarks/(\w+\.py)", text))
    assert scripts_named, f"{doc} names no benchmark script"
    assert all((BENCHMARKS / name).is_file() for name in scripts_named), scripts_named
    commands = [line for line in text.splitlines() if line.startswith("    ") and "python" in line]
    assert not [line for line in commands if "shared/bench" in line], "a command needs ../shared/bench/"
