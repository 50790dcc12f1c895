"""Sweep plots say something: one per param the grid varies, legends in readable type."""

from __future__ import annotations

from pipeline import report


def _row(rank, reg, alpha, value):
    return {"status": "ok", "params": {"model": "als", "rank": rank, "reg_param": reg, "alpha": alpha, "max_iter": 10},
            "metrics": {"val_map_at_100": value}}


def test_a_param_with_one_value_gets_no_plot_and_legends_are_readable(tmp_path, monkeypatch):
    import matplotlib.axes

    sizes = []
    legend = matplotlib.axes.Axes.legend

    def spy(self, *args, **kwargs):
        sizes.append(kwargs.get("fontsize"))
        return legend(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "legend", spy)
    board = [_row(r, g, 0.5, 0.1 + r / 1000 + g) for r in (10, 20) for g in (0.01, 0.1)]
    board += [{"status": "ok", "params": {"variant": "plays_per_listener", "beta": 10.0},
               "metrics": {"val_map_at_100": 0.05}}]  # a single beta: no beta plot either
    paths = report.sweep_plots(board, 100, tmp_path)
    assert sorted(p.name for p in paths) == ["map_vs_rank.png", "map_vs_reg_param.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    assert sizes and min(sizes) >= 9, sizes
