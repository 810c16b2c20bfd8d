"""Class 2 (second pass): a file loralab did not write is never overwritten or deleted.

Only an explicit ``--force`` (``overwrite=True`` for ``save_adapter``) replaces a user's file,
and the refusal names the file and the flag. What loralab wrote itself (a record of its
SHA-256 beside a file output, a checksum in a folder's manifest, one in an adapter's
safetensors header) is replaced on a rerun as before.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_ARGS, one_error_line
from torch import nn

from loralab.errors import LoralabError

MANIFEST = ".loralab-manifest.json"
SVD = ["svd", "--hidden-size", "8", "--ranks", "2"]


@pytest.mark.parametrize("flag", ["--out", "--json"])
def test_a_users_file_output_is_refused_and_force_replaces_it(run_cli, capsys, tmp_path, flag):
    png, js = tmp_path / "fig.png", tmp_path / "r.json"
    mine = png if flag == "--out" else js
    mine.write_bytes(b"my own file")
    mine.chmod(0o444)                                           # read-only too
    argv = [*SVD, "--out", str(png), "--json", str(js)]
    assert run_cli(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{flag} {str(mine)!r} exists and loralab did not write it" in line
    assert "--force" in line and mine.read_bytes() == b"my own file"
    assert not (png if mine == js else js).exists()               # refused before any work
    assert run_cli([*argv, "--force"]) == 0
    capsys.readouterr()
    assert mine.read_bytes() != b"my own file"
    assert run_cli(argv) == 0                                   # its own output: rerun is fine
    mine.write_bytes(b"edited by the user")                     # changed since: the user's
    assert run_cli(argv) == 2
    assert "did not write it (or it changed since)" in one_error_line(capsys.readouterr().err)


def test_report_refuses_a_users_index_html(run_cli, capsys, tmp_path, no_work):
    from loralab.report.build import check_report_dir

    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html>my home page</html>")
    assert run_cli(["report", "--out", str(site), "--no-finetune", "--no-analyses"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "index.html" in line and "--force" in line
    assert (site / "index.html").read_text() == "<html>my home page</html>"
    assert check_report_dir(site, force=True) == site           # --force lets it through
    (site / "index.html").write_text('<!DOCTYPE html>\n<html lang="en"><head><meta '
                                     'charset="utf-8">\n  <meta name="generator" '
                                     'content="loralab report">')
    assert check_report_dir(site) == site                       # an earlier report: replaced


@pytest.mark.parametrize("name", [".loralab-notes.txt", ".loralab-staging-mine"])
def test_loralab_named_entries_of_a_folder_no_run_recorded_are_kept(run_cli, capsys, tmp_path,
                                                                   no_work, name):
    out = tmp_path / "o"
    (out / name).parent.mkdir(parents=True)
    if name.endswith("mine"):
        (out / name).mkdir()
        (out / name / "thesis.tex").write_text("mine")
    else:
        (out / name).write_text("mine")
    assert run_cli(["finetune", *TINY_ARGS, "--cache", str(tmp_path / "c"), "--out",
                    str(out)]) == 2
    assert name in one_error_line(capsys.readouterr().err)
    assert (out / name).exists()


@pytest.mark.parametrize("where", [".resume/notes.txt", ".resume/0123456789ab/mine.txt"])
def test_a_users_file_in_the_resume_folder_is_refused(run_cli, capsys, tmp_path, no_work,
                                                      where):
    out = tmp_path / "o"
    (out / where).parent.mkdir(parents=True)
    (out / where).write_text("mine")
    assert run_cli(["finetune", *TINY_ARGS, "--cache", str(tmp_path / "c"), "--out",
                    str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert where in line and "not loralab's resume state" in line
    assert (out / where).read_text() == "mine"


def test_a_hand_written_manifest_listing_a_users_file_deletes_nothing(tmp_path):
    from loralab.fileio import output_folder

    out = tmp_path / "o"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    (out / MANIFEST).write_text(json.dumps({"format": "loralab-manifest-1",
                                            "command": "finetune", "files": ["thesis.tex"]}))
    with pytest.raises(LoralabError, match="lists 'thesis.tex', but that file is not the one "
                       "loralab wrote"):
        with output_folder(out, "finetune") as claim:
            claim.commit(claim.staging())
    assert (out / "thesis.tex").read_text() == "years of work"


def test_save_adapter_refuses_a_foreign_adapter_config(tmp_path):
    from loralab.lora import AdapterConfig, inject_lora, save_adapter

    model = nn.Sequential(nn.Linear(4, 4))
    inject_lora(model, AdapterConfig(r=2, target_modules=["0"]))
    (tmp_path / "adapter_config.json").write_text('{"mine": true}')
    with pytest.raises(LoralabError, match=r"adapter_config.json' exists and loralab did not "
                       r"write it .* pass overwrite=True"):
        save_adapter(model, tmp_path)
    assert (tmp_path / "adapter_config.json").read_text() == '{"mine": true}'
    save_adapter(model, tmp_path, overwrite=True)
    with torch.no_grad():
        model[0].factors("default")[1].fill_(0.5)
    save_adapter(model, tmp_path)                               # its own files: replaced
    assert json.loads((tmp_path / "adapter_config.json").read_text())["r"] == 2
