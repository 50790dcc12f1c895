"""Human-readable outputs of a sweep: the leaderboard table and the seed's sweep figures."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["leaderboard_markdown", "metric_text", "sweep_plots"]

_HIDDEN = {"model", "objective", "seed"}  # model and objective have their own columns


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items() if k not in _HIDDEN)


def metric_text(m: dict[str, Any], name: str) -> str:
    """``0.20461 [0.19612, 0.21322]``: a metric and its 95% bootstrap interval, when it has one."""
    if name not in m:
        return "-"
    low, high = m.get(f"{name}_ci_low"), m.get(f"{name}_ci_high")
    return f"{m[name]:.5f}" + (f" [{low:.5f}, {high:.5f}]" if low is not None and high is not None else "")


OBJECTIVES = {"popularity": "none (counts)", "als": "weighted squared error on preferences"}


def objective_text(params: dict[str, Any], metrics: dict[str, Any]) -> str:
    """What a row's model optimises; a rating model shows its held-out RMSE and MAE beside it."""
    text = params.get("objective") or OBJECTIVES.get(str(params.get("model")), "-")
    if text == "rating" and "val_rmse" in metrics:
        text += f" (val RMSE {metrics['val_rmse']:.4g}, MAE {metrics['val_mae']:.4g})"
    return text


def leaderboard_markdown(board: Sequence[dict[str, Any]], k: int, notes: Sequence[str] = ()) -> str:
    """Best first: model, params, validation P/MAP/NDCG@k with 95% intervals, fit seconds, status; then notes."""
    lines = [
        f"| # | model | objective | params | val P@{k} | val MAP@{k} | val NDCG@{k} | fit s | status |",
        "|---:|---|---|---|---:|---:|---:|---:|---|",
    ]
    for i, r in enumerate(board, 1):
        m = r.get("metrics") or {}
        cells = [metric_text(m, name) for name in (f"val_precision_at_{k}", f"val_map_at_{k}", f"val_ndcg_at_{k}")]
        lines.append(
            f"| {i} | {r['params'].get('model')} | {objective_text(r['params'], m)} | {_params_text(r['params'])} | "
            f"{' | '.join(cells)} | {r.get('fit_seconds', '-')} | {r['status']} |"
        )
    return "\n".join([*lines, *([""] if notes else []), *notes])


#: Legend text in points: at the plots' 100 dpi about 12 px, readable where MLflow shows an artifact.
LEGEND_SIZE = 9


def sweep_plots(board: Sequence[dict[str, Any]], k: int, out_dir: Path) -> list[Path]:
    """Validation MAP@k against alpha, rank and regParam (ALS) and against beta (popularity): one plot per
    param the sweep gave more than one value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = f"val_map_at_{k}"
    ok = [r for r in board if r["status"] == "ok"]
    als = [r for r in ok if r["params"].get("model") == "als"]
    pop = [r for r in ok if r["params"].get("variant") == "plays_per_listener"]
    paths = []
    for param in ("alpha", "rank", "reg_param"):
        if len({r["params"].get(param) for r in als}) < 2:  # one value: nothing to plot against, no plot
            continue
        series: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for r in als:
            others = _params_text({x: r["params"][x] for x in ("rank", "reg_param", "alpha", "max_iter")
                                   if x != param and x in r["params"]})
            series[others].append((r["params"][param], r["metrics"][metric]))
        many = len(series) > 4  # a big grid's legend goes beside the plot, not over its lines
        fig, ax = plt.subplots(figsize=(9, 4.2) if many else (6, 4.2))
        for label, pts in sorted(series.items()):
            pts.sort()
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=label)
        ax.set_xlabel(param)
        ax.set_ylabel(f"validation MAP@{k}")
        if param == "reg_param":
            ax.set_xscale("log")
        ax.legend(fontsize=LEGEND_SIZE, title="the other params", title_fontsize=LEGEND_SIZE,
                  **({"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if many else {}))
        ax.set_title(f"ALS: validation MAP@{k} vs {param}")
        fig.tight_layout()
        path = Path(out_dir) / f"map_vs_{param}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    if len({r["params"]["beta"] for r in pop}) > 1:
        pts = sorted((r["params"]["beta"], r["metrics"][metric]) for r in pop)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([max(x, 0.1) for x, _ in pts], [y for _, y in pts], marker="o")
        ax.set_xscale("log")
        ax.set_xlabel("beta (damping)")
        ax.set_ylabel(f"validation MAP@{k}")
        ax.set_title("popularity (plays per listener) vs beta")
        fig.tight_layout()
        path = Path(out_dir) / "map_vs_beta.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    if len({r["params"].get("max_iter") for r in als}) > 1:  # successive halving: one line per grid point
        paths.append(_halving_plot(als, metric, k, Path(out_dir) / "map_vs_iterations.png", plt))
    return paths


def _halving_plot(als: Sequence[dict[str, Any]], metric: str, k: int, path: Path, plt: Any) -> Path:
    """Validation MAP@k against the iterations each ALS grid point reached; those that reached the most are named."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in als:
        point = _params_text({x: r["params"][x] for x in ("rank", "reg_param", "alpha") if x in r["params"]})
        series[point].append((r["params"]["max_iter"], r["metrics"][metric]))
    top = max(max(x for x, _ in pts) for pts in series.values())
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, pts in sorted(series.items()):
        pts.sort()
        last = pts[-1][0] == top
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=label if last else None,
                alpha=1.0 if last else 0.35, color=None if last else "grey", linewidth=1.5 if last else 0.8)
    ax.set_xscale("log")
    ax.set_xticks(sorted({x for pts in series.values() for x, _ in pts}), minor=False)
    ax.set_xticks([], minor=True)
    ax.xaxis.set_major_formatter("{x:g}")  # the rungs' iterations, not powers of ten
    ax.set_xlabel("ALS iterations reached")
    ax.set_ylabel(f"validation MAP@{k}")
    ax.legend(fontsize=LEGEND_SIZE)
    ax.set_title("ALS by successive halving (grey: stopped early)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
