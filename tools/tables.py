"""The runs behind Tables 1 and 3 (and the BYOL'/RAFT mirror experiment), and the tables and figures made from
their results files.

    python tools/tables.py --list-runs       # one line per run: NAME<TAB>raft.py flags (run_all.sh runs them)
    python tools/tables.py DIR               # DIR/table1.md, table3.md, mirror.md, trajectories.md, claims.md,
                                             # figure3.png, ...

Results files are named DIR/<run>-s<seed>.json. The paper's values stand beside ours, copied as printed.
"""

import argparse
import glob
import json
import math
import os
import re
import sys
import textwrap

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import raft  # noqa: E402  (the method; this file only gathers what its runs wrote)


RUNS = {  # run name -> flags
    "rand": "--epochs 0 --predictor linear",
    **{f"{short}-{pred}": f"--loss {loss} --predictor {flag}"
       for short, loss in [("byol", "byol"), ("byolp", "byol-prime"), ("raft", "raft")]
       for pred, flag in [("mlp", "mlp"), ("lp", "linear"), ("np", "none")]},
    **{f"tan{short}-lp": f"--loss {loss} --predictor linear --tangent"
       for short, loss in [("byol", "byol"), ("byolp", "byol-prime"), ("raft", "raft")]},
    "byol-lpi": "--loss byol --predictor linear-identity",
    "byol-mlpbn": "--loss byol --predictor mlp-bn",
    **{f"raft-{pred}-b{b}": f"--loss raft --predictor {flag} --beta {b}"
       for pred, flag, betas in [("mlp", "mlp", ["0.1", "10"]), ("lp", "linear", ["0.1", "10"]),
                                 ("np", "none", ["10", "100"])]
       for b in betas},
    **{f"byolp-np-b{b}": f"--loss byol-prime --predictor none --beta {b}" for b in ["10", "100"]},
    "raft-mlp-mirror": "--loss raft --predictor mlp --mirror-init",
    "raft-lp-mirror": "--loss raft --predictor linear --mirror-init",
    "supervised": "--loss supervised",  # Figure 3(a)'s reference, not a row of the paper's tables
}

# (label, q_w, α, β, run name, the paper's linear accuracy %, L_align, L_uniform as printed); β < 0 is RAFT, as
# Table 3 writes it
TABLE1 = [
    ("Rand-Baseline", "W", "", "", "rand", "42.74 ± 0.41", "78.09e-4", "-0.51"),
    ("BYOL", "MLP", "", "", "byol-mlp", "64.32 ± 0.89", "25.03e-4", "-2.22"),
    ("BYOL'", "MLP", 1, 1, "byolp-mlp", "69.21 ± 1.01", "22.09e-4", "-2.07"),
    ("RAFT", "MLP", 1, -1, "raft-mlp", "71.31 ± 0.75", "18.90e-4", "-2.04"),
    ("BYOL-LP", "W", "", "", "byol-lp", "67.64 ± 0.90", "7.71e-4", "-2.16"),
    ("BYOL'-LP", "W", 1, 1, "byolp-lp", "68.61 ± 0.73", "7.32e-4", "-2.19"),
    ("RAFT-LP", "W", 1, -1, "raft-lp", "67.55 ± 0.55", "7.42e-4", "-2.23"),
    ("BYOL-NP", "I", "", "", "byol-np", "20.92 ± 1.29", "1.94e-10", "-0.14"),
    ("BYOL'-NP", "I", 1, 1, "byolp-np", "16.92 ± 1.05", "1.35e-10", "-0.10"),
    ("RAFT-NP", "I", 1, -1, "raft-np", "11.72 ± 0.05", "16.07e-4", "-0.006"),
    ("TanBYOL-LP", "W", "", "", "tanbyol-lp", "67.63 ± 1.27", "7.83e-4", "-1.92"),
    ("TanBYOL'-LP", "W", 1, 1, "tanbyolp-lp", "67.66 ± 0.76", "7.52e-4", "-2.19"),
    ("TanRAFT-LP", "W", 1, -1, "tanraft-lp", "69.31 ± 0.87", "7.61e-4", "-2.13"),
    ("BYOL-LPI (Fig. 4)", "W = I at init", "", "", "byol-lpi", None, None, None),
    ("BYOL (Sec. 3)", "MLP with BN", "", "", "byol-mlpbn", "68.08 ± 0.84", None, None),
]
TABLE3 = [
    ("Rand-Baseline", "W", "", "", "rand", "42.74 ± 0.41", "7.81e-3", "-0.51"),
    ("RAFT", "MLP", 1, -0.1, "raft-mlp-b0.1", "65.53 ± 0.99", "8.37e-5", "-2.00"),
    ("RAFT", "MLP", 1, -1, "raft-mlp", "71.31 ± 0.75", "1.89e-3", "-2.04"),
    ("RAFT", "MLP", 1, -10, "raft-mlp-b10", "25.88 ± 0.42", "1.00e-2", "-0.29"),
    ("RAFT-LP", "W", 1, -0.1, "raft-lp-b0.1", "52.57 ± 2.72", "8.22e-6", "-1.61"),
    ("RAFT-LP", "W", 1, -1, "raft-lp", "67.55 ± 0.55", "7.42e-4", "-2.25"),
    ("RAFT-LP", "W", 1, -10, "raft-lp-b10", "66.10 ± 0.82", "3.70e-4", "-2.15"),
    ("RAFT-NP", "I", 1, -1, "raft-np", "11.72 ± 0.05", "1.61e-3", "-0.01"),
    ("RAFT-NP", "I", 1, -10, "raft-np-b10", "32.13 ± 0.52", "1.54e-2", "-0.99"),
    ("RAFT-NP", "I", 1, -100, "raft-np-b100", "29.36 ± 0.53", "1.56e-2", "-1.29"),
    ("BYOL'-NP", "I", 1, 1, "byolp-np", "16.92 ± 1.05", "1.35e-10", "-0.12"),
    ("BYOL'-NP", "I", 1, 10, "byolp-np-b10", "24.42 ± 1.14", "2.38e-10", "-0.88"),
    ("BYOL'-NP", "I", 1, 100, "byolp-np-b100", "37.48 ± 2.06", "4.55e-8", "-1.14"),
]
MIRROR = [("MLP", "byolp-mlp", "raft-mlp-mirror"), ("LP", "byolp-lp", "raft-lp-mirror")]


def load_results(results_dir):
    """{run name: [results of each seed]} from files named <run>-s<seed>.json."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*-s*.json"))):
        match = re.fullmatch(r"(.+)-s\d+\.json", os.path.basename(path))  # not bench-augment-share.json
        if not match:
            continue
        name = match.group(1)
        with open(path) as f:
            runs.setdefault(name, []).append(json.load(f))
    return runs


def mean_std(values, fmt="{:.2f}"):
    """Mean ± sample standard deviation over seeds; the value alone for one seed."""
    v = torch.tensor(values, dtype=torch.float64)
    if len(v) == 1:
        return fmt.format(v.item())
    return f"{fmt.format(v.mean().item())} ± {fmt.format(v.std().item())}"


TABLE_NOTE = ("Linear acc.: test accuracy, mean of the last 10 probe epochs (as the authors' eval.py reports). "
              "Each (paper) column, copied as printed, stands beside ours in the form it most likely uses, the "
              "authors' logging (first 64 samples, L_align as ||·||²/D, L_uniform of q∘f_θ over consecutive pairs, "
              "over all pairs for BYOL); eq. 1 and eq. 2 give ours as printed in the paper (L_uniform of f_θ over all "
              "pairs). L_align and L_uniform: mean of the last 10 epochs of training, or of all epochs in a shorter "
              "run. Ours: mean ± sample std over seeds.")


def table_markdown(title, rows, runs):
    lines = [f"## {title}", "", TABLE_NOTE, "",
             "| model | q_w | α | β | seeds | epochs | linear acc. % (ours) | (paper) | L_align, authors' log (ours) "
             "| (paper) | L_align, eq. 1 (ours) | L_uniform, authors' log (ours) | (paper) | L_uniform, eq. 2 (ours) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, q, a, b, name, acc, align, uniform in rows:
        res = runs.get(name, [])
        paper = [acc or "-", align or "-", uniform or "-"]
        if res:
            epochs = ", ".join(sorted({str(r["config"]["epochs"]) for r in res}))
            ours = [mean_std([r[k] for r in res], fmt) for k, fmt in
                    [("linear_acc_last10", "{:.2f}"), ("align_authors", "{:.2e}"), ("align", "{:.2e}"),
                     ("uniform_authors", "{:.2f}"), ("uniform", "{:.2f}")]]
            seeds = str(len(res))
        else:
            epochs, seeds, ours = "-", "0", ["missing"] * 5
        lines.append(f"| {label} | {q} | {a} | {b} | {seeds} | {epochs} | {ours[0]} | {paper[0]} | {ours[1]} "
                     f"| {paper[1]} | {ours[2]} | {ours[3]} | {paper[2]} | {ours[4]} |")
    return "\n".join(lines) + "\n"


def rel_gap(x, y):
    return abs(x - y) / max((abs(x) + abs(y)) / 2, 1e-30)


DISTRIBUTION = [("MLP", "byolp-mlp", "raft-mlp"), ("LP", "byolp-lp", "raft-lp")]  # BYOL', RAFT: own initialisations


def mirror_markdown(runs):
    """mirror.md: BYOL' and RAFT as one algorithm in distribution (each from its own initialisation, every seed), and
    the mirrored pairs run by run; None when results_dir holds neither."""
    lines = []
    for q, plain, raft_run in DISTRIBUTION:
        a, b = (sorted(runs.get(n, []), key=lambda r: r["config"]["seed"]) for n in (plain, raft_run))
        if not (a and b):
            continue
        if not lines:
            lines += ["## BYOL' and RAFT in distribution (each from its own initialisation)", "",
                      "With a predictor whose last layer is linear, negating that layer turns BYOL''s loss into RAFT's "
                      "minus 4β, and the layer's initialisation is symmetric: so RAFT and BYOL' are one algorithm in "
                      "distribution, and their accuracies can differ only as two sets of seeds of one algorithm do. "
                      "Each seed's probe accuracy (mean of its last 10 epochs, %):", "",
                      "| q_w | BYOL', each seed | RAFT, each seed | BYOL' mean (min to max) | RAFT mean (min to max) "
                      "| the seed ranges |", "|---|---|---|---|---|---|"]
        acc = lambda res: [r[ACC] for r in res]
        span = lambda v: f"{sum(v) / len(v):.2f} ({min(v):.2f} to {max(v):.2f})"
        lines.append(f"| {q} | {per_seed(acc(a), '{:.2f}')} | {per_seed(acc(b), '{:.2f}')} | {span(acc(a))} "
                     f"| {span(acc(b))} | {ranges_word(acc(a), acc(b))} |")
    pairs = [(q, plain, mirrored) for q, plain, mirrored in MIRROR if runs.get(plain) and runs.get(mirrored)]
    if pairs:
        lines += ["", "## BYOL' vs RAFT from mirrored initialisations (same seed)", "",
                  "From mirrored initialisations the pair follows one trajectory in exact arithmetic (test_raft.py shows "
                  "it in float64). In float32 the two round differently and training amplifies the difference: a pair "
                  "agrees in distribution, not run by run. The gap columns (relative difference of the epoch's L_align) "
                  "show how far the pair drifts; the last column is the gap between two seeds of BYOL' at the last "
                  "epoch, for scale.", "",
                  "| q_w | seed | acc. BYOL' | acc. RAFT (mirror) | L_align BYOL' | L_align RAFT | L_uniform BYOL' "
                  "| L_uniform RAFT | gap, epoch 1 | gap, last epoch | gap, two BYOL' seeds |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
    for q, plain, mirrored in pairs:
        by_seed = {r["config"]["seed"]: r for r in runs[mirrored]}
        plain_runs = runs[plain]
        last_align = [r["history"][-1]["align"] for r in plain_runs]
        seeds = f"{rel_gap(*last_align[:2]):.1e}" if len(plain_runs) > 1 else "-"
        for a in plain_runs:
            b = by_seed.get(a["config"]["seed"])
            if b is None:
                continue
            first, last = (rel_gap(a["history"][i]["align"], b["history"][i]["align"]) for i in (0, -1))
            lines.append(f"| {q} | {a['config']['seed']} | {a[ACC]:.2f} | {b[ACC]:.2f} "
                         f"| {a['align']:.3e} | {b['align']:.3e} | {a['uniform']:.3f} | {b['uniform']:.3f} "
                         f"| {first:.1e} | {last:.1e} | {seeds} |")
    return "\n".join(lines).lstrip("\n") + "\n" if lines else None


def ranges_word(a, b):
    """How two sets of seeds lie by the rule of claims.md: 'apart' (every value of one above every value of the other),
    'overlap' (touching counts as overlapping), or 'fewer than two seeds'."""
    if len(a) < 2 or len(b) < 2:
        return "fewer than two seeds"
    return "apart" if min(a) > max(b) or max(a) < min(b) else "overlap"


def per_seed(values, fmt="{:.4g}"):
    return " / ".join(fmt.format(v) for v in values)


TRAJECTORY_COLUMNS = {"loss": "loss", "align": "L_align, eq. 1", "uniform": "L_uniform, eq. 2", "knn_acc": "kNN acc. %",
                      "cross_model": "L_cross-model, eq. 5", "byol_loss": "L_BYOL, eq. 3", "spread": "spread of f_θ",
                      "w_identity_gap": "‖W − I‖/‖I‖", "images_per_s": "images/s"}


def trajectories_markdown(runs):
    """Every run epoch by epoch, each seed's value (seed 0 / seed 1 / ...): what the tables average, and what a
    claim about the dynamics reads."""
    lines = ["# Every run, epoch by epoch", "",
             "Each cell: one value per seed, in seed order, separated by ' / '. Linear acc.: the probe's test "
             "accuracy, mean of its last 10 epochs and at its last epoch. Per training epoch: the mean over the "
             "epoch's batches of the loss, of L_align (eq. 1) and of L_uniform (eq. 2), as logged in the results "
             "file's history, and the kNN monitor where the run had it (--knn-every); where the file logs them, "
             "L_cross-model (eq. 5) and L_BYOL (eq. 3), both symmetrised and measured whatever the loss trained, the "
             "spread of f_θ (√D × the std of its normalised outputs across the batch: 1 spread, 0 collapsed) and, "
             "for a linear predictor, ||W − I||_F/||I||_F at the epoch's end.", ""]
    for name, flags in RUNS.items():
        res = sorted(runs.get(name, []), key=lambda r: r["config"]["seed"])
        if not res:
            continue
        seconds = [r.get("seconds", {}) for r in res]
        lines += [f"## {name} (`{flags}`)", "",
                  f"seeds {per_seed([r['config']['seed'] for r in res], '{}')}; linear acc. %, last-10 mean "
                  f"{per_seed([r['linear_acc_last10'] for r in res], '{:.2f}')}, last epoch "
                  f"{per_seed([r['linear_acc'] for r in res], '{:.2f}')}; seconds training "
                  f"{per_seed([s.get('train', 0) for s in seconds], '{:.0f}')}, evaluation "
                  f"{per_seed([s.get('eval', 0) for s in seconds], '{:.0f}')}", ""]
        epochs = sorted({row["epoch"] for r in res for row in r["history"]})
        if not epochs:
            continue
        keys = [k for k in TRAJECTORY_COLUMNS if any(k in row for r in res for row in r["history"])]
        lines += ["| epoch | " + " | ".join(TRAJECTORY_COLUMNS[k] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for e in epochs:
            rows = [next((row for row in r["history"] if row["epoch"] == e), {}) for r in res]
            cells = [" / ".join(f"{row[k]:.4g}" if k in row else "-" for row in rows) for k in keys]
            lines.append(f"| {e} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# -----------------------------------------------------------------------------
# The paper's claims, each with a verdict computed from the results files (claims.md)

LAST = "last"  # a run's last epoch of training
ACC = "linear_acc_last10"  # the probe's test accuracy, mean of its last 10 epochs (no epoch)
SHOWN, NOT_SHOWN, UNDECIDED = "shown", "not shown", "cannot be decided"
RULE = ("Each claim compares two sides, A and B: a run's metric (at an epoch of training, or the probe's accuracy), "
        "one value per seed. The paper's direction is A above B (>), A below B (<), or A similar to B (~). "
        "**Directional claims (> and <) between two runs:** *shown* when the seed ranges are apart in the paper's "
        "direction (every seed of A above every seed of B, for >), *not shown* when they are apart the other way, "
        "*cannot be decided* when the ranges overlap (touching counts as overlapping) or when a side has fewer than "
        "two seeds. **Directional claims inside one run** (the same run at two epochs, e.g. ||W - I|| at the last "
        "epoch against epoch 1): paired by seed, each seed's change from B to A: *shown* when every seed changes in "
        "the paper's direction, *not shown* when every seed changes the other way, *cannot be decided* when the seeds "
        "disagree, when a seed does not change, or with fewer than two seeds. "
        "**Similarity claims (~)** (the paper's \"close\", \"similar\", \"no significant difference\", \"no huge "
        "difference\"): *shown* when the seed ranges overlap, *not shown* when they are apart, *cannot be decided* "
        "when a side has fewer than two seeds; with two seeds an overlap is weak evidence of similarity, and it says "
        "nothing about a difference smaller than the seed spread. **Theorem 4.1 (bound)**: for each seed and each "
        "logged epoch, L_BYOL <= (1 + 1/λ)(L_align + λ L_cross-model) with λ = β/α of the run (1 for BYOL, whose "
        "loss has no α, β; the bound holds for any λ > 0); A is the largest ratio L_BYOL / bound over the epochs, "
        "per seed: *shown* when every ratio is at most 1, *not shown* when one exceeds 1. "
        "**Epochs:** `last` is each seed's last epoch of training; for a run that does not train (the "
        "Rand-Baseline, `--epochs 0`) it is the one pass over the training data that its file records with the "
        "networks as initialised, shown as `pass`, and a numbered epoch of such a run does not exist. "
        "A metric or epoch that the results files do not hold (a file written before the metric was logged, a run "
        "shorter than the epoch, a numbered epoch of an untrained run) makes the claim *cannot be decided*, and the "
        "claim says which is missing. Values are compared in full, not as printed.")

# (id, the paper's claim and where, metric, side A, direction, side B). A side: (run, epoch), epoch None for ACC,
# an int or LAST for a metric of the per-epoch history. Direction ">", "<", "~", or "bound" (side B unused).
CLAIMS = [
    ("1a", "Without its predictor BYOL loses accuracy (Sec. 3, Table 1)", ACC, ("byol-np", None), "<",
     ("byol-mlp", None)),
    ("1b", "BYOL without predictor is below the Rand-Baseline (Table 1)", ACC, ("byol-np", None), "<", ("rand", None)),
    ("2a", "Without the predictor L_align is over-optimised (Sec. 3, Table 1): below BYOL's", "align",
     ("byol-np", LAST), "<", ("byol-mlp", LAST)),
    ("2b", "... and below BYOL-LP's (Table 1)", "align", ("byol-np", LAST), "<", ("byol-lp", LAST)),
    ("2c", "Without the predictor L_uniform deteriorates (Sec. 3, Table 1): above (closer to 0 than) BYOL's",
     "uniform", ("byol-np", LAST), ">", ("byol-mlp", LAST)),
    ("2d", "... and above BYOL-LP's (Table 1)", "uniform", ("byol-np", LAST), ">", ("byol-lp", LAST)),
    ("3a", "The predictor's form makes no significant difference (Sec. 3): accuracy, BYOL-LP ~ BYOL", ACC,
     ("byol-lp", None), "~", ("byol-mlp", None)),
    ("3b", "... nor in training behaviour (Sec. 3, Fig. 4): L_uniform", "uniform", ("byol-lp", LAST), "~",
     ("byol-mlp", LAST)),
    ("3c", "... L_align", "align", ("byol-lp", LAST), "~", ("byol-mlp", LAST)),
    ("4", "BYOL with the BatchNorm MLP predictor (Sec. 3) above Table 1's BYOL", ACC, ("byol-mlpbn", None), ">",
     ("byol-mlp", None)),
    ("5a", "The linear predictor never converges to W = I (Sec. 3); read as: ||W - I||_F/||I||_F ends above its "
     "epoch-1 value (W moves away from I, not towards it)", "w_identity_gap", ("byol-lp", LAST), ">", ("byol-lp", 1)),
    ("5b", "... the same with the tangential gradient (TanBYOL-LP)", "w_identity_gap", ("tanbyol-lp", LAST), ">",
     ("tanbyol-lp", 1)),
    ("5c", "BYOL-LPI (W = I at init) deflects from the collapse (Sec. 3, Fig. 4): W moves away from I",
     "w_identity_gap", ("byol-lpi", LAST), ">", ("byol-lpi", 1)),
    ("6a", "BYOL-LPI: the loss quickly approaches 0 (Sec. 3, Fig. 4a): at epoch 1, below BYOL-LP's", "loss",
     ("byol-lpi", 1), "<", ("byol-lp", 1)),
    ("6b", "BYOL-LPI: the uniformity deteriorates for 10-20 epochs (Sec. 3): L_uniform rises", "uniform",
     ("byol-lpi", LAST), ">", ("byol-lpi", 1)),
    ("6c", "BYOL-LPI then recovers (Sec. 3, Fig. 4): L_uniform at epoch 30 below epoch 10's", "uniform",
     ("byol-lpi", 30), "<", ("byol-lpi", 10)),
    ("7a", "BYOL' ~ BYOL in accuracy, whatever the predictor (Sec. 4.1, Table 1): MLP", ACC, ("byolp-mlp", None), "~",
     ("byol-mlp", None)),
    ("7b", "... LP", ACC, ("byolp-lp", None), "~", ("byol-lp", None)),
    ("7c", "... NP", ACC, ("byolp-np", None), "~", ("byol-np", None)),
    ("7d", "BYOL' ~ BYOL in alignment (Sec. 4.1, Table 1): MLP", "align", ("byolp-mlp", LAST), "~", ("byol-mlp", LAST)),
    ("7e", "... LP", "align", ("byolp-lp", LAST), "~", ("byol-lp", LAST)),
    ("7f", "... NP", "align", ("byolp-np", LAST), "~", ("byol-np", LAST)),
    ("7g", "BYOL' ~ BYOL in uniformity (Sec. 4.1, Table 1): MLP", "uniform", ("byolp-mlp", LAST), "~",
     ("byol-mlp", LAST)),
    ("7h", "... LP", "uniform", ("byolp-lp", LAST), "~", ("byol-lp", LAST)),
    ("7i", "... NP", "uniform", ("byolp-np", LAST), "~", ("byol-np", LAST)),
    ("7j", "Without the predictor BYOL' collapses too (Sec. 4.1): L_uniform above BYOL' with it", "uniform",
     ("byolp-np", LAST), ">", ("byolp-mlp", LAST)),
    ("7k", "... and below the Rand-Baseline (Table 1)", ACC, ("byolp-np", None), "<", ("rand", None)),
    ("8a", "RAFT above BYOL (Sec. 4.2, Table 1)", ACC, ("raft-mlp", None), ">", ("byol-mlp", None)),
    ("8b", "RAFT above BYOL' (Table 1)", ACC, ("raft-mlp", None), ">", ("byolp-mlp", None)),
    ("9a", "RAFT-NP is below the Rand-Baseline (Table 1)", ACC, ("raft-np", None), "<", ("rand", None)),
    ("9b", "RAFT-NP's uniformity fails (Table 1): L_uniform above RAFT with its predictor", "uniform",
     ("raft-np", LAST), ">", ("raft-mlp", LAST)),
    ("10a", "Keeping only the tangential gradient changes nothing (Sec. 5, Table 1): accuracy, TanBYOL-LP ~ BYOL-LP",
     ACC, ("tanbyol-lp", None), "~", ("byol-lp", None)),
    ("10b", "... TanBYOL'-LP ~ BYOL'-LP", ACC, ("tanbyolp-lp", None), "~", ("byolp-lp", None)),
    ("10c", "... TanRAFT-LP ~ RAFT-LP", ACC, ("tanraft-lp", None), "~", ("raft-lp", None)),
    ("10d", "... L_uniform, TanBYOL-LP ~ BYOL-LP", "uniform", ("tanbyol-lp", LAST), "~", ("byol-lp", LAST)),
    ("10e", "... TanBYOL'-LP ~ BYOL'-LP", "uniform", ("tanbyolp-lp", LAST), "~", ("byolp-lp", LAST)),
    ("10f", "... TanRAFT-LP ~ RAFT-LP", "uniform", ("tanraft-lp", LAST), "~", ("raft-lp", LAST)),
    ("11a", "From mirrored initialisations RAFT follows BYOL' (Theorem 5.1): accuracy, MLP", ACC,
     ("raft-mlp-mirror", None), "~", ("byolp-mlp", None)),
    ("11b", "... LP", ACC, ("raft-lp-mirror", None), "~", ("byolp-lp", None)),
    ("11c", "... L_align, MLP", "align", ("raft-mlp-mirror", LAST), "~", ("byolp-mlp", LAST)),
    ("11d", "... L_align, LP", "align", ("raft-lp-mirror", LAST), "~", ("byolp-lp", LAST)),
    ("12a", "RAFT-MLP over β (Table 3): accuracy at β = 1 above β = 0.1", ACC, ("raft-mlp", None), ">",
     ("raft-mlp-b0.1", None)),
    ("12b", "... β = 1 above β = 10 (β = 10 fails)", ACC, ("raft-mlp", None), ">", ("raft-mlp-b10", None)),
    ("12c", "... L_align at β = 0.1 below β = 1", "align", ("raft-mlp-b0.1", LAST), "<", ("raft-mlp", LAST)),
    ("12d", "... L_align at β = 1 below β = 10", "align", ("raft-mlp", LAST), "<", ("raft-mlp-b10", LAST)),
    ("13a", "RAFT-LP over β (Table 3): accuracy at β = 1 above β = 0.1", ACC, ("raft-lp", None), ">",
     ("raft-lp-b0.1", None)),
    ("13b", "... β = 1 above β = 10", ACC, ("raft-lp", None), ">", ("raft-lp-b10", None)),
    ("13c", "... L_align at β = 0.1 below β = 1", "align", ("raft-lp-b0.1", LAST), "<", ("raft-lp", LAST)),
    ("13d", "... L_align at β = 10 below β = 1", "align", ("raft-lp-b10", LAST), "<", ("raft-lp", LAST)),
    ("14a", "RAFT-NP over β (Table 3, Fig. 5b): increasing β helps; accuracy at β = 10 above β = 1", ACC,
     ("raft-np-b10", None), ">", ("raft-np", None)),
    ("14b", "... accuracy at β = 10 above β = 100 (Table 3)", ACC, ("raft-np-b10", None), ">", ("raft-np-b100", None)),
    ("14c", "... L_align at β = 10 above β = 1 (a larger β regularises L_align)", "align", ("raft-np-b10", LAST), ">",
     ("raft-np", LAST)),
    ("14d", "... L_align at β = 100 above β = 10 (Table 3)", "align", ("raft-np-b100", LAST), ">",
     ("raft-np-b10", LAST)),
    ("15a", "BYOL'-NP over β (Table 3, Fig. 5a): accuracy at β = 10 above β = 1", ACC, ("byolp-np-b10", None), ">",
     ("byolp-np", None)),
    ("15b", "... β = 100 above β = 10", ACC, ("byolp-np-b100", None), ">", ("byolp-np-b10", None)),
    ("15c", "Increasing β does not stop L_align from converging to 0 (Fig. 5a): it falls, β = 1", "align",
     ("byolp-np", LAST), "<", ("byolp-np", 1)),
    ("15d", "... β = 10", "align", ("byolp-np-b10", LAST), "<", ("byolp-np-b10", 1)),
    ("15e", "... β = 100", "align", ("byolp-np-b100", LAST), "<", ("byolp-np-b100", 1)),
    ("16a", "RAFT is the more effective regulariser of alignment (Sec. 4.2, Fig. 5, Table 3): L_align of RAFT-NP above "
     "BYOL'-NP's, β = 1", "align", ("raft-np", LAST), ">", ("byolp-np", LAST)),
    ("16b", "... β = 10", "align", ("raft-np-b10", LAST), ">", ("byolp-np-b10", LAST)),
    ("16c", "... β = 100", "align", ("raft-np-b100", LAST), ">", ("byolp-np-b100", LAST)),
    ("16d", "RAFT-NP's L_align grows over training (the regulariser at work; our reading of Fig. 5b), β = 1", "align",
     ("raft-np", LAST), ">", ("raft-np", 1)),
    ("17a", "RAFT-NP's uniformity holds no huge difference from BYOL'-NP's (Fig. 5b): L_uniform, β = 1", "uniform",
     ("raft-np", LAST), "~", ("byolp-np", LAST)),
    ("17b", "... β = 10", "uniform", ("raft-np-b10", LAST), "~", ("byolp-np-b10", LAST)),
    ("17c", "... β = 100", "uniform", ("raft-np-b100", LAST), "~", ("byolp-np-b100", LAST)),
    ("18a", "RAFT-LP optimises uniformity consistently (Fig. 5c): L_uniform falls, β = 0.1", "uniform",
     ("raft-lp-b0.1", LAST), "<", ("raft-lp-b0.1", 1)),
    ("18b", "... β = 1", "uniform", ("raft-lp", LAST), "<", ("raft-lp", 1)),
    ("18c", "... β = 10", "uniform", ("raft-lp-b10", LAST), "<", ("raft-lp-b10", 1)),
    ("19a", "BYOL with a predictor consistently optimises uniformity (Fig. 4b): L_uniform falls, MLP", "uniform",
     ("byol-mlp", LAST), "<", ("byol-mlp", 1)),
    ("19b", "... LP", "uniform", ("byol-lp", LAST), "<", ("byol-lp", 1)),
    ("19c", "The predictors give close accuracy (Fig. 4c; ours: the kNN monitor): LP ~ MLP", "knn_acc",
     ("byol-lp", LAST), "~", ("byol-mlp", LAST)),
    ("19d", "... LPI ~ MLP", "knn_acc", ("byol-lpi", LAST), "~", ("byol-mlp", LAST)),
    ("20a", "Figure 3(c): BYOL without predictor puts most data at one position: spread of f_θ below BYOL's",
     "spread", ("byol-np", LAST), "<", ("byol-mlp", LAST)),
    ("20b", "Figure 3(b, c): BYOL spreads the data, without predictor it does not: L_uniform below BYOL-NP's",
     "uniform", ("byol-mlp", LAST), "<", ("byol-np", LAST)),
    ("20c", "Figure 3(d): BYOL' disperses the representations too: L_uniform below BYOL-NP's", "uniform",
     ("byolp-mlp", LAST), "<", ("byol-np", LAST)),
    ("20d", "Figure 3(e): RAFT disperses them too: L_uniform below BYOL-NP's", "uniform", ("raft-mlp", LAST), "<",
     ("byol-np", LAST)),
    ("20e", "Figure 3(e): minimising or maximising L_cross-model has a similar effect on the final distribution: "
     "L_uniform, RAFT ~ BYOL'", "uniform", ("raft-mlp", LAST), "~", ("byolp-mlp", LAST)),
    ("20f", "... spread of f_θ, RAFT ~ BYOL'", "spread", ("raft-mlp", LAST), "~", ("byolp-mlp", LAST)),
    ("21", "Imbalanced terms give an over-regularised alignment \"where every data is randomly projected\" (Sec. 4.2; "
     "our reading: RAFT-NP at the largest β, L_align above the untrained network's)", "align", ("raft-np-b100", LAST),
     ">", ("rand", LAST)),
    *[(f"22{letter}", f"Theorem 4.1 (App. G): L_BYOL <= (1 + 1/λ)(L_align + λ L_cross-model), λ = β/α, at every "
       f"logged epoch of {run}", "bound", (run, None), "bound", None)
      for letter, run in zip("abcdefghij", ["byol-lp", "byol-lpi", "tanbyol-lp", "byolp-lp", "tanbyolp-lp", "raft-lp",
                                             "raft-lp-b0.1", "raft-lp-b10", "raft-lp-mirror", "tanraft-lp"])],
]


# Claims that an identity of the code decides at any scale and any training (NOTES: facts checked numerically), so
# that their verdicts check the implementation, not the paper: counted apart from the empirical claims
IDENTITIES = {
    "10": "the Tan variant's gradient equals the plain one to float precision (test_tangent_variant_same_gradient_"
          "different_value)",
    "11": "from mirrored initialisations RAFT follows BYOL′'s trajectory (Theorem 5.1; test_mirrored_raft_follows_"
          "byol_prime_trajectory)",
    "22": "Theorem 4.1's bound holds for any vectors (test_theorem_4_1_bound_on_random_batches)",
}


def identity(cid):
    """True for a claim that one of IDENTITIES decides."""
    return re.match(r"\d*", cid).group() in IDENTITIES


def untrained(res):
    """A run that does not train (the Rand-Baseline, --epochs 0): its history is one pass with the initial networks."""
    return bool(res) and all(r["config"].get("epochs") == 0 for r in res)


def side_values(runs, metric, run, epoch):
    """One value per seed (in seed order) of a claim's side, or (None, why) when the files do not hold it."""
    res = sorted(runs.get(run, []), key=lambda r: r["config"]["seed"])
    if not res:
        return None, f"no results of {run}"
    if epoch is None:
        if any(metric not in r for r in res):
            return None, f"{metric} not in the files of {run}"
        return [r[metric] for r in res], ""
    if epoch != LAST and untrained(res):
        return None, f"{run} does not train (--epochs 0): it has its pass, no epoch {epoch}"
    rows = [r["history"][-1] if epoch == LAST else next((h for h in r["history"] if h["epoch"] == epoch), None)
            for r in res]
    if any(row is None for row in rows):
        return None, f"epoch {epoch} not in the files of {run}"
    if any(metric not in row for row in rows):
        return None, f"{metric} not logged in the files of {run}"
    return [row[metric] for row in rows], ""


def bound_ratios(runs, run):
    """Theorem 4.1 on each seed of a run: the largest L_BYOL / ((1 + 1/λ)(L_align + λ L_cross-model)) over its logged
    epochs, λ = β/α (1 for BYOL). Or (None, why)."""
    res = sorted(runs.get(run, []), key=lambda r: r["config"]["seed"])
    if not res:
        return None, f"no results of {run}"
    ratios = []
    for r in res:
        if any(k not in h for h in r["history"] for k in ("byol_loss", "cross_model", "align")):
            return None, f"byol_loss, cross_model not logged in the files of {run}"
        config = r["config"]
        lam = config.get("beta", 1.0) / config.get("alpha", 1.0) if config.get("loss") != "byol" else 1.0
        ratios.append(max(h["byol_loss"] / ((1 + 1 / lam) * (h["align"] + lam * h["cross_model"]))
                          for h in r["history"]))
    return ratios, ""


def verdict(direction, a, b=None, paired=False):
    """The rule (RULE) on the seeds' values a, b of the two sides; for "bound", a are the seeds' ratios. paired: A and
    B are one run at two epochs, a[i] and b[i] the same seed."""
    if direction == "bound":
        return SHOWN if max(a) <= 1 else NOT_SHOWN
    if len(a) < 2 or len(b) < 2:
        return UNDECIDED
    if paired and direction != "~":  # each seed's own change
        change = [x - y for x, y in zip(a, b)]
        above, below = all(d > 0 for d in change), all(d < 0 for d in change)
    else:  # the seed ranges apart, A above B / A below B
        above, below = min(a) > max(b), max(a) < min(b)
    if direction == "~":
        return NOT_SHOWN if above or below else SHOWN
    if not (above or below):
        return UNDECIDED
    return SHOWN if above == (direction == ">") else NOT_SHOWN


def judge(runs, claim):
    """(values of A, values of B, verdict, why) of one claim; values None where the files do not hold them."""
    _, _, metric, (run_a, epoch_a), direction, side_b = claim
    if direction == "bound":
        a, why = bound_ratios(runs, run_a)
        return a, None, (verdict("bound", a) if a else UNDECIDED), why
    a, why_a = side_values(runs, metric, run_a, epoch_a)
    b, why_b = side_values(runs, metric, *side_b)
    if a is None or b is None:
        return a, b, UNDECIDED, "; ".join(dict.fromkeys(w for w in (why_a, why_b) if w))
    return a, b, verdict(direction, a, b, paired=run_a == side_b[0]), ""


def cell(text):
    """Text for a Markdown table cell: a claim's ||W - I|| must not end the cell."""
    return text.replace("|", "\\|")


def claims_markdown(runs, claims=CLAIMS):
    lines = ["# The paper's claims, each with a verdict computed from the results files", "",
             "Made by `python tools/tables.py DIR` from the results files in DIR; the claims are the list `CLAIMS` "
             "in `tools/tables.py`. Verdicts say what these runs show at their scale, nothing about the paper's.", "",
             "**The rule.** " + RULE, "",
             "Values: each seed's, in seed order, separated by ' / ', to 4 significant digits (the verdicts compare "
             "the files' full values). Epoch `last`: each seed's last epoch of training (`pass` for a run that does not "
             "train: see the rule); accuracy: the probe's test "
             "accuracy, mean of its last 10 epochs (%). Metrics of the history (per training epoch, the mean over its "
             "batches): `align` L_align(q∘f_θ), eq. 1; `uniform` L_uniform(f_θ), eq. 2; `loss` the training loss; "
             "`knn_acc` the kNN monitor (%); `spread` √D × the std of the normalised f_θ across the batch (1 spread, "
             "0 collapsed); `w_identity_gap` ||W - I||_F/||I||_F of a linear predictor; `byol_loss`, `cross_model` "
             "L_BYOL (eq. 3) and L_cross-model (eq. 5), both symmetrised, measured whatever the loss trained.", "",
             "| # | the paper's claim (where) | metric | A: run, epoch | A, each seed | | B: run, epoch | B, each seed "
             "| verdict |", "|---|---|---|---|---|---|---|---|---|"]
    counts = {kind: {SHOWN: 0, NOT_SHOWN: 0, UNDECIDED: 0} for kind in (False, True)}  # by identity(cid)
    missing = {False: 0, True: 0}
    for claim in claims:
        cid, text, metric, (run_a, epoch_a), direction, side_b = claim
        a, b, result, why = judge(runs, claim)
        counts[identity(cid)][result] += 1
        missing[identity(cid)] += bool(why)
        fmt = lambda values: per_seed(values) if values is not None else "-"
        where = lambda run, epoch: run if epoch is None else \
            f"{run}, {'pass' if epoch == LAST and untrained(runs.get(run, [])) else epoch}"
        if direction == "bound":
            metric_cell, b_cells, rel = "max over epochs of L_BYOL / bound", "the bound | 1", "<="
        else:
            metric_cell = "accuracy %" if metric == ACC else f"`{metric}`"
            b_cells, rel = f"{where(*side_b)} | {fmt(b)}", direction
        lines.append(f"| {cid} | {cell(text)} | {metric_cell} | {where(run_a, epoch_a) if direction != 'bound' else run_a} "
                     f"| {fmt(a)} | {rel} | {b_cells} | **{result}**{': ' + why if why else ''} |")
    lines += ["", verdict_counts(claims, counts, missing)]
    return "\n".join(lines) + "\n"


def verdict_counts(claims, counts, missing):
    """The closing line of claims.md: the empirical claims' verdicts, then apart those of the code's identities."""
    line = lambda kind: (f"{counts[kind][SHOWN]} shown, {counts[kind][NOT_SHOWN]} not shown, {counts[kind][UNDECIDED]} "
                         f"cannot be decided ({missing[kind]} of them for a metric, epoch or run the files do not hold)")
    ids = [c[0] for c in claims if identity(c[0])]
    text = f"Verdicts of the {len(claims) - len(ids)} empirical claims: {line(False)}."
    if ids:
        groups = {}
        for cid in ids:
            groups.setdefault(re.match(r"\d*", cid).group(), []).append(cid)
        named = "; ".join(f"{g[0]}{'-' + g[-1] if len(g) > 1 else ''}: {IDENTITIES[n]}" for n, g in groups.items())
        text += (f" Counted apart, the {len(ids)} claims that an identity of the code decides at any scale and any "
                 f"training, so that their verdicts check the implementation, not the paper ({named}): {line(True)}.")
    return text


# -----------------------------------------------------------------------------
# The conclusion: what the largest scale shows, in a few sentences computed from its files (the README's status)

def seeds_text(values, fmt="{:.2f}", unit=""):
    """Each seed's value for up to three seeds, else the mean and the range."""
    if len(values) <= 3:
        return per_seed(values, fmt) + unit
    return f"{fmt.format(sum(values) / len(values))}{unit} ({fmt.format(min(values))} to {fmt.format(max(values))})"


def order_text(name_a, a, name_b, b):
    """Two runs' seeds by the rule of claims.md: which is above, or that the ranges overlap."""
    word = ranges_word(a, b)
    if word != "apart":
        return f"the seed ranges of {name_a} and {name_b} {'overlap' if word == 'overlap' else 'have ' + word}"
    high, low = (name_a, name_b) if min(a) > max(b) else (name_b, name_a)
    return f"every seed of {high} is above every seed of {low}"


def conclusion(results_dir, root=""):
    """The project's conclusion at the scale of results_dir, from its files (Markdown; links relative to root)."""
    runs = load_results(results_dir)
    need = ["byol-mlp", "byolp-mlp", "raft-mlp", "byol-np"]
    if any(not runs.get(n) for n in need):
        raft.fail(f"{results_dir}: the conclusion needs the runs {', '.join(need)}")
    seeds = {n: sorted(runs[n], key=lambda r: r["config"]["seed"]) for n in need}
    acc = {n: [r[ACC] for r in seeds[n]] for n in need}
    last = lambda n, k: [r["history"][-1][k] for r in seeds[n]]
    config = seeds["byol-mlp"][0]["config"]
    folder = os.path.relpath(os.path.abspath(results_dir), os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    link = lambda path: f"{root}{folder}/{path}"
    claim = {c[0]: judge(runs, c)[2] for c in CLAIMS if c[0] in ("8a", "7a")}
    paper = {row[4]: row[5].split(" ± ")[0] for row in TABLE1 if row[5]}  # as printed
    counts = sorted({len(acc[n]) for n in ("byol-mlp", "byolp-mlp", "raft-mlp")})
    mirror = order_text("RAFT", acc["raft-mlp"], "BYOL′", acc["byolp-mlp"])
    return "\n".join([
        f"**Status.** At the largest CPU scale here ([{folder}]({link('README.md')}): the small encoder, "
        f"{config['train_subset']:,} images at {config['image_size']} px, {config['epochs']} epochs; "
        f"{' or '.join(map(str, counts))} seeds of BYOL, BYOL′ and RAFT, {len(acc['byol-np'])} without a predictor; "
        f"values per seed, or mean (range)):",
        "",
        f"- **The collapse without a predictor: reproduced.** BYOL without its predictor ends with a spread of f_θ of "
        f"{seeds_text(last('byol-np', 'spread'), '{:.3f}')} (collapsed: below {raft.COLLAPSE_SPREAD}) against "
        f"{seeds_text(last('byol-mlp', 'spread'))} with it; it probes at {seeds_text(acc['byol-np'], unit=' %')} "
        f"against {seeds_text(acc['byol-mlp'], unit=' %')} (the paper: {paper['byol-np']} against "
        f"{paper['byol-mlp']} %).",
        f"- **RAFT ≡ BYOL′ in distribution (this project's finding).** Negating a predictor's last layer, linear and "
        f"initialised symmetrically, turns BYOL′'s loss into RAFT's minus 4β: from mirrored initialisations the two "
        f"follow one trajectory (`test_mirrored_raft_follows_byol_prime_trajectory`, "
        f"[mirror.md]({root}results/cpu/mirror.md)). So the paper's RAFT {paper['raft-mlp']} % against BYOL′ "
        f"{paper['byolp-mlp']} % cannot come from the two losses. Here RAFT probes at "
        f"{seeds_text(acc['raft-mlp'], unit=' %')} and BYOL′ at {seeds_text(acc['byolp-mlp'], unit=' %')}: {mirror}"
        f"{', as the mirror predicts' if 'overlap' in mirror else ': a finding against the mirror, unexplained'}.",
        f"- **BYOL against RAFT and BYOL′.** BYOL probes at {seeds_text(acc['byol-mlp'], unit=' %')}: "
        f"{order_text('BYOL', acc['byol-mlp'], 'RAFT', acc['raft-mlp'])}, and "
        f"{order_text('BYOL', acc['byol-mlp'], 'BYOL′', acc['byolp-mlp'])}. The paper's RAFT above BYOL: "
        f"*{claim['8a']}* here; its BYOL′ ~ BYOL: *{claim['7a']}* ([claims.md]({link('claims.md')}), 8a, 7a).",
        f"- **Only the paper's scale** (ResNet18, 50,000 images, 300 epochs: `bash run_all.sh` on a GPU) can "
        f"decide their order there; it has not been run yet.",
    ]) + "\n"


FIGURE3 = [("(a) supervised", "supervised"), ("(b) BYOL", "byol-mlp"), ("(c) BYOL without predictor", "byol-np"),
           ("(d) BYOL'", "byolp-mlp"), ("(e) RAFT", "raft-mlp")]
FIGURE4 = [("BYOL (MLP)", "byol-mlp"), ("BYOL-LP", "byol-lp"), ("BYOL-NP", "byol-np"), ("BYOL-LPI", "byol-lpi")]
FIGURE5 = [("(a) BYOL'-NP", [("β = 1", "byolp-np"), ("β = 10", "byolp-np-b10"), ("β = 100", "byolp-np-b100")]),
           ("(b) RAFT-NP", [("β = 1", "raft-np"), ("β = 10", "raft-np-b10"), ("β = 100", "raft-np-b100")]),
           ("(c) RAFT-LP", [("β = 0.1", "raft-lp-b0.1"), ("β = 1", "raft-lp"), ("β = 10", "raft-lp-b10")])]
# one colour per run in every figure of the repository (Figure 4, the demo, results/cpu-long), one per β in Figure 5
RUN_COLOURS = {"byol-mlp": "tab:blue", "byol-lp": "tab:cyan", "byol-lpi": "tab:olive", "byol-np": "tab:orange",
               "byolp-mlp": "tab:purple", "byolp-np": "tab:brown", "raft-mlp": "tab:red", "raft-np": "tab:green",
               "supervised": "tab:gray"}
# Figure 4's curves can lie on one another (BYOL-NP and BYOL-LPI at CPU scale): a line style each tells them apart
RUN_STYLES = {"byol-mlp": "-", "byol-lp": "--", "byol-np": "-.", "byol-lpi": ":"}
# Figure 5: colours that no run uses (a β curve is not the run of that colour elsewhere), and a line style each
BETA_COLOURS = {"β = 0.1": "goldenrod", "β = 1": "black", "β = 10": "deeppink", "β = 100": "darkslateblue"}
BETA_STYLES = {"β = 0.1": ":", "β = 1": "-", "β = 10": "--", "β = 100": "-."}
CIRCLE_BINS, CIRCLE_PAIRS = 72, 6  # Figure 3: angular histogram bins, view pairs joined across the circle
RING_KEY = (1, 10, 50)  # Figure 3: densities drawn as dotted circles, the ring's width scale in every panel


def ring_width(density, bins=CIRCLE_BINS):
    """Figure 3's ring width for a density (relative to an even spread): proportional to its square root, so that
    the largest possible density (every point in one of the bins) reaches 0.95 and no density is clipped."""
    return 0.95 * (torch.as_tensor(density, dtype=torch.float64).clamp_min(0) / bins).sqrt()


def circle_points(reps):
    """Figure 3's projection (App. F.1: "project the representation f_θ(x) to 2-D using PCA and then normalize to a
    unit sphere"): f_θ(x) (M, D), centred, on its two leading principal axes, then onto the unit circle: (M, 2)."""
    x = reps.double() - reps.double().mean(0)
    axes = torch.linalg.svd(x, full_matrices=False).Vh[:2]  # (2, D)
    return F.normalize(x @ axes.T, dim=1)


def angular_density(points, bins=CIRCLE_BINS):
    """The density of points (M, 2) over the angle, relative to a uniform spread (1 everywhere)."""
    angles = torch.atan2(points[:, 1], points[:, 0])
    # bin k centred on the angle 2πk/bins: a collapse's two spikes, at 0 and π on the first principal axis, each
    # fall in one bin (with a bin edge at ±π the spike at π was split in two)
    shifted = torch.remainder(angles + math.pi / bins, 2 * math.pi)
    return torch.histc(shifted, bins, 0, 2 * math.pi) * bins / len(points)


def view_pairs(points, pairs=CIRCLE_PAIRS, seed=0):
    """points (2M, 2): view 1 of M images, then view 2. Returns (pairs, 2, 2): both views of a few images, drawn
    with a fixed seed."""
    m = len(points) // 2
    chosen = torch.randperm(m, generator=torch.Generator().manual_seed(seed))[:pairs]
    return torch.stack([points[chosen], points[m + chosen]], 1)


def draw_circle(ax, f_theta):
    """One panel of Figure 3 from f_θ (2, M, D) of M images' two views: the ring's width is the density (ring_width;
    dotted circles mark the densities of RING_KEY). Returns the peak density (1: evenly spread; a collapse puts
    most points in one bin or two)."""
    points = circle_points(f_theta.flatten(0, 1))
    density = angular_density(points)
    theta = torch.arange(CIRCLE_BINS) * 2 * math.pi / CIRCLE_BINS  # bin centres (angular_density)
    outer = 1 + ring_width(density).float()
    circle = torch.stack([theta.cos(), theta.sin()], 1)
    closed = torch.cat([circle, circle[:1]])
    for d in RING_KEY:  # unlabelled in the panel, where a label would cover the ring: the caption names them
        r = 1 + ring_width(d).item()
        ax.plot(r * closed[:, 0], r * closed[:, 1], color="0.55", lw=0.5, ls=":")
    edge = circle * outer[:, None]
    ring = torch.cat([edge, edge[:1], closed.flip(0)])  # both edges closed: no gap between the bins at ±π
    ax.fill(ring[:, 0], ring[:, 1], color="tab:gray", alpha=0.6, lw=0)
    ax.plot(closed[:, 0], closed[:, 1], color="k", lw=0.5)
    for pair in view_pairs(points):  # black: no run's colour (RUN_COLOURS)
        ax.plot(pair[:, 0], pair[:, 1], "-o", color="k", ms=3, lw=0.8)
    ax.set(xlim=(-2, 2), ylim=(-2, 2), aspect="equal", xticks=[], yticks=[])
    return density.max().item()


def snapshots(results_dir, run, seed=0):
    """{epoch: f_θ (2, M, D)} from the run's OUT.epochE.pt files."""
    found = {}
    for path in glob.glob(os.path.join(results_dir, f"{run}-s{seed}.json.epoch*.pt")):
        snap = torch.load(path, map_location="cpu", weights_only=True)
        found[snap["epoch"]] = snap["f_theta"]
    return dict(sorted(found.items()))


FIGURE3_CAPTION = textwrap.fill(  # one paragraph, wrapped to the figure's width
    f"Figure 3: seed 0, f_θ(x) of the first {raft.SNAPSHOT_IMAGES} training images, two views each (the same views at "
    f"every epoch), PCA to 2-D (centred), normalised onto the circle. Grey ring: the density over the angle of both "
    f"views pooled, width ∝ √density (dotted circles, inner to outer: densities {', '.join(map(str, RING_KEY))}; 1 is "
    f"an even spread). Peak density: the densest of {CIRCLE_BINS} angle bins, both views pooled. Spread: raft.py's "
    f"collapse monitor on view 1 (1: spread over the sphere, 0: one point). A line joins an image's two views. A "
    f"collapse shows as two opposite spikes, not one point: centring removes the common point, what is left varies "
    f"mostly along one direction, and the two ends of a line normalise to opposite points.", 118)


def plot_figure3(plt, results_dir):
    """Figure 3 (App. F.1) from the snapshots of seed 0, when any exist; their f_θ go to figure3.pt (float16,
    small enough to keep with the results), from which the figure is drawn again where the snapshots are gone."""
    data = os.path.join(results_dir, "figure3.pt")
    found = {run: {e: f.half() for e, f in snapshots(results_dir, run).items()} for _, run in FIGURE3}
    if any(found.values()):
        raft.save_atomically(found, data)
    elif os.path.exists(data):
        found = torch.load(data, weights_only=True)
    rows = [(title, found.get(run)) for title, run in FIGURE3 if found.get(run)]
    if not rows:
        return
    absent = [title for title, run in FIGURE3 if not found.get(run)]
    caption = FIGURE3_CAPTION + ("\n" + textwrap.fill(f"Not in this folder (no snapshots): {', '.join(absent)}.", 118)
                                 if absent else "")
    cols = max(len(snaps) for _, snaps in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.3 * cols, 2.8 * len(rows) + 1.3), squeeze=False)
    for r, (title, snaps) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(snaps):
                ax.axis("off")
                continue
            epoch, f_theta = list(snaps.items())[c]
            peak = draw_circle(ax, f_theta)
            ax.set_title(f"epoch {epoch}: peak density {peak:.1f}\nspread {raft.spread(f_theta[0].float()):.2f}",
                         fontsize=9)
        axes[r, 0].set_ylabel(title, fontsize=9)
    fig.suptitle(caption, fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(results_dir, "figure3.png"), dpi=110)
    plt.close(fig)
    return fig


def plot_curve(ax, results, key, label, log=False, color=None, ls="-"):
    """The mean over seeds of one metric per epoch (geometric mean on a log axis), with a min-max band. Only the
    epochs every seed recorded it at (the kNN monitor runs every --knn-every epochs)."""
    rows = [[r for r in res["history"] if key in r] for res in results]
    epochs = [r["epoch"] for r in rows[0]]
    if not epochs or any([r["epoch"] for r in row] != epochs for row in rows):
        return
    v = torch.tensor([[r[key] for r in row] for row in rows], dtype=torch.float64)  # (seeds, epochs)
    mean = v.clamp_min(1e-30).log().mean(0).exp() if log else v.mean(0)
    line, = ax.plot(epochs, mean, marker="o" if len(epochs) == 1 else None, color=color, ls=ls,
                    label=f"{label} ({len(results)} seeds)" if len(results) > 1 else label)
    if len(results) > 1:
        ax.fill_between(epochs, v.min(0).values, v.max(0).values, color=line.get_color(), alpha=0.2)


NICE = (1, 2, 5)  # the mantissas of a log axis's labelled ticks


def log_axis(ax, values):
    """A log y axis whose limits are labelled ticks around values, so that a label stands at or below the smallest
    value and one at or above the largest, however narrow the range: ticks at 1, 2 and 5 × 10^k when the values
    span two decades or less, else at 10^k."""
    from matplotlib import ticker
    values = [v for v in values if v > 0 and math.isfinite(v)]
    ax.set_yscale("log")
    if not values:
        return
    low, high = min(values), max(values)
    subs = tuple(float(m) for m in NICE) if high / low <= 100 else (1.0,)
    ticks = lambda v: [m * 10.0 ** k for m in subs for k in range(math.floor(math.log10(v)) - 1,
                                                                     math.floor(math.log10(v)) + 2)]
    lo = max(t for t in ticks(low) if t <= low * (1 + 1e-9))
    hi = min(t for t in ticks(high) if t >= high * (1 - 1e-9))
    if hi <= lo:  # one value, on a tick: the ticks either side
        lo, hi = max(t for t in ticks(low) if t < lo), min(t for t in ticks(high) if t > hi)
    ax.set_ylim(lo, hi)
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    # every major tick labelled (by default matplotlib labels only some mantissas when a range spans about a decade)
    ax.yaxis.set_major_formatter(ticker.LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(math.inf,) * 2))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def plotted(ax):
    """Every y value drawn on ax: its lines and the edges of its bands."""
    values = [float(y) for line in ax.lines for y in line.get_ydata()]
    for band in ax.collections:
        values += [float(y) for path in band.get_paths() for y in path.vertices[:, 1]]
    return values


def collapse_line(ax):
    """A spread panel's collapse threshold, dashed (its title names it: no text over a curve), from 0 up."""
    ax.axhline(raft.COLLAPSE_SPREAD, color="k", ls="--", lw=0.8)
    ax.set_ylim(bottom=0)


def shared_legend(fig, axes, bottom=0.1, order=()):
    """One legend for the figure, under the panels, where it covers no curve: every label of every panel, once, those
    that start with an entry of order first, in its order."""
    found = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            found.setdefault(label, handle)
    rank = lambda label: next((i for i, start in enumerate(order) if label.startswith(start + " (") or label == start),
                              len(order))
    found = dict(sorted(found.items(), key=lambda item: rank(item[0])))
    if found:
        fig.legend(list(found.values()), list(found), loc="lower center", ncol=len(found), fontsize=9, frameon=False)
        fig.tight_layout(rect=(0, bottom, 1, 1))
        return
    fig.tight_layout()


def plot_figure4(plt, runs, results_dir):
    panels = [("loss", "(a) training loss", "loss", False),
              ("uniform", "(b) L_uniform(f_θ), eq. 2", "L_uniform(f_θ)", False),
              ("knn_acc", "(c) kNN accuracy % (monitor, k = 20;\nthe paper plots the linear probe)", "kNN accuracy %",
               False),
              ("align", "(d) L_align(q∘f_θ), eq. 1 (not in the paper's figure)", "L_align(q∘f_θ)", True)]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.8))
    drawn = [(label, name) for label, name in FIGURE4 if runs.get(name)]
    for label, name in drawn:
        for ax, (key, _, _, log) in zip(axes, panels):
            plot_curve(ax, runs[name], key, label, log, RUN_COLOURS[name], RUN_STYLES[name])
    for ax, (_, title, ylabel, log) in zip(axes, panels):
        ax.set(title=title, xlabel="epoch", ylabel=ylabel)
        if log:
            log_axis(ax, plotted(ax))
    fig.suptitle(f"Figure 4: BYOL with {len(drawn)} of the paper's {len(FIGURE4)} predictors: "
                 f"{', '.join(label for label, _ in drawn)} (mean over seeds, band: min to max)")
    shared_legend(fig, axes)
    fig.savefig(os.path.join(results_dir, "figure4.png"), dpi=110)
    plt.close(fig)
    return fig


def plot_figure5(plt, runs, results_dir):
    """Figure 5, one column per panel of the paper with runs of at least two β in results_dir (a β figure with one β
    compares nothing); no figure when none has."""
    columns = [(title, [(label, name) for label, name in curves if runs.get(name)]) for title, curves in FIGURE5]
    columns = [(title, curves) for title, curves in columns if len(curves) >= 2]
    if not columns:
        return None
    fig, axes = plt.subplots(2, len(columns), figsize=(16 * len(columns) / 3 + 1, 8), sharex=True, squeeze=False)
    for col, (title, curves) in enumerate(columns):
        for label, name in curves:
            style = dict(color=BETA_COLOURS[label], ls=BETA_STYLES[label])
            plot_curve(axes[0, col], runs[name], "align", label, log=True, **style)
            plot_curve(axes[1, col], runs[name], "uniform", label, **style)
        axes[0, col].set(title=title, ylabel="L_align(q∘f_θ), eq. 1")
        log_axis(axes[0, col], plotted(axes[0, col]))
        axes[1, col].set(xlabel="epoch", ylabel="L_uniform(f_θ), eq. 2")
    fig.suptitle("Figure 5: β in BYOL' and RAFT (mean over seeds, band: min to max; one colour per β in every panel)")
    shared_legend(fig, axes.flatten(), bottom=0.06, order=list(BETA_COLOURS))
    fig.savefig(os.path.join(results_dir, "figure5.png"), dpi=110)
    plt.close(fig)
    return fig


def plot_figures(runs, results_dir):
    """Figures 3, 4 and 5 from the results files and snapshots, when matplotlib is installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figures")
        return
    plot_figure3(plt, results_dir)
    plot_figure4(plt, runs, results_dir)
    plot_figure5(plt, runs, results_dir)


def write_tables(results_dir, untrained_from=None):
    """The tables, claims.md and figures of results_dir; with untrained_from, the runs that do not train (the
    Rand-Baseline) of that folder where results_dir has none."""
    for d in filter(None, (results_dir, untrained_from)):
        if not os.path.isdir(d):
            raft.fail(f"{d!r}: no such folder")
    runs = load_results(results_dir)
    if untrained_from:
        runs = {**{n: res for n, res in load_results(untrained_from).items() if untrained(res)}, **runs}
    for filename, text in [("table1.md", table_markdown("Table 1", TABLE1, runs)),
                           ("table3.md", table_markdown("Table 3 (α = 1; β < 0 is RAFT)", TABLE3, runs)),
                           ("mirror.md", mirror_markdown(runs)), ("trajectories.md", trajectories_markdown(runs)),
                           ("claims.md", claims_markdown(runs))]:
        if text is None:  # nothing of it in this folder (mirror.md without BYOL' and RAFT)
            continue
        raft.save_atomically(text, os.path.join(results_dir, filename), save=raft.write_text)
        if filename not in ("trajectories.md", "claims.md"):
            print(text)
    plot_figures(runs, results_dir)


def figure3_epochs(epochs):
    """The paper's Figure 3 shows epochs 1, 50, 100, 200 and 300 of 300: the same fractions of a run's epochs."""
    return ",".join(str(e) for e in sorted({max(1, round(epochs * k / 300)) for k in (1, 50, 100, 200, 300)}))


def run_list(snapshot_epochs="", figure4_knn_every=0):
    """RUNS, with --snapshot-epochs added to Figure 3's runs and --knn-every to Figure 4's (its panel (c))."""
    snap = {run for _, run in FIGURE3} if snapshot_epochs else set()
    knn = {run for _, run in FIGURE4} if figure4_knn_every else set()
    return {name: flags + (f" --snapshot-epochs {snapshot_epochs}" if name in snap else "")
            + (f" --knn-every {figure4_knn_every}" if name in knn else "")
            for name, flags in RUNS.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description="The runs of Tables 1 and 3, and the tables from their results.")
    p.error = raft.fail
    p.add_argument("results_dir", nargs="?", help="write the tables and figures of the results files in this folder")
    p.add_argument("--list-runs", action="store_true", help="print NAME<TAB>FLAGS for every run (used by run_all.sh)")
    p.add_argument("--epochs", type=int, default=0, help="with --list-runs: Figure 3's runs save snapshots at the "
                   "epochs the paper shows, scaled to this many epochs")
    p.add_argument("--snapshot-epochs", metavar="E1,E2,..", help="with --list-runs: these snapshot epochs instead")
    p.add_argument("--untrained-from", metavar="DIR", help="take the runs that do not train (the Rand-Baseline) from "
                   "DIR where the results folder has none")
    p.add_argument("--figure4-knn-every", type=int, default=0, metavar="N", help="with --list-runs: Figure 4's runs "
                   "run the kNN monitor every N epochs (where the others do not)")
    p.add_argument("--conclusion", action="store_true", help="print the conclusion of the results folder (the "
                   "README's status: python tools/tables.py --conclusion results/cpu-long), write nothing")
    args = p.parse_args(argv)
    if args.conclusion:
        if not args.results_dir:
            raft.fail("--conclusion needs a results folder")
        print(conclusion(args.results_dir), end="")
    elif args.list_runs:
        snapshot_epochs = args.snapshot_epochs or (figure3_epochs(args.epochs) if args.epochs > 0 else "")
        runs = run_list(snapshot_epochs, args.figure4_knn_every)
        print("\n".join(f"{name}\t{flags}" for name, flags in runs.items()))
    elif args.results_dir:
        write_tables(args.results_dir, args.untrained_from)
    else:
        raft.fail("give a results folder, or --list-runs")


if __name__ == "__main__":
    main()
