"""Runs of the same names under two or more settings, side by side: the probe and the collapse signatures.

    python tools/compare.py results/augmentation/torchvision results/augmentation/authors
    python tools/compare.py --identical A.json B.json     # do two results files hold the same numbers?

Each DIR holds results files <run>-s<seed>.json (as run_all.sh writes them). For every run name found in all of
them, one row per DIR: seeds, the probe's accuracy (mean of the last 10 probe epochs), and L_align (eq. 1) and
L_uniform (eq. 2) at the last epoch of training; mean ± sample std over seeds, the seeds' values in brackets.
With --identical: every number of two results files (configuration, history, probe, metrics) compared exactly,
leaving out what a re-run need not repeat: the clock (seconds, images/s, eta), the versions (the commit), where it
ran (the device, the data and output paths) and the flags that change no number (raft.NO_NUMBER_FLAGS: --resume,
--save-every, --checkpoint-minutes, --knn-every, --compile, --snapshot-epochs), so that a resumed run compares
equal to the uninterrupted one. Keys that only one of the two files has (a metric logged by a later
version of raft.py) are listed as added and not compared; every list (epochs, probe epochs) must have the same length.
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


NOT_COMPARED = {"seconds", "images_per_s", "eta_s", "versions", "processor"} | tables.raft.NO_NUMBER_FLAGS  # clock, commit,
# where it ran (the device is a flag of NO_NUMBER_FLAGS), flags


def flat(obj, prefix=""):
    """{path: value} of a results file's JSON, without the clock, the versions and the paths."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() if key not in NOT_COMPARED
                for k, v in flat(val, f"{prefix}{key}.").items()}
    if isinstance(obj, list):
        return {k: v for i, val in enumerate(obj) for k, v in flat(val, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): obj}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError:
        fail(f"{path}: not a results file (no JSON)")


def list_lengths(obj, prefix=""):
    """{path: length} of every list in a results file's JSON (the history's epochs, the probe's), outside
    NOT_COMPARED."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() if key not in NOT_COMPARED
                for k, v in list_lengths(val, f"{prefix}{key}.").items()}
    if isinstance(obj, list):
        found = {prefix.rstrip("."): len(obj)}
        for i, val in enumerate(obj):
            found.update(list_lengths(val, f"{prefix}{i}."))
        return found
    return {}


def identical(path_a, path_b):
    """Prints the paths whose values differ and the keys only one file has; True when every number and setting the
    two files share is equal (exactly) and every list (epochs, probe epochs) has the same length. A key only one file
    has (a metric that one version of raft.py logs and the other does not) is listed as added, not a difference."""
    data = [load(p) for p in (path_a, path_b)]
    a, b = (flat(d) for d in data)
    shared = a.keys() & b.keys()
    differ = sorted(k for k in shared if a[k] != b[k])
    lengths = [list_lengths(d) for d in data]
    differ_len = sorted(k for k in lengths[0].keys() | lengths[1].keys() if lengths[0].get(k) != lengths[1].get(k))
    for k in differ:
        print(f"{k}: {a[k]} != {b[k]}")
    for k in differ_len:
        print(f"{k}: {lengths[0].get(k, 'absent')} entries != {lengths[1].get(k, 'absent')} entries")
    for path, only in [(path_a, a.keys() - b.keys()), (path_b, b.keys() - a.keys())]:
        for k in sorted(only):
            print(f"added, only in {path}: {k}")
    added = len(a.keys() ^ b.keys())
    print(f"{len(shared)} numbers and settings compared, {len(differ) + len(differ_len)} differ; "
          f"{added} keys only in one file (not compared)")
    return not differ and not differ_len


def main(argv):
    """Exit status 0, or with --identical 1 when the two files differ; a mistake: one line, exit status 1."""
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if argv[:1] == ["--identical"]:
        if len(argv) != 3:
            fail("--identical takes two results files")
        for path in argv[1:]:
            if not os.path.isfile(path):
                fail(f"{path}: {'a folder, not a results file' if os.path.isdir(path) else 'no such file'}")
        return 0 if identical(*argv[1:]) else 1
    if len(argv) < 2:
        fail("give two or more results folders, or --identical and two results files (--help)")
    for d in argv:
        if not os.path.isdir(d):
            fail(f"{d}: no such folder (give results folders, or --identical and two results files)")
    print(compare(argv))
    return 0


def fail(message):
    raise SystemExit(f"compare.py: error: {message}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
