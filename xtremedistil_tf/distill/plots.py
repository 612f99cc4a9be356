"""Plots of one run: the whole run's training loss on one time axis (stages as labelled bands, dev score on a second
axis), and each stage's dev/test score."""
from __future__ import annotations

import math

from xtremedistil_tf import fs, io

LOSS_COLORS = {"representation": "tab:blue", "logits": "tab:orange", "labels": "tab:green"}
SHORT_NAMES = {"representation": "repr.", "logits": "logits", "labels": "labels"}
FIGSIZE = (10, 5.5)  # inches; at DPI, 1100 x 605 pixels
DPI = 110


def use_log_scale(values, decades: float = 2.0) -> bool:
    """Whether losses spanning `values` want a log axis: their finite positive values span `decades` decades or
    more (30 -> 0.3 does; nonpositive and non-finite values are left out)."""
    positive = [float(v) for v in values if _finite(v) and float(v) > 0]
    return len(positive) >= 2 and math.log10(max(positive) / min(positive)) >= decades - 1e-9


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def stage_spans(metrics: dict) -> list[dict]:
    """Each stage's place on the run's time axis, in cumulative epochs (one epoch = one pass over one chunk, the
    unit of the histories): its start, end and per-epoch training losses (x at each epoch's end)."""
    histories = metrics.get("histories") or {}
    stages = metrics.get("stages") or {}
    spans, start = [], 0
    for k in sorted(set(histories) | set(stages), key=int):
        hist = histories.get(k) or []
        info = stages.get(k) or {}
        losses = [float(h["loss"]) if _finite(h.get("loss")) else float("nan") for h in hist]
        width = max(len(hist), 1)  # a stage without history (still) gets a band
        spans.append({"stage": int(k), "loss": info.get("loss", "?"), "start": start, "end": start + width,
                      "x": [start + i + 1 for i in range(len(hist))], "y": losses,
                      "chunks": len({h.get("chunk", 0) for h in hist})})
        start += width
    return spans


def plot_run(metrics: dict, folder: str) -> list[str]:
    """Writes stage_losses.png (the run's loss picture) and stage_scores.png (the stages' dev/test scores) into
    `folder` from a run's metrics (teacher scores as reference lines); returns the paths written, none when there
    is nothing to plot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    spans = stage_spans(metrics)
    if spans:
        fig = _loss_figure(plt, metrics, spans)
        written.append(_save(fig, fs.join(folder, "stage_losses.png")))
        plt.close(fig)
    stages = sorted(metrics.get("stages") or {}, key=int)
    scored = [k for k in stages if "dev" in metrics["stages"][k]]
    if scored:
        metric = _metric(metrics)
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


def _metric(metrics: dict) -> str:
    from xtremedistil_tf.distill.outputs import main_metric_of
    return main_metric_of(metrics) or "accuracy"


def _loss_figure(plt, metrics: dict, spans: list[dict]):
    """One picture of the whole run: every stage's per-epoch training loss on one cumulative-epoch axis, stages as
    shaded bands labelled with their number and loss, the student's dev main metric after each scored stage (and
    the teacher's) on a second axis."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    total = spans[-1]["end"]
    log = use_log_scale([y for s in spans for y in s["y"]])
    if log:
        ax.set_yscale("log")
        _plain_log_ticks(ax, [y for s in spans for y in s["y"]])
    top = blended_transform_factory(ax.transData, ax.transAxes)
    pixels_per_epoch = 0.8 * FIGSIZE[0] * DPI / max(total, 1)
    kinds = []
    for i, s in enumerate(spans):
        color = LOSS_COLORS.get(s["loss"], "tab:grey")
        if s["loss"] not in kinds:
            kinds.append(s["loss"])
        ax.axvspan(s["start"], s["end"], color=color, alpha=0.10 if i % 2 else 0.18, lw=0, zorder=0)
        if i:
            ax.axvline(s["start"], color="0.6", lw=0.8, zorder=1)
        name = s["loss"] if (s["end"] - s["start"]) * pixels_per_epoch >= 6.5 * len(s["loss"]) + 8 \
            else SHORT_NAMES.get(s["loss"], s["loss"])
        ax.text((s["start"] + s["end"]) / 2, 0.985, f"{s['stage']}\n{name}", transform=top, ha="center", va="top",
                fontsize=9, color="0.15", zorder=5)
        if s["x"]:
            y = [v if (not log or v > 0) else float("nan") for v in s["y"]]
            ax.plot(s["x"], y, color=color, marker="o", ms=4, lw=1.8, zorder=3)
    ax.set_xlim(-0.02 * total - 0.2, total * 1.02 + 0.2)  # points at the ends stay whole
    ax.set_xticks(range(0, total + 1, max(1, math.ceil(total / 25))))
    # room above the data for the band labels
    finite = [v for s in spans for v in s["y"] if _finite(v) and (not log or v > 0)]
    if finite:
        lo, hi = min(finite), max(finite)
        if log:
            ax.set_ylim(lo / 1.5, hi * (hi / lo) ** 0.22 * 1.5)
        else:
            pad = (hi - lo) or abs(hi) or 1.0
            ax.set_ylim(min(0.0, lo - 0.05 * pad), hi + 0.3 * pad)
    chunked = any(s["chunks"] > 1 for s in spans)
    ax.set_xlabel("epoch, cumulative over the run's stages" + (" (one point: one epoch over one chunk)"
                                                               if chunked else ""), fontsize=11)
    ax.set_ylabel("training loss (each stage its own loss)" + (", log scale" if log else ""), fontsize=11)
    ax.tick_params(labelsize=10)
    ax.grid(axis="y", which="major", color="0.85", lw=0.6)
    selected = (metrics.get("selected_stage") or {}).get("stage")
    plural = "s" if len(spans) > 1 else ""
    title = f"Training loss over the run ({metrics.get('mode', '?')} mode, {len(spans)} stage{plural}"
    title += f", selected stage {selected})" if selected is not None else ")"
    ax.set_title(title, fontsize=12)

    handles = [Patch(facecolor=LOSS_COLORS.get(k, "tab:grey"), alpha=0.5, label=f"{k} loss") for k in kinds]
    metric = _metric(metrics)
    scored = [(s, (metrics["stages"].get(str(s["stage"])) or {}).get("dev", {}).get(metric)) for s in spans
              if str(s["stage"]) in (metrics.get("stages") or {})]
    scored = [(s, v) for s, v in scored if _finite(v)]
    teacher = ((metrics.get("teacher") or {}).get("dev") or {}).get(metric)
    if scored or _finite(teacher):
        ax2 = ax.twinx()
        values = [v for _, v in scored]
        if scored:
            ax2.plot([s["end"] for s, _ in scored], values, color="tab:purple", ls="-", lw=1.2, marker="D", ms=5,
                     zorder=4)
            handles.append(Line2D([], [], color="tab:purple", marker="D", ms=5,
                                  label=f"student dev {metric} (after the stage)"))
            for s, v in scored:
                if s["stage"] == selected:
                    ax2.plot([s["end"]], [v], marker="*", ms=16, color="gold", mec="black", zorder=6)
                    handles.append(Line2D([], [], ls="", marker="*", ms=12, color="gold", mec="black",
                                          label=f"selected: stage {selected}"))
        if _finite(teacher):
            ax2.axhline(teacher, color="tab:purple", ls="--", lw=1.2, alpha=0.8)
            values.append(teacher)
            handles.append(Line2D([], [], color="tab:purple", ls="--", label=f"teacher dev {metric} ({teacher:.4f})"))
        lo, hi = min(values), max(values)
        pad = max(hi - lo, 0.02 * max(abs(hi), 1e-3))
        ax2.set_ylim(lo - 0.15 * pad, hi + 0.6 * pad)  # the top band stays free for the stage labels
        ax2.set_ylabel(f"dev {metric}", fontsize=11, color="tab:purple")
        ax2.tick_params(labelsize=10, colors="tab:purple")
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 3), fontsize=9, frameon=False)
    return fig


def _plain_log_ticks(ax, values) -> None:
    """Log-axis ticks as plain numbers (0.5, 1, 2, 5, 10) over a few decades (default 10^k labels beyond)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    positive = [float(v) for v in values if _finite(v) and float(v) > 0]
    if math.log10(max(positive) / min(positive)) > 4:
        return
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _save(fig, path: str) -> str:
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    return path
