"""Runs of the same names under two or more settings, side by side: the probe and the collapse signatures.

    python tools/compare.py results/augmentation/torchvision results/augmentation/authors

Each DIR holds results files <run>-s<seed>.json (as run_all.sh writes them). For every run name found in all of
them, one row per DIR: seeds, the probe's accuracy (mean of the last 10 probe epochs), and L_align (eq. 1) and
L_uniform (eq. 2) at the last epoch of training; mean ± sample std over seeds, the seeds' values in brackets.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tables  # noqa: E402


def cell(values, fmt):
    """Mean ± sample std over seeds, then each seed's value."""
    return f"{tables.mean_std(values, fmt)} ({', '.join(fmt.format(v) for v in values)})"


def compare(dirs):
    found = [tables.load_results(d) for d in dirs]
    names = [name for name in found[0] if all(name in runs for runs in found)]
    lines = ["| run | results | seeds | linear acc. % (last-10 mean) | L_align, eq. 1, last epoch "
             "| L_uniform, eq. 2, last epoch |", "|---|---|---|---|---|---|"]
    for name in names:
        for d, runs in zip(dirs, found):
            res = sorted(runs[name], key=lambda r: r["config"]["seed"])
            last = [r["history"][-1] for r in res]
            lines.append(f"| {name} | {d} | {len(res)} | {cell([r['linear_acc_last10'] for r in res], '{:.2f}')} "
                         f"| {cell([h['align'] for h in last], '{:.3g}')} "
                         f"| {cell([h['uniform'] for h in last], '{:.2f}')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 3 or not all(os.path.isdir(d) for d in sys.argv[1:]):
        tables.raft.fail("give two or more results folders")
    print(compare(sys.argv[1:]))
