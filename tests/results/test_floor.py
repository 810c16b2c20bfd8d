"""loralab.results.floor: the least wall time the FLOPs allow, and how far a run was from it."""

import math

from loralab.results.floor import Floor


def test_floor_is_flops_over_peak_and_ratio_is_wall_over_floor():
    f = Floor(train_flops=6e12, evaluate_flops=3e12, analysis_flops=1e12, peak_flops=2e11,
              wall_s=100.0)
    assert f.flops == 1e13
    assert math.isclose(f.floor_s, 50.0) and math.isclose(f.ratio, 2.0)
    d = f.to_dict()
    assert d["floor_s"] == f.floor_s and d["ratio"] == f.ratio and d["flops"] == 1e13
    line = f.line()
    assert line.startswith("floor 50 s (10.0 TFLOP: train 6.0, evaluate 3.0, analysis 1.0,")
    assert line.endswith("wall 100 s = 2.00× the floor") and "200.0 GFLOP/s" in line


def test_no_measured_peak_gives_nan_not_a_number_that_looks_real():
    f = Floor(1e12, 0.0, 0.0, float("nan"), 10.0)
    assert math.isnan(f.floor_s) and math.isnan(f.ratio)
    assert math.isnan(Floor(1e12, 0.0, 0.0, 0.0, 10.0).floor_s)
