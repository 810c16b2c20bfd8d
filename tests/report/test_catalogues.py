"""The report's words: the two catalogues agree key for key and placeholder for placeholder,
every key the templates and the code name exists, and ``t`` escapes what it fills in."""

from __future__ import annotations

import re
import string
import sys
from pathlib import Path

import pytest
from markupsafe import Markup

from loralab.errors import LoralabError
from loralab.report import LANGS, ReportConfig, collect_report, render_report
from loralab.report import text as text_mod
from loralab.report.text import catalogue, plain, t

if sys.version_info >= (3, 11):
    import tomllib
else:                                          # Python 3.10: the backport
    import tomli as tomllib

REPORT = Path(text_mod.__file__).parent


def _placeholders(text: str) -> set[str]:
    """The field names of a ``str.format`` text (``{pct:.1f}`` -> ``pct``)."""
    return {re.split(r"[.\[]", name)[0]
            for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_the_catalogues_are_flat_toml_files_of_texts():
    for lang in LANGS:
        raw = tomllib.loads((REPORT / "catalogues" / f"{lang}.toml").read_text("utf-8"))
        assert raw and all(isinstance(v, str) for v in raw.values()), lang
        assert dict(catalogue(lang)) == raw


def test_both_catalogues_have_the_same_keys_and_placeholders():
    en, zh = catalogue("en"), catalogue("zh")
    assert sorted(set(en) - set(zh)) == [], "keys missing from zh.toml"
    assert sorted(set(zh) - set(en)) == [], "keys missing from en.toml"
    differ = {k: (_placeholders(en[k]), _placeholders(zh[k])) for k in en
              if _placeholders(en[k]) != _placeholders(zh[k])}
    assert differ == {}, f"placeholders differ between en and zh: {differ}"


def test_every_key_the_templates_and_code_name_exists(named_keys):
    found = named_keys
    assert len(found) > 100                       # the scan does see the templates and code
    for lang in LANGS:
        missing = {k: where for k, where in found.items() if k not in catalogue(lang)}
        assert missing == {}, f"keys missing from {lang}.toml: {missing}"


def test_placeholders_are_what_the_code_passes():
    """A catalogue text fills with the values the page passes (no stray or missing names)."""
    assert _placeholders(catalogue("en")["sl_fig_resid"]) == {"pct", "m"}
    assert plain("sl_fig_resid", "en", m="W₀", pct=12.345) == "left over: 12.3% of ‖W₀‖"
    with pytest.raises(KeyError):
        t("ov_p2", "en", d=1)                      # p8, d2 and pct8 are missing


def test_t_keeps_the_catalogues_markup_and_escapes_the_values():
    out = t("ov_run_opt", "en", r_last="<i>", opt_last=Markup("<b>ok</b>"))
    assert isinstance(out, Markup)
    assert "<b><b>ok</b></b>" in out                  # catalogue markup and a Markup value
    assert "rank-&lt;i&gt; matrix" in out and "<i>" not in out
    assert "‖W₀‖<sub>F</sub>" in out                  # plainly written subscript, marked up
    assert plain("x_w0", "zh") == "种子的 W₀（高斯）"


def test_an_unknown_key_or_language_is_named():
    with pytest.raises(KeyError, match="no_such_key.*en.toml"):
        t("no_such_key", "en")
    with pytest.raises(LoralabError, match="'fr'"):
        catalogue("fr")


def test_a_key_missing_from_a_catalogue_fails_the_page(monkeypatch):
    data = collect_report(ReportConfig(hidden_size=16, lang="zh", analyses=False,
                                       finetune=False))
    render_report(data)
    short = {k: v for k, v in catalogue("zh").items() if k != "faq_a5"}
    monkeypatch.setattr(text_mod, "catalogue", lambda lang: short)
    with pytest.raises(KeyError, match="faq_a5"):
        render_report(data)
