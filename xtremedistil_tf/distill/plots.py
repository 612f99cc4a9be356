"""Plots of one run: the training loss of every stage, epoch by epoch, and each stage's dev/test score."""
from __future__ import annotations

from xtremedistil_tf import fs, io


def plot_run(metrics: dict, folder: str) -> list[str]:
    """Writes stage_losses.png and stage_scores.png into `folder` from a run's metrics (teacher scores as
    reference lines); returns the paths written, none when there is nothing to plot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    histories = metrics.get("histories", {})
    stages = sorted(histories, key=int)
    if stages:
        fig, axes = plt.subplots(1, len(stages), figsize=(2.6 * len(stages), 2.8), squeeze=False)
        for ax, k in zip(axes[0], stages):
            hist = histories[k]
            ax.plot(range(1, len(hist) + 1), [h["loss"] for h in hist], marker="o", ms=3)
            info = metrics["stages"][k]
            ax.set_title(f"stage {k}: {info['loss']}\n{'+'.join(info['trainable'])}", fontsize=7)
            ax.set_xlabel("epoch", fontsize=7)
            ax.tick_params(labelsize=6)
        axes[0][0].set_ylabel("train loss", fontsize=7)
        fig.tight_layout()
        written.append(_save(fig, fs.join(folder, "stage_losses.png")))
        plt.close(fig)
    scored = [k for k in stages if "dev" in metrics["stages"][k]]
    if scored:
        metric = (metrics.get("selected_stage") or {}).get("metric", "accuracy")
        fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(scored) + 2), 3))
        for split, marker in (("dev", "o"), ("test", "s")):
            values = [metrics["stages"][k].get(split, {}).get(metric) for k in scored]
            if any(v is not None for v in values):
                ax.plot([int(k) for k in scored], values, marker=marker, label=f"student {split}")
        teacher = metrics.get("teacher") or {}
        for split, style in (("dev", ":"), ("test", "--")):
            if metric in teacher.get(split, {}):
                ax.axhline(teacher[split][metric], linestyle=style, color="grey", label=f"teacher {split}")
        ax.set_xlabel("stage")
        ax.set_ylabel(metric)
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(_save(fig, fs.join(folder, "stage_scores.png")))
        plt.close(fig)
    return written


def _save(fig, path: str) -> str:
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path
