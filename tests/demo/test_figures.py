import numpy as np
from PIL import Image

from invdiff.figures import comparison_figure, lambda_sweep_figure, uncertainty_figure


def _stack(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((3, 16, 16)).astype(np.float32)


def test_figures_write_pngs_with_one_row_per_panel(tmp_path):
    ref = _stack(0)
    p1 = comparison_figure({"a": _stack(1), "b": _stack(2)}, ref, tmp_path / "c.png")
    p2 = lambda_sweep_figure({0.1: _stack(3), 1.0: _stack(4)}, ref, tmp_path / "l.png")
    p3 = uncertainty_figure(_stack(5), _stack(6), ref, tmp_path / "u.png", samples=[_stack(7)])
    heights = [Image.open(p).size[1] for p in (p1, p2, p3)]
    # rows: 5 (ref + 2 x (image, error)), 3 (2 lambdas + ref), 5 (ref, sample, mean, err, std)
    assert heights[0] > heights[1] and heights[0] == heights[2]


def test_training_curve_figure_plots_train_and_validation_rows(tmp_path):
    from invdiff.figures import training_curve_figure

    log = [{"step": s, "bpd": 8.0 / s} for s in range(1, 50)] + [{"step": 40, "val_bpd": 0.5}]
    path = training_curve_figure(log, tmp_path / "curve.png")
    assert Image.open(path).size[0] > 100
    with_lr = [{**r, "lr": 1e-3 * min(1.0, r["step"] / 10)} for r in log]
    wide = training_curve_figure(with_lr, tmp_path / "curve_lr.png")  # second axis: the rate
    assert Image.open(wide).size == Image.open(path).size
    assert not np.array_equal(np.asarray(Image.open(wide)), np.asarray(Image.open(path)))
