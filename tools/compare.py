"""Runs of the same names under two or more settings, side by side: the probe and the collapse signatures.

    python tools/compare.py results/augmentation/torchvision results/augmentation/authors
    python tools/compare.py --identical A.json B.json     # do two results files hold the same numbers?

Each DIR holds results files <run>-s<seed>.json (as run_all.sh writes them). For every run name found in all of
them, one row per DIR: seeds, the probe's accuracy (mean of the last 10 probe epochs), and L_align (eq. 1) and
L_uniform (eq. 2) at the last epoch of training; mean ± sample std over seeds, the seeds' values in brackets.
With --identical: every number of two results files (configuration, history, probe, metrics) compared exactly,
leaving out what a re-run need not repeat: the clock (seconds, images/s, eta), the versions (the commit) and
where it ran (the data and output paths).
"""

import json
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


NOT_COMPARED = {"seconds", "images_per_s", "eta_s", "versions", "data_dir", "out"}  # clock, commit, paths


def flat(obj, prefix=""):
    """{path: value} of a results file's JSON, without the clock, the versions and the paths."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() if key not in NOT_COMPARED for k, v in flat(val, f"{prefix}{key}.").items()}
    if isinstance(obj, list):
        return {k: v for i, val in enumerate(obj) for k, v in flat(val, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): obj}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError:
        tables.raft.fail(f"{path}: not a results file (no JSON)")


def identical(path_a, path_b):
    """Prints the paths whose values differ; True when none does."""
    a, b = (flat(load(p)) for p in (path_a, path_b))
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k, "absent") != b.get(k, "absent"))
    for k in differ:
        print(f"{k}: {a.get(k, 'absent')} != {b.get(k, 'absent')}")
    print(f"{len(a)} numbers and settings compared, {len(differ)} differ")
    return not differ


if __name__ == "__main__":
    if sys.argv[1:2] == ["--identical"]:
        if len(sys.argv) != 4 or not all(os.path.isfile(p) for p in sys.argv[2:]):
            tables.raft.fail("--identical takes two results files")
        sys.exit(0 if identical(*sys.argv[2:]) else 1)
    if len(sys.argv) < 3 or not all(os.path.isdir(d) for d in sys.argv[1:]):
        tables.raft.fail("give two or more results folders")
    print(compare(sys.argv[1:]))
