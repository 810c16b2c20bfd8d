"""Class 3: results never overwrite or mix (the one output rule of loralab.fileio).

A command's outputs never collide; a folder output only ever holds what the same command
wrote there (its manifest); a run's own earlier files that it does not write again are
removed; a lock keeps two runs out of one folder, and a lock left by a dead run is taken
over. Checked on the folder's contents, not only on the exit code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_ARGS, one_error_line

from loralab.errors import LoralabError

MANIFEST_NAME = ".loralab-manifest.json"
LOCK_NAME = ".loralab-lock"

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DEMO = ["demo", "--hidden-size", "16", "--ranks", "2", "--no-pseudo"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("out, js", [
    ("x.png", "x.png"), ("a.png", "./a.png"), ("d/../a.png", "a.png"), ("a.png", "link.png"),
    ("a.png", "hard.png"),
])
def test_out_and_json_naming_one_file_are_refused_before_any_work(run_cli, tmp_path,
                                                                  monkeypatch, capsys,
                                                                  no_work, out, js):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    for name in ("x.png", "a.png"):
        (tmp_path / name).write_bytes(b"the user's own figure")
    (tmp_path / "link.png").symlink_to("a.png")
    os.link(tmp_path / "a.png", tmp_path / "hard.png")
    before = snapshot(tmp_path)
    for cmd in (DEMO, ["svd", "--hidden-size", "8", "--ranks", "2"]):
        assert run_cli([*cmd, "--out", out, "--json", js]) == 2
        assert "name the same file" in one_error_line(capsys.readouterr().err)
        assert snapshot(tmp_path) == before


def test_a_file_output_held_by_another_run_is_refused(run_cli, tmp_path, capsys, no_work):
    from loralab.fileio import output_files

    png, js = tmp_path / "f.png", tmp_path / "f.json"
    with output_files({"--out": png}, "svd"):                 # another run holds f.png
        assert run_cli(["svd", "--hidden-size", "8", "--ranks", "2", "--out", str(png),
                        "--json", str(js)]) == 2
        assert "in use by another loralab run" in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []    # its lock left with it


def test_folder_rule_refuses_other_files_and_removes_a_runs_stale_ones(tmp_path):
    from loralab.fileio import LOCK_NAME as LOCK
    from loralab.fileio import MANIFEST_NAME as MANIFEST
    from loralab.fileio import check_output_folder, output_folder

    assert (MANIFEST, LOCK) == (MANIFEST_NAME, LOCK_NAME)

    out = tmp_path / "o"
    with output_folder(out, "finetune", state=(".resume",)) as claim:
        staged = claim.staging()
        for name in ("results.json", "adapters/r4/a.safetensors", "adapters/r8/a.safetensors"):
            (staged / name).parent.mkdir(parents=True, exist_ok=True)
            (staged / name).write_text(name)
        claim.commit(staged)
    with output_folder(out, "finetune", state=(".resume",)) as claim:
        staged = claim.staging()
        (staged / "adapters" / "r4").mkdir(parents=True)
        (staged / "results.json").write_text("second")
        (staged / "adapters" / "r4" / "a.safetensors").write_text("second")
        claim.commit(staged)
    assert sorted(snapshot(out)) == [MANIFEST_NAME, "adapters/r4/a.safetensors",
                                     "results.json"]              # r8 of the first run: gone
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["files"] == ["adapters/r4/a.safetensors", "results.json"]
    assert manifest["complete"] is True and manifest["command"] == "finetune"
    (out / "notes.txt").write_text("mine")
    with pytest.raises(LoralabError, match="'notes.txt'"):
        check_output_folder(out, "finetune")
    (out / "notes.txt").unlink()
    with pytest.raises(LoralabError, match="outputs of 'loralab finetune'"):
        check_output_folder(out, "report")


@pytest.mark.parametrize("files", [["../outside.txt"], ["/etc/passwd"], [".loralab-lock"],
                                   "not a list"])
def test_a_tampered_manifest_is_refused_and_deletes_nothing_outside(tmp_path, files):
    from loralab.fileio import output_folder

    out = tmp_path / "o"
    out.mkdir()
    (tmp_path / "outside.txt").write_text("keep me")
    (out / MANIFEST_NAME).write_text(json.dumps({"format": "loralab-manifest-1",
                                                 "command": "finetune", "files": files}))
    with pytest.raises(LoralabError, match="manifest"):
        with output_folder(out, "finetune"):
            pass
    assert (tmp_path / "outside.txt").read_text() == "keep me"


def test_locks_exclude_each_other_and_a_dead_holder_is_taken_over(tmp_path):
    from loralab.fileio import OutputLock

    path = tmp_path / LOCK_NAME
    first = OutputLock(path, "folder o")
    first.acquire("finetune")
    with pytest.raises(LoralabError, match="in use by another loralab run"):
        OutputLock(path, "folder o").acquire("finetune")
    first.release()
    assert not path.exists()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from loralab.fileio import OutputLock; "
        f"OutputLock({str(path)!r}, 'o').acquire('finetune'); print('held', flush=True); "
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(LoralabError, match=f"pid {holder.pid}"):
        OutputLock(path, "folder o").acquire("finetune")
    holder.send_signal(signal.SIGKILL)                         # dies holding it: kill -9
    holder.wait()
    assert path.exists()                                       # the stale file remains ...
    again = OutputLock(path, "folder o")
    again.acquire("finetune")                                  # ... and is taken over
    again.release()


def test_finetune_refuses_a_folder_holding_the_users_results_md(run_cli, tmp_path, capsys,
                                                                no_work):
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.md").write_text("my own notes\n")
    code = run_cli(["finetune", *TINY_ARGS, "--cache", str(tmp_path / "c"), "--out", str(out)])
    assert code == 2
    assert "'results.md'" in one_error_line(capsys.readouterr().err)
    assert snapshot(out) == {"results.md": b"my own notes\n"}


def test_finetune_into_cwd_with_other_files_is_refused(run_cli, tmp_path, monkeypatch, capsys,
                                                       no_work):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results.json").write_text('{"mine": 1}')
    assert run_cli(["finetune", *TINY_ARGS, "--cache", "c", "--out", "."]) == 2
    one_error_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == {"results.json": b'{"mine": 1}'}


def test_finetune_json_or_cache_inside_out_is_refused(run_cli, tmp_path, capsys, no_work):
    out = tmp_path / "o"
    for extra in (["--json", str(out / "results.json"), "--cache", str(tmp_path / "c")],
                  ["--cache", str(out / "cache")]):
        assert run_cli(["finetune", *TINY_ARGS, "--out", str(out), *extra]) == 2
        assert "inside --out" in one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_finetune_rerun_with_other_targets_leaves_only_its_own_adapters(run_cli, cache_copy,
                                                                      tmp_path, capsys):
    cache, _ = cache_copy
    out = tmp_path / "o"
    argv = ["finetune", *TINY_ARGS, "--cache", str(cache), "--out", str(out)]
    assert run_cli(argv) == 0                                   # --targets attn
    assert run_cli([*argv, "--targets", "q_proj"]) == 0         # another run, same folder
    capsys.readouterr()
    runs = [r["label"] for r in json.loads((out / "results.json").read_text())["runs"]]
    adapters = sorted(p.name for p in (out / "adapters").iterdir())
    assert adapters == sorted(r for r in runs if r != "full") == ["lora-r2-q_proj",
                                                                  "rslora-r2-q_proj"]
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert sorted(manifest["files"]) == sorted(k for k in snapshot(out) if k != MANIFEST_NAME)


def test_finetune_refuses_a_folder_another_run_is_writing(run_cli, tmp_path, capsys, no_work):
    from loralab.fileio import output_folder

    out = tmp_path / "o"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from loralab.fileio import output_folder\n"
        f"with output_folder({str(out)!r}, 'finetune', state=('.resume',)):\n"
        "    print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        assert run_cli(["finetune", *TINY_ARGS, "--cache", str(tmp_path / "c"),
                        "--out", str(out)]) == 2
        assert "in use by another loralab run" in one_error_line(capsys.readouterr().err)
        assert time.perf_counter() - t0 < 10                   # refused at once, no work
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # the dead run's lock only
    with output_folder(out, "finetune"):                      # taken over: no manual step
        pass
