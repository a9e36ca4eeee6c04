"""The five-minute demo (PROFILE=demo bash run_all.sh): Sec. 3's collapse in numbers and in a figure.

    python tools/demo.py DIR     # DIR/demo.md and DIR/demo.png from DIR/<run>-s<seed>.json; the table printed

Per run and seed, the last epoch's L_align (eq. 1), L_uniform (eq. 2) and spread (raft.py's collapse monitor: 1 for
outputs spread over the sphere, 0 for one point), the first epoch whose spread fell below raft.COLLAPSE_SPREAD, and
the probe's accuracy; the figure draws L_align, L_uniform and the spread per epoch.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import raft  # noqa: E402
import tables  # noqa: E402

DEMO = [("BYOL, MLP predictor", "byol-mlp"), ("BYOL-NP, no predictor", "byol-np"), ("RAFT-NP, no predictor", "raft-np")]


def demo_runs(runs):
    """(label, run name, results of each seed): the demo's runs first, in DEMO's order, then any other run found."""
    labels = dict((name, label) for label, name in DEMO)
    names = [name for _, name in DEMO if runs.get(name)] + sorted(set(runs) - set(labels))
    return [(labels.get(name, name), name, sorted(runs[name], key=lambda r: r["config"]["seed"])) for name in names]


def collapsed_at(result):
    """The first epoch whose spread fell below raft.COLLAPSE_SPREAD (when raft.py printed its "collapse:" line), or
    None; None too for a results file without the spread."""
    return next((row["epoch"] for row in result["history"] if row.get("spread", 1) < raft.COLLAPSE_SPREAD), None)


def scale(results):
    """The setting the runs share, in words, from their configuration."""
    c = results[0]["config"]
    steps = c["epochs"] * (c["train_subset"] // c["batch_size"])
    return (f"{c['encoder']} encoder, {c['image_size']} px, the first {c['train_subset']:,} training images, batch "
            f"{c['batch_size']}, {c['epochs']} epochs ({steps} steps), τ = {c['tau']}; probe: {c['eval_epochs']} "
            f"epochs on the {'features' if c['probe'] == 'features' else 'augmented views'} of the same images, "
            f"tested on the test images")


def demo_markdown(runs):
    """The demo's table and a sentence per run, each computed from its results file."""
    found = demo_runs(runs)
    results = [r for _, _, res in found for r in res]
    lines = ["# The demo: BYOL with and without its predictor (Sec. 3)", "",
             f"Scale: {scale(results)}. Each row: one run's last epoch of training (the mean over that epoch's "
             f"batches); spread: √D × the std of the normalised f_θ across the batch (1: spread over the sphere, 0: "
             f"one point); collapse: the first epoch whose spread fell below {raft.COLLAPSE_SPREAD}; probe accuracy: "
             f"test accuracy of the linear probe, mean of its last {min(10, results[0]['config']['eval_epochs'])} "
             f"epochs.", "",
             "| run | seed | epochs | L_align, eq. 1 | L_uniform, eq. 2 | spread | collapse (spread < "
             f"{raft.COLLAPSE_SPREAD}) | probe accuracy % | seconds (train + probe) |",
             "|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for label, name, res in found:
        for r in res:
            last, at = r["history"][-1], collapsed_at(r)
            seconds = r.get("seconds", {})
            lines.append(f"| {label} (`{name}`) | {r['config']['seed']} | {last['epoch']} | {last['align']:.3g} "
                         f"| {last['uniform']:.3g} | {last['spread']:.3f} | {f'epoch {at}' if at else 'no'} "
                         f"| {r['linear_acc_last10']:.2f} "
                         f"| {seconds.get('train', 0):.0f} + {seconds.get('eval', 0):.0f} |")
            spreads = [row["spread"] for row in r["history"]]
            verdicts.append(f"- {label}, seed {r['config']['seed']}: spread {spreads[0]:.3f} at epoch 1, "
                            f"{spreads[-1]:.3f} at epoch {last['epoch']}; "
                            + (f"collapsed (below {raft.COLLAPSE_SPREAD}) from epoch {at}." if at else
                               f"not collapsed (never below {raft.COLLAPSE_SPREAD}; lowest {min(spreads):.3f})."))
    return "\n".join(lines + [""] + verdicts) + "\n"


def plot_demo(plt, runs, results_dir):
    """demo.png: L_align(q∘f_θ) (log), L_uniform(f_θ) and the spread of f_θ per epoch, one curve per run."""
    found = demo_runs(runs)
    panels = [("align", "(a) L_align(q∘f_θ), eq. 1: views agree", "L_align", True),
              ("uniform", "(b) L_uniform(f_θ), eq. 2: 0 is one point", "L_uniform", False),
              ("spread", f"(c) spread of f_θ (collapse monitor;\ndashed: {raft.COLLAPSE_SPREAD}, collapsed below)",
               "spread", False)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for label, name, res in found:
        for ax, (key, _, _, log) in zip(axes, panels):
            tables.plot_curve(ax, res, key, label, log, tables.RUN_COLOURS.get(name))
    for ax, (_, title, ylabel, log) in zip(axes, panels):
        ax.set(title=title, xlabel="epoch", ylabel=ylabel)
        if log:
            tables.log_axis(ax, tables.plotted(ax))
    tables.collapse_line(axes[2])
    axes[1].axhline(0, color="0.6", lw=0.6)  # L_uniform's bound, inside the frame, so that a collapsed curve shows
    fig.suptitle(f"BYOL with and without its predictor (Sec. 3)\n{scale([r for _, _, res in found for r in res])}",
                 fontsize=10)
    tables.shared_legend(fig, axes, bottom=0.08)
    fig.savefig(os.path.join(results_dir, "demo.png"), dpi=110)
    plt.close(fig)
    return fig


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        fail("usage: python tools/demo.py RESULTS_DIR")
    results_dir = argv[0]
    if not os.path.isdir(results_dir):
        fail(f"{results_dir!r}: no such folder")
    runs = tables.load_results(results_dir)
    if not runs:
        fail(f"no results files (<run>-s<seed>.json) in {results_dir!r}")
    text = demo_markdown(runs)
    raft.save_atomically(text, os.path.join(results_dir, "demo.md"), save=raft.write_text)
    print(text, end="")
    for _, name, res in demo_runs(runs):  # raft.py's own line, where a run printed it into its log
        for r in res:
            log = os.path.join(results_dir, "logs", f"{name}-s{r['config']['seed']}.log")
            said = [line.strip() for line in open(log)] if os.path.exists(log) else []
            for line in [line for line in said if line.startswith("collapse:")][-1:]:  # of the latest training
                print(f"{name} seed {r['config']['seed']}, raft.py said: {line}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plot_demo(plt, runs, results_dir)
    print(f"figure: {os.path.join(results_dir, 'demo.png')}; table: {os.path.join(results_dir, 'demo.md')}")


def fail(message):
    raise SystemExit(f"demo.py: error: {message}")


if __name__ == "__main__":
    main()
