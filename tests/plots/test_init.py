"""loralab.plots (the package's own module): one style, headless figures, atomic files."""

from __future__ import annotations

import pytest

from loralab.errors import LoralabError
from loralab.plots import (
    COLORS,
    FIGURE_FORMATS,
    check_figure_path,
    cjk_font,
    figure_bytes,
    new_figure,
    png_bytes,
    save_png,
)

from .conftest import is_png


def test_a_new_figure_is_blank_headless_and_sized():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = new_figure(6.0, 3.0)
    assert isinstance(fig.canvas, FigureCanvasAgg) and not fig.axes
    assert tuple(fig.get_size_inches()) == (6.0, 3.0)
    assert new_figure(layout=None).get_layout_engine() is None


def test_the_cjk_switch_picks_the_font_only_when_asked():
    import matplotlib

    new_figure()
    assert matplotlib.rcParams["font.family"] == ["DejaVu Sans"]
    new_figure(cjk=True)
    font = cjk_font()
    assert matplotlib.rcParams["font.family"] == ([font, "DejaVu Sans"] if font
                                                  else ["DejaVu Sans"])
    new_figure()                                           # and back, for the next figure


@pytest.mark.parametrize("name", ["a.png", "b.PDF", "c.svg"])
def test_the_suffix_names_the_format(name):
    assert check_figure_path(name) == FIGURE_FORMATS[name[name.index("."):].lower()]


@pytest.mark.parametrize("name", ["a.jpg", "noext"])
def test_other_suffixes_are_refused_by_the_flag_named(name):
    with pytest.raises(LoralabError, match=r"^--fig .*PNG, PDF or SVG"):
        check_figure_path(name, flag="--fig")


def test_bytes_in_each_format_and_no_date_in_vector_files():
    fig = new_figure(2.0, 2.0)
    fig.subplots().plot([0, 1], [1, 0], color=COLORS["lora"])
    assert is_png(png_bytes(fig)) and figure_bytes(fig, "png") == png_bytes(fig)
    pdf, svg = figure_bytes(fig, "pdf"), figure_bytes(fig, "svg")
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf
    assert b"<svg" in svg and b"<dc:date>" not in svg


def test_save_writes_atomically_and_refuses_a_wrong_suffix(tmp_path):
    fig = new_figure(2.0, 2.0)
    out = save_png(fig, tmp_path / "f.png")
    assert out == str(tmp_path / "f.png") and is_png((tmp_path / "f.png").read_bytes())
    with pytest.raises(LoralabError, match="figure"):
        save_png(fig, tmp_path / "f.gif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]
