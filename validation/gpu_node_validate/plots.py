"""scaling.png (DDP speedup against GPUs, with the ideal line) and busbw.png (all-reduce bus
bandwidth against message size). Matplotlib's object API on the Agg canvas: no display, no
pyplot global state. A section that did not run still gets its file, saying so."""

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .files import write_atomic


def _figure():
    figure = Figure(figsize=(6.4, 4.4), dpi=100)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot(1, 1, 1)


def _save(figure, path):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())


def _nothing(axes, message):
    axes.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def scaling(path, ddp_measurements, note=None):
    """Speedup T1/TN per world size and the ideal line y = N."""
    figure, axes = _figure()
    runs = [r for r in (ddp_measurements or {}).get("runs", []) if r.get("speedup") is not None]
    if len(runs) < 1:
        _nothing(axes, note or "DDP speedup not measured (needs world size 1 and another)")
    else:
        sizes = [r["world_size"] for r in runs]
        speedups = [r["speedup"] for r in runs]
        axes.plot([1, max(sizes)], [1, max(sizes)], "--", color="grey", label="ideal (N x)")
        axes.plot(sizes, speedups, "o-", color="tab:blue", label="measured")
        for size, speedup in zip(sizes, speedups, strict=True):
            axes.annotate(
                "%.2fx" % speedup, (size, speedup), textcoords="offset points", xytext=(4, -12)
            )
        axes.set_xlabel("GPUs (DDP world size)")
        axes.set_ylabel("speedup T1 / TN")
        axes.set_xticks(sizes)
        axes.set_xlim(0.5, max(sizes) + 0.5)  # room for the last point's label
        axes.grid(True, alpha=0.3)
        axes.legend(loc="upper left")
    axes.set_title("DDP scaling, same global batch and steps")
    _save(figure, path)


def busbw(path, allreduce_measurements, expected_gbs=None, note=None):
    """busbw and algbw against message size, log x axis; the expectation as a line when set."""
    figure, axes = _figure()
    results = (allreduce_measurements or {}).get("results", [])
    if not results:
        _nothing(axes, note or "all-reduce not measured")
    else:
        sizes = [r["size_bytes"] for r in results]
        axes.plot(sizes, [r["busbw_gbs"] for r in results], "o-", label="busbw")
        axes.plot(sizes, [r["algbw_gbs"] for r in results], "s:", label="algbw", alpha=0.7)
        if expected_gbs:
            axes.axhline(
                expected_gbs,
                color="tab:red",
                linestyle="--",
                label="threshold %.3g GB/s" % expected_gbs,
            )
        axes.set_xscale("log", base=2)
        axes.set_xlabel("message size (bytes)")
        axes.set_ylabel("GB/s")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(loc="upper left")
    world = (allreduce_measurements or {}).get("world_size")
    axes.set_title("All-reduce bandwidth" + (" over %d ranks" % world if world else ""))
    _save(figure, path)
