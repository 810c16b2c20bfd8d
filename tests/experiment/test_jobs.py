"""Runs side by side (loralab.experiment.jobs): the same numbers as one after another, errors
and Ctrl-C passed on, every item done once."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from loralab.errors import LoralabError
from loralab.experiment import ExperimentConfig, RunOptions, run_experiment
from loralab.experiment.jobs import at_once, can_fork, run_side_by_side

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not can_fork(), reason="side by side needs fork (Linux)")]

TIMINGS = {"step_time_s", "tokens_per_s", "flops_per_s", "mfu", "wall_s"}


# ---------------------------------------------------------------- the pool itself

def test_at_once_runs_in_every_process_at_the_same_moment() -> None:
    def sleep_then_clock() -> float:
        time.sleep(0.5)
        return time.time()                                # when this process finished

    ends = at_once(sleep_then_clock, jobs=3, threads=1)
    assert len(ends) == 3 and max(ends) - min(ends) < 0.3   # one after another: 0.5 s apart
    assert len(at_once(time.time, jobs=1, threads=1)) == 1


def _write_pid(folder: Path):
    def work(item: int, progress) -> None:
        (folder / f"{item}.txt").write_text(str(os.getpid()))
        for _ in range(3):
            time.sleep(0.01)
            if progress:
                progress(f"item {item}", 1)
    return work


def test_every_item_runs_once_in_several_processes(tmp_path: Path) -> None:
    steps: list[tuple[str, int]] = []
    run_side_by_side(list(range(8)), _write_pid(tmp_path), jobs=2, threads=1,
                     progress=lambda label, n: steps.append((label, n)))
    pids = {int((tmp_path / f"{i}.txt").read_text()) for i in range(8)}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{i}.txt" for i in range(8))
    assert len(pids) == 2 and os.getpid() in pids          # the parent works too
    assert len(steps) == 24 and {n for _, n in steps} == {1}  # workers' progress came back


def test_largest_cost_goes_first_and_one_job_runs_here(tmp_path: Path) -> None:
    order: list[int] = []
    run_side_by_side([1, 5, 3], lambda item, _p: order.append(item), jobs=1, threads=1,
                     cost=float)
    assert order == [5, 3, 1]


def test_a_worker_error_is_raised_here_and_stops_the_handing_out(tmp_path: Path) -> None:
    def work(item: int, _progress) -> None:
        if os.getpid() != parent:
            raise LoralabError(f"run {item}: training diverged")
        time.sleep(0.3)
        (tmp_path / f"{item}.txt").write_text("")

    parent = os.getpid()
    with pytest.raises(LoralabError, match=r"run \d: training diverged"):
        run_side_by_side(list(range(6)), work, jobs=2, threads=1)
    assert len(list(tmp_path.iterdir())) < 5      # the parent stopped taking items


def test_a_worker_bug_comes_back_with_its_traceback() -> None:
    parent = os.getpid()

    def work(item: int, _progress) -> None:
        if os.getpid() != parent:
            raise ZeroDivisionError("boom in a worker")
        time.sleep(0.2)

    with pytest.raises(RuntimeError, match="ZeroDivisionError: boom in a worker"):
        run_side_by_side([0, 1, 2], work, jobs=2, threads=1)


# ---------------------------------------------------------------- the experiment

@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _config(cache: Path, jobs: int, **kw) -> tuple[ExperimentConfig, RunOptions]:
    """What to run (``kw`` over the defaults here) and how: ``jobs`` side by side."""
    return (ExperimentConfig(**{"preset": "quick", "ranks": (2, 4),
                                "targets": ("attn", "attn+mlp"), **kw}),
            RunOptions(device="cpu", cache_dir=str(cache), jobs=jobs))


@pytest.fixture(scope="module")
def one_after_another(cache, tmp_path_factory):
    return run_experiment(*_config(cache, jobs=1), out_dir=tmp_path_factory.mktemp("seq") / "o")


def _numbers(result) -> list[dict]:
    return [{k: v for k, v in asdict(r).items() if k not in TIMINGS} for r in result.runs]


def test_side_by_side_gives_the_same_numbers_bit_for_bit(one_after_another, cache,
                                                          tmp_path: Path) -> None:
    seq = one_after_another
    par = run_experiment(*_config(cache, jobs=2), out_dir=tmp_path / "o")
    assert [r.label for r in par.runs] == [r.label for r in seq.runs]
    assert _numbers(par) == _numbers(seq)          # val/train losses, curves, counts: exact
    assert [asdict(c) for c in par.analysis.merge_checks] == \
        [asdict(c) for c in seq.analysis.merge_checks]
    assert [asdict(t) for t in par.analysis.truncation] == \
        [asdict(t) for t in seq.analysis.truncation]
    a = (tmp_path / "o" / "adapters" / "lora-r4-attn+mlp" / "adapter_model.safetensors")
    assert a.is_file()
    assert not (tmp_path / "o" / ".resume").exists()


def test_side_by_side_without_an_output_folder(one_after_another, cache) -> None:
    par = run_experiment(*_config(cache, jobs=2, ranks=(2,), targets=("attn",)))
    seq = one_after_another
    assert par.run("lora-r2-attn").val_loss == seq.run("lora-r2-attn").val_loss


def test_ctrl_c_stops_every_process_and_the_rerun_resumes(one_after_another, cache,
                                                           tmp_path: Path) -> None:
    config, options = _config(cache, jobs=2)
    seen: dict[str, int] = {}

    def progress(label: str, steps: int) -> None:
        seen[label] = seen.get(label, 0) + steps
        if label.startswith("lora-") and seen[label] == 20:
            signal.raise_signal(signal.SIGINT)     # what Ctrl-C at the terminal does

    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, options, out_dir=tmp_path, progress=progress)
    state = tmp_path / ".resume" / config.key()
    kept = sorted(p.name for p in state.iterdir() if p.name.endswith(".ckpt.json"))
    assert len(kept) == 2, kept                   # the parent's run and the worker's
    again = run_experiment(config, options, out_dir=tmp_path)
    assert sum((r.resumed_from or 0) > 0 for r in again.runs) == 2
    for r, ref in zip(again.runs, one_after_another.runs, strict=True):
        assert r.val_loss == pytest.approx(ref.val_loss, abs=1e-6), r.label


def test_bad_jobs_and_threads_are_refused() -> None:
    for kw, message in (({"jobs": -1}, "jobs=-1 is not allowed"),
                        ({"threads": 2.5}, "threads=2.5 is not allowed")):
        with pytest.raises(LoralabError, match=message):
            RunOptions(**kw)
