"""The HTML report: numbers against independent oracles, a self-contained page, the slider's
data, both languages, atomic output and one-line CLI errors."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from loralab import plots
from loralab.demo import LoraConfig, run_demo
from loralab.errors import LoralabError
from loralab.lowrank import low_rank_plus_noise
from loralab.report import (
    ReportConfig,
    build_report,
    check_report_dir,
    collect_report,
    render_report,
    slider_ranks,
)
from loralab.report.slider import compute_slider

D = 64          # small d: every test builds in a few seconds


# Tiny tensors: one torch thread for the whole module (conftest's fixture).
pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module")
def data_en():
    return collect_report(ReportConfig(hidden_size=D, lang="en", analyses=False,
                                       finetune=False))


@pytest.fixture(scope="module")
def page_en(data_en) -> str:
    return render_report(data_en)


# ---- configuration -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, word", [
    ({"preset": "huge"}, "'huge'"), ({"lang": "fr"}, "'fr'"), ({"hidden_size": 1}, "1"),
    ({"hidden_size": 2.5}, "2.5"), ({"seed": "x"}, "'x'"),
])
def test_config_refuses_bad_values_naming_them(kwargs, word):
    with pytest.raises(LoralabError, match=re.escape(word)):
        ReportConfig(**kwargs)


def test_slider_ranks_start_with_the_seeds_and_end_at_full_rank():
    assert slider_ranks(512) == (2, 4, 8, 16, 32, 64, 128, 256, 512)
    assert slider_ranks(48) == (2, 4, 8, 16, 32, 48)
    assert slider_ranks(512)[:5] == LoraConfig().rank_candidates


# ---- numbers -----------------------------------------------------------------------------

def test_slider_errors_match_numpy_truncated_svd(data_en):
    sl = data_en.slider
    gen = torch.Generator().manual_seed(42)
    w0 = torch.randn(D, D, generator=gen).double().numpy()     # the demo's W0, drawn the same
    upd = low_rank_plus_noise(D, D, rank=sl.signal_rank, noise=sl.noise, seed=43)
    upd = upd.double().numpy()
    for mat, attr in ((w0, "gauss_relative"), (upd, "struct_relative")):
        u, s, vt = np.linalg.svd(mat)
        for row in sl.rows:
            r = row.rank
            best = (u[:, :r] * s[:r]) @ vt[:r]                       # explicit rank-r matrix
            rel = np.linalg.norm(mat - best) / np.linalg.norm(mat)
            assert getattr(row, attr) == pytest.approx(rel, rel=1e-4, abs=1e-6)
    assert sl.rows[-1].rank == D and sl.rows[-1].gauss_relative < 1e-6


def test_slider_seed_numbers_equal_the_seed_demo(data_en):
    demo = run_demo(LoraConfig(hidden_size=D), seed=42)
    by_rank = {row.rank: row for row in data_en.slider.rows}
    for row in demo.rows:                       # the seed's draws come first, in its order
        assert by_rank[row.rank].seed_delta_norm == row.delta_norm
        assert by_rank[row.rank].trainable_params == 2 * D * row.rank


def test_slider_pngs_are_one_per_rank_with_the_same_geometry():
    sl = compute_slider(32, (2, 4, 32), crop=16)
    sizes = {struct.unpack(">II", row.png[16:24]) for row in sl.rows}
    assert len(sizes) == 1 and all(row.png.startswith(b"\x89PNG") for row in sl.rows)
    assert len({row.png for row in sl.rows}) == 3


# ---- the page ----------------------------------------------------------------------------

def test_page_is_self_contained(page_en):
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page_en)
    assert "<link rel=\"stylesheet\"" not in page_en and "@import" not in page_en
    imgs = re.findall(r'<img src="([^"]+)" width="(\d+)" height="(\d+)"', page_en)
    assert len(imgs) == page_en.count("<img ")
    assert len(imgs) >= 2
    for src, w, h in imgs:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", png[16:24]) == (int(w), int(h))


def test_page_has_the_seeds_chapters_and_a_working_toc(page_en):
    ids = set(re.findall(r'\bid="([^"]+)"', page_en))
    assert {"overview", "flow", "api", "math", "running", "faq", "extensions",
            "rank-explorer", "traps"} <= ids
    links = set(re.findall(r'href="#([^"]+)"', page_en))
    assert links and links <= ids                # every internal link has its target


def test_page_shows_this_runs_numbers_and_the_two_traps(data_en, page_en):
    for row in data_en.demo.rows:
        assert f"{row.delta_norm:,.2f}" in page_en
        assert f"{row.optimal_error:,.1f}" in page_en
    assert "A: (r, d<sub>in</sub>), B: (d<sub>out</sub>, r)" in page_en     # trap 2
    assert "‖W₀ − (W₀ + ΔW)‖<sub>F</sub> = ‖ΔW‖<sub>F</sub>" in page_en     # trap 1
    assert "α·d/√r" in page_en


def test_formulas_are_mathml_not_tex(page_en):
    assert page_en.count("<math") >= 12
    assert "\\frac" not in page_en and "$$" not in page_en


def test_slider_data_lines_up_with_images_and_table(data_en, page_en):
    raw = re.search(r'<script type="application/json" id="rank-data">(.*?)</script>',
                    page_en, re.S).group(1)
    rows = json.loads(raw)["rows"]
    assert [r["rank_value"] for r in rows] == list(slider_ranks(D))
    assert len(re.findall(r"data-index=\"\d+\"", page_en)) == len(rows)
    assert len(re.findall(r'data-index="\d+" hidden', page_en)) == len(rows) - 1
    slider = re.search(r'<input type="range" id="rank-slider" min="0" max="(\d+)"', page_en)
    assert int(slider.group(1)) == len(rows) - 1
    assert len({r["gauss"] for r in rows}) == len(rows)   # the numbers differ per rank


def test_missing_extensions_say_so(page_en):
    assert page_en.count('class="missing"') == 6      # 7.1-7.4 and 7.6 (analyses), 7.5
    assert "finetune=False" in page_en and "analyses=False" in page_en


def test_chinese_page_with_font_has_chinese_figure_labels(monkeypatch):
    from loralab.plots.demo import demo_figure
    from loralab.plots.report import localize_figure
    from loralab.report.figure_zh import FIGURE_ZH

    fig = demo_figure(run_demo(LoraConfig(hidden_size=D), seed=1))
    assert localize_figure(fig, FIGURE_ZH, "DejaVu Sans") >= 10
    from matplotlib.text import Text

    allowed = {"Frobenius", "LoRA", "SVD", "Eckart", "Young"}
    latin = {w for t in fig.findobj(Text) for w in re.findall(r"[A-Za-z]{3,}", t.get_text())}
    assert latin <= allowed, f"untranslated words in the demo figure: {latin - allowed}"


def test_chinese_page_without_font_says_how_to_get_one(monkeypatch):
    monkeypatch.setattr(plots, "cjk_font", lambda: None)
    data = collect_report(ReportConfig(hidden_size=16, lang="zh", analyses=False,
                                       finetune=False))
    page = render_report(data)
    assert '<html lang="zh-CN">' in page and "一、概述" in page and "七、扩展示例" in page
    assert plots.CJK_FONT_HINT in page
    assert data.cjk_font is None


# ---- writing -----------------------------------------------------------------------------

def test_build_writes_index_and_replaces_only_a_previous_report(tmp_path, data_en):
    out = tmp_path / "rep"
    path = build_report(out=out, data=data_en)
    assert path == out / "index.html" and path.read_text(encoding="utf-8").startswith(
        "<!DOCTYPE html>")
    build_report(out=out, data=data_en)                     # a previous report: replaced
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(LoralabError, match="notes.txt"):
        build_report(out=out, data=data_en)
    assert (out / "notes.txt").read_text() == "mine"


def test_failed_build_leaves_nothing_behind(tmp_path, data_en, monkeypatch):
    import loralab.report.build as report

    def boom(_data):
        raise RuntimeError("render failed")

    monkeypatch.setattr(report, "render_report", boom)
    with pytest.raises(RuntimeError):
        build_report(out=tmp_path / "rep", data=data_en)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make, word", [
    (lambda p: p / "no" / "rep", "does not exist"),
    (lambda p: (p / "f").write_text("x") and p / "f", "not a folder"),
])
def test_check_report_dir_refuses(tmp_path, make, word):
    with pytest.raises(LoralabError, match=word):
        check_report_dir(make(tmp_path))


def test_cli_builds_a_small_report(run_cli, tmp_path, capsys):
    out = tmp_path / "r"
    assert run_cli(["report", "--hidden-size", "16", "--no-analyses", "--no-finetune",
                    "--lang", "zh", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"saved {out / 'index.html'}" in printed
    assert "<html lang=\"zh-CN\">" in (out / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("argv, word", [
    (["--lang", "fr"], "'fr'"), (["--preset", "huge"], "'huge'"),
    (["--out", "{tmp}/missing/dir"], "does not exist"), (["--hidden-size", "0"], "0"),
])
def test_cli_bad_input_is_one_line_and_exit_2(run_cli, tmp_path, capsys, argv, word):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert run_cli(["report", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and word in err and "\n" not in err
    assert not Path(tmp_path / "missing").exists()


# ---- the extension chapters (low-rank analyses, fine-tuning) -------------------------------

@pytest.fixture(scope="module")
def small_experiment(tmp_path_factory):
    """The fine-tuning experiment, shrunk for speed (the report is under test here, not the
    experiment's quality): the quick preset with short schedules and a small corpus, ranks 2
    and 8 on attention only, its base cached in a temp folder."""
    from dataclasses import replace

    from loralab.experiment import ExperimentConfig, RunOptions, run_experiment
    from loralab.experiment import presets as fc

    q = fc.PRESETS["quick"]
    tiny = replace(q, pretrain=replace(q.pretrain, steps=60, warmup_steps=6, eval_every=30),
                   full=replace(q.full, steps=20, warmup_steps=2, eval_every=10),
                   lora=replace(q.lora, steps=20, warmup_steps=2, eval_every=10),
                   n_pretrain_lines=600, n_finetune_lines=300, n_val_lines=40, n_samples=2)
    cache = tmp_path_factory.mktemp("base_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(fc.PRESETS, "quick", tiny)
        yield run_experiment(ExperimentConfig(
            preset="quick", ranks=(2, 8), targets=("attn",), rslora_ranks=()),
            RunOptions(device="cpu", cache_dir=str(cache)))


@pytest.fixture(scope="module")
def data_ext(small_experiment):
    from loralab.report.extensions import finetune_from_result

    data = collect_report(ReportConfig(preset="quick", hidden_size=D, finetune=False))
    data.extensions["finetune"] = finetune_from_result(data, small_experiment)
    return data


def test_extension_chapters_show_their_results(data_ext, small_experiment):
    page = render_report(data_ext)
    assert 'class="missing"' not in page
    assert page.count("<figure>") == 1 + 2 + 1 + 1 + 1 + 3 + 1  # demo, svd×2, spectrum, …,
    # the fine-tuning's three and the merge methods'
    merge = data_ext.results["merge"]
    assert [r.combination for r in merge.rows][:3] == ["linear", "cat", "svd"]
    assert merge.rows[1].relative < 1e-5 and f"{merge.rows[1].relative:.3g}" in page
    for run in small_experiment.runs:
        assert f"{run.final_val_loss:.3f}" in page and run.label in page
    assert f"{small_experiment.base_val_loss:.3f}" in page
    assert data_ext.headline and data_ext.headline in page
    checks = small_experiment.analysis.merge_checks
    assert f"{max(c.max_abs_logit_diff for c in checks):.1e}" in page
    for fit in data_ext.results["fit"].fits:
        assert fit.learned_error >= fit.optimal_error * (1 - 1e-6)       # Eckart–Young floor
        assert f"{fit.learned_error / fit.optimal_error:.4f}" in page


def test_fine_tuning_chapter_shows_memory_beside_its_plan_and_wall_beside_the_floor(
        data_ext, small_experiment):
    page = render_report(data_ext)
    plan = {m["method"]: m["total"] for m in small_experiment.memory}
    for run in small_experiment.runs:
        kind = "full" if run.method == "full" else "lora"
        assert (f"{run.peak_memory_bytes / 2**30:.2f} GiB "
                f"({plan[kind] / 2**30:.2f} GiB)") in page
    f = small_experiment.floor
    assert f.wall_s == small_experiment.wall_s and f.ratio >= 1.0
    assert f"{f.wall_s / 60:.1f} min of wall time" in page and f"{f.ratio:.2f}× that floor" in page


def test_slider_gets_a_fine_tuning_line_at_the_trained_ranks(data_ext, small_experiment):
    lora = {r.rank: r for r in small_experiment.runs if r.method == "lora"}
    assert set(data_ext.slider_extra) == set(lora) == {2, 8}
    for rank, extra in data_ext.slider_extra.items():
        assert f"{lora[rank].final_val_loss:.3f}" in extra["finetune"]


def test_svd_chapter_agrees_with_the_seed_demo(data_ext):
    gauss, _ = data_ext.results["svd"]
    by_rank = {row.rank: row for row in gauss.random}
    for row in data_ext.demo.rows:   # B A formed explicitly (demo) vs the Gram trick (lowrank)
        assert by_rank[row.rank].delta_norm == pytest.approx(row.delta_norm, rel=1e-4)
    sw = gauss.sweep
    for r, err in zip(sw.ranks, sw.optimal_error, strict=True):
        assert err == pytest.approx(data_ext.slider.rows[sw.ranks.index(r)].gauss_error,
                                    rel=1e-4, abs=1e-4)
    assert gauss.check.max_frobenius_diff < 1e-5


def test_every_figure_label_is_translated(data_ext, small_experiment):
    """Chinese pages: every title, axis label and legend of every figure has a translation
    (a label changed elsewhere without one shows up here, by name)."""
    from matplotlib.text import Text

    from loralab.plots import finetune as pft
    from loralab.plots import lowrank as plr
    from loralab.plots.demo import demo_figure
    from loralab.plots.merge_methods import merge_methods_figure
    from loralab.plots.report import localize_figure
    from loralab.report.figure_zh import FIGURE_ZH

    gauss, upd = data_ext.results["svd"]
    figs = [demo_figure(data_ext.demo), plr.svd_figure(gauss), plr.svd_figure(upd),
            plr.spectrum_figure(data_ext.results["spectrum"]), plr.fit_figure(
                data_ext.results["fit"]),
            plr.heatmaps_figure(np.eye(D), np.eye(D), [2, 4]),
            pft.convergence_figure(small_experiment), pft.bridge_figure(small_experiment),
            pft.cost_figure(small_experiment), merge_methods_figure(data_ext.results["merge"])]
    keep = {"Frobenius", "LoRA", "rsLoRA", "SVD", "Eckart", "Young", "Marchenko", "Pastur",
            "Adam", "Latin", "Pig", "nats", "attn", "mlp", "proj", "full", "lora", "cpu",
            "max", "min", "seed", "quick", "default", "RMS", "FT", "out",
            # the merge figure: add_weighted_adapter's names, the adapters' and a layer path's
            "add", "weighted", "adapter", "english", "piglatin", "blocks", "linear", "cat", "svd",
            "ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd", "dare_ties_svd",
            "magnitude_prune", "magnitude_prune_svd", "density", "dare", "magnitude",
            "prune"}
    ours = (gauss.label, upd.label)     # the matrices' names: the report passes them in Chinese
    left = set()
    for fig in figs:
        localize_figure(fig, FIGURE_ZH, "DejaVu Sans")
        for text in fig.findobj(Text):
            s = text.get_text()
            if re.fullmatch(r"\$[^$]*\$", s) or any(name in s for name in ours):
                continue                # pure formulas (tick labels too) and our own names
            if set(re.findall(r"[A-Za-z]{3,}", s)) - keep:
                left.add(s)
    assert not left, f"labels without a Chinese translation: {sorted(left)}"


def test_unreadable_experiment_result_degrades_to_one_line(monkeypatch):
    """After a long run, a result without the fields the chapter reads does not lose the
    page: the chapter says what went wrong (finetune_from_result itself raises, above)."""
    from types import SimpleNamespace

    import loralab.report.extensions as ft
    from loralab.report.extensions import finetune_extension

    monkeypatch.setattr(ft, "run_experiment", lambda config, progress=None: SimpleNamespace())
    data = SimpleNamespace(config=ReportConfig(preset="quick", hidden_size=16), cjk_font=None,
                           results={}, slider_extra={}, headline="")
    ext = finetune_extension(data)
    assert ext.figures == [] and "AttributeError" in ext.missing


HOSTILE = "<script>alert(1)</script>"


def test_hostile_strings_reach_the_page_escaped(small_experiment):
    """A run label, a prompt, a sample generation, the build date and a missing chapter's
    reason that hold markup are shown as text: the templates escape every value that is not
    trusted HTML (the catalogues' texts, the formulas, the figures)."""
    import copy

    from loralab.report import Extension
    from loralab.report.extensions import finetune_from_result

    result = copy.deepcopy(small_experiment)
    tg = result.analysis.targets
    lora = result.run(tg.lora_label)
    for sample in result.analysis.samples:
        sample.prompt = sample.prompt_english = HOSTILE
        sample.outputs[lora.label] = sample.english[lora.label] = HOSTILE
        sample.outputs = {(HOSTILE if k == lora.label else k): v
                          for k, v in sample.outputs.items()}
    lora.label = tg.lora_label = HOSTILE
    data = collect_report(ReportConfig(hidden_size=16, analyses=False, finetune=False))
    data.extensions["finetune"] = finetune_from_result(data, result)
    data.extensions["fit"] = Extension("fit", missing=HOSTILE)
    data.built = HOSTILE
    page = render_report(data)
    assert HOSTILE not in page and "alert(1)<\\/script>" not in page
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    # the date, the headline, the runs table, the targets box, the samples' head, prompts
    # and generations, and the missing chapter's reason
    assert page.count(escaped) >= 8
    assert page.count("<script") == 2                 # the slider's data and its code


def test_every_catalogue_key_is_used_and_exists(data_ext, named_keys, monkeypatch):
    """The keys the page looks up while it renders, with those the code names literally
    (figure captions, figure labels: looked up while collecting), are exactly the
    catalogue's: a text nothing uses is dead, a key missing from it fails here."""
    from loralab.report import text

    used: set[str] = set()
    lookup = text._entry

    def record(key: str, lang: str) -> str:
        used.add(key)
        return lookup(key, lang)

    monkeypatch.setattr(text, "_entry", record)
    render_report(data_ext)
    names = used | set(named_keys)
    assert sorted(names - set(text.catalogue("en"))) == []
    assert sorted(set(text.catalogue("en")) - names) == []
