"""What more training changes: the same runs at E epochs in one folder and at more epochs in another.

    python tools/longer.py results/cpu results/cpu-long      # results/cpu-long/longer.md and longer.png

With constant τ and learning rate the longer runs' first E epochs are the shorter runs themselves, so longer.md
first checks that: every number of those epochs (the clock left out; the kNN monitor where both files logged it),
file by file, with the largest difference where any differs. Then every claim of claims.md whose runs the longer
folder holds, judged by tables.py's rule at E epochs and at the longer runs' last epoch, those whose verdict moved
marked; the Rand-Baseline, which does not train, is read from the shorter folder. longer.png draws the kNN
accuracy and the spread of f_θ per epoch of the runs, epoch E marked.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import raft  # noqa: E402
import tables  # noqa: E402

CLOCK = {"seconds", "images_per_s", "eta_s"}  # what a re-run need not repeat


def first_epochs(short, long):
    """(numbers compared, numbers that differ, the largest absolute difference and where (metric, epoch), the first
    epoch that differs or None) of the shorter file's history against the same epochs of the longer file's."""
    compared = differ = 0
    largest, where, first = 0.0, "", None
    for row_short, row_long in zip(short["history"], long["history"]):
        for key in sorted(row_short.keys() & row_long.keys() - CLOCK):
            compared += 1
            if row_short[key] != row_long[key]:
                differ += 1
                if abs(row_short[key] - row_long[key]) > largest:
                    largest, where = abs(row_short[key] - row_long[key]), f"{key}, epoch {row_short['epoch']}"
                first = first or row_short["epoch"]
    return compared, differ, largest, where, first


def with_untrained(runs, other):
    """runs, with the runs of `other` that do not train (the Rand-Baseline) where runs has none of that name."""
    return {**{name: res for name, res in other.items() if tables.untrained(res)}, **runs}


def epochs_of(runs):
    return sorted({r["config"]["epochs"] for res in runs.values() for r in res if r["config"]["epochs"]})


def longer_markdown(short_dir, long_dir):
    short, long = tables.load_results(short_dir), tables.load_results(long_dir)
    found = epochs_of({n: short[n] for n in long if n in short}), epochs_of(long)
    if any(len(epochs) != 1 for epochs in found):
        raft.fail(f"each folder must hold runs of one length; found {found[0]} and {found[1]} epochs")
    (e_short,), (e_long,) = found
    lines = [f"# {e_short} and {e_long} epochs: the same runs, trained longer", "",
             f"Made by `python tools/longer.py {short_dir} {long_dir}`.", "",
             f"## The first {e_short} epochs of each {e_long}-epoch run against the {e_short}-epoch file", "",
             "Every number of the history that both files hold at those epochs (the clock left out; the kNN monitor "
             "where both logged it).", "",
             "| run | seed | numbers compared | differ | largest difference | where | first epoch that differs |",
             "|---|---|---|---|---|---|---|"]
    for name in sorted(long):
        by_seed = {r["config"]["seed"]: r for r in short.get(name, [])}
        for r in sorted(long[name], key=lambda r: r["config"]["seed"]):
            seed = r["config"]["seed"]
            if seed not in by_seed:
                continue
            compared, differ, largest, where, first = first_epochs(by_seed[seed], r)
            lines.append(f"| {name} | {seed} | {compared} | {differ} | {largest:.3g} | {where or '-'} "
                         f"| {first or '-'} |")
    seeds = {n: {r["config"]["seed"] for r in res} for n, res in short.items()}
    paired = {n: [r for r in res if r["config"]["seed"] in seeds.get(n, ())] for n, res in long.items()}
    runs = {e_short: with_untrained({n: short[n] for n in long if n in short}, short),
            e_long: with_untrained({n: res for n, res in paired.items() if res}, short)}
    lines += ["", f"## The claims, at {e_short} and at {e_long} epochs", "",
              f"Every claim of `claims.md` whose runs `{long_dir}` holds (the Rand-Baseline's from `{short_dir}`), "
              f"judged by the rule of `claims.md` at each run's last epoch: {e_short} and {e_long}, on the seeds both "
              f"folders hold (more seeds would move a verdict for another reason than training). A, B: each seed's "
              f"value. A verdict that was *cannot be decided* for want of a metric the shorter files do not log "
              f"moves for that reason alone: it is marked so and not counted as moved.", "",
              f"| # | the paper's claim | metric | {e_short} epochs: A | B | verdict | {e_long} epochs: A | B | verdict "
              f"| moved |", "|---|---|---|---|---|---|---|---|---|---|"]
    moved = 0
    for claim in tables.CLAIMS:
        cid, text, metric, (run_a, _), direction, side_b = claim
        if direction == "bound" or run_a not in runs[e_long] or side_b[0] not in runs[e_long]:
            continue
        judged = [tables.judge(runs[e], claim) for e in (e_short, e_long)]
        fmt = lambda values: tables.per_seed(values) if values is not None else "-"
        cells = [f"{fmt(a)} | {direction} {fmt(b)} | **{verdict}**" for a, b, verdict, _ in judged]
        change, unlogged = judged[0][2] != judged[1][2], bool(judged[0][3])  # judge's why: a metric not logged
        moved += change and not unlogged
        mark = "" if not change else f"**{judged[0][2]} → {judged[1][2]}**" if not unlogged else \
            f"not counted: the {e_short}-epoch files do not log `{metric}`"
        lines.append(f"| {cid} | {tables.cell(text)} | {'accuracy %' if metric == tables.ACC else metric} "
                     f"| {cells[0]} | {cells[1]} | {mark} |")
    lines += ["", f"Verdicts that moved: {moved}."]
    return "\n".join(lines) + "\n", e_short


def plot_longer(plt, long_dir, e_short):
    """longer.png: the kNN accuracy and the spread of f_θ per epoch, one curve per run, epoch e_short marked."""
    runs = tables.load_results(long_dir)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    panels = [("knn_acc", "(a) kNN accuracy % (monitor, k = 20)", "kNN accuracy %"),
              ("spread", "(b) spread of f_θ (collapse monitor)", "spread of f_θ (1 spread, 0 one point)")]
    labels = {row[4]: row[0] for row in tables.TABLE1}  # the paper's names: BYOL, BYOL'-NP, ...
    for name in [n for n in tables.RUN_COLOURS if n in runs]:
        for ax, (key, _, _) in zip(axes, panels):
            tables.plot_curve(ax, runs[name], key, labels.get(name, name), color=tables.RUN_COLOURS[name])
    for ax, (_, title, ylabel) in zip(axes, panels):
        ax.axvline(e_short, color="k", ls=":", lw=0.8)
        ax.set(title=f"{title}\ndotted: epoch {e_short}, where the shorter runs end", xlabel="epoch", ylabel=ylabel)
    tables.collapse_line(axes[1])
    axes[1].set_title(f"{panels[1][1]}\ndotted: epoch {e_short}, where the shorter runs end; dashed: "
                      f"{raft.COLLAPSE_SPREAD}, collapsed below")
    fig.suptitle("The runs trained longer (mean over seeds, band: min to max)")
    tables.shared_legend(fig, axes, bottom=0.1)
    fig.savefig(os.path.join(long_dir, "longer.png"), dpi=110)
    plt.close(fig)
    return fig


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or not all(os.path.isdir(d) for d in argv):
        raft.fail("usage: python tools/longer.py SHORTER_RESULTS_DIR LONGER_RESULTS_DIR")
    text, e_short = longer_markdown(*argv)
    raft.save_atomically(text, os.path.join(argv[1], "longer.md"), save=raft.write_text)
    print(text, end="")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plot_longer(plt, argv[1], e_short)


if __name__ == "__main__":
    main()
