"""Labels of points that fall together are merged; apart, they stay one per point."""

from __future__ import annotations

from loralab.plots.labels import merge_close


def test_coincident_points_share_one_label_in_first_seen_order() -> None:
    pts = [(0.0, 3.0, "full"), (1.0, 1.0, "a"), (1.0, 1.0, "b"), (1.001, 1.0005, "c"),
           (0.5, 2.0, "d")]
    assert merge_close(pts) == [(0.0, 3.0, ["full"]), (1.0, 1.0, ["a", "b", "c"]),
                                (0.5, 2.0, ["d"])]


def test_points_apart_in_either_coordinate_keep_their_own_labels() -> None:
    pts = [(0.0, 0.0, "a"), (0.0, 0.5, "b"), (0.5, 0.0, "c"), (1.0, 1.0, "d")]
    assert [names for _, _, names in merge_close(pts)] == [["a"], ["b"], ["c"], ["d"]]


def test_all_equal_and_empty() -> None:
    assert merge_close([(2.0, 2.0, "x"), (2.0, 2.0, "y")]) == [(2.0, 2.0, ["x", "y"])]
    assert merge_close([]) == []


def test_spans_of_the_axes_set_the_tolerance() -> None:
    """Two points 1e-6 apart are apart on their own span, together on an axis 1.0 wide."""
    pts = [(0.0, 1.0, "1"), (1e-6, 1.0 - 1e-6, "0.75")]
    assert len(merge_close(pts)) == 2
    assert merge_close(pts, spans=(1.0, 1.0)) == [(0.0, 1.0, ["1", "0.75"])]


def test_annotate_apart_places_labels_of_near_points_without_overlap() -> None:
    from loralab.plots import new_figure
    from loralab.plots.labels import annotate_apart

    fig = new_figure(6.0, 4.0)
    ax = fig.subplots(1, 1)
    pts = [(0.50, 0.50, "lora-r8-attn+mlp"), (0.53, 0.52, "lora-r16-attn+mlp"),
           (0.56, 0.54, "rslora-r8-attn+mlp"), (0.50, 0.47, "rslora-r16-attn+mlp"),
           (0.0, 0.0, "far"), (0.0, 0.0, "same spot"), (1.0, 1.0, "corner")]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts])
    texts = annotate_apart(ax, pts)
    assert [t.get_text() for t in texts] == [p[2] for p in pts[:4]] + ["far, same spot",
                                                                        "corner"]
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
