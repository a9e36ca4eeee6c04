"""Where do the paper's Rand-Baseline metrics (L_align 7.81e-3, L_uniform -0.51) come from?

Measures L_align and L_uniform of a freshly initialised network (raft.py's default
initialisation, linear predictor as in the Rand-Baseline row) on one batch of 128 real
CIFAR-10 images, two views each, in every form we could think of: BatchNorm in train mode
(what a training step and the authors' step-0 log see) or eval mode (what the probe sees);
the encoder output h, the projector output z = f_θ, the predictor output p = q∘f_θ;
L_align summed over dimensions (eq. 1) or averaged over them on the first 64 samples (the
authors' log); L_uniform over all pairs (eq. 2) or over consecutive pairs of the first 64
(the authors' log). Run from the repository root:

    python results/rand-baseline/measure.py DATA_DIR > results/rand-baseline/measured.md
"""
import datetime
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import raft  # noqa: E402


def forms(a, b):
    first_a, first_b = a[:64], b[:64]
    consecutive = lambda p: raft.sq_dist(p[:-1], p[1:]).mul(-2).exp().mean().log().item()
    return [raft.align_loss(a, b).item(), raft.align_loss(first_a, first_b).item() / a.shape[1],
            raft.uniform_loss(a).item(), (consecutive(first_a) + consecutive(first_b)) / 2]


def provenance():
    """What made the table: the date, the code (raft.py's commit; modified: uncommitted changes), the versions, the CPU."""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        with open("/proc/cpuinfo") as f:
            cpus = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:  # not Linux
        cpus = []
    cpu = f"{cpus[0]}, {len(cpus)} logical cores" if cpus else "unknown CPU"
    return f"Made {date} by `measure.py` with {raft.versions()}, on {cpu} ({torch.get_num_threads()} threads)."


def main(data_dir):
    print(f"Output of `python results/rand-baseline/measure.py {data_dir}`. {provenance()}\n")
    print("| setup | seed | BatchNorm | output | L_align, eq. 1 | L_align, authors' log (/D) | L_uniform, eq. 2 | L_uniform, authors' log |")
    print("|---|---|---|---|---|---|---|---|")
    for size, stem in [(96, "imagenet"), (32, "cifar")]:
        args = raft.get_args(["--data-dir", data_dir, "--predictor", "linear", "--epochs", "0", "--train-subset", "128",
                              "--device", "cpu", "--image-size", str(size), "--stem", stem])
        images = raft.load_data(args)["train"][0]
        for seed in (0, 1, 2):
            torch.manual_seed(seed)
            model, _ = raft.build(args)
            torch.manual_seed(100 + seed)
            v1, v2 = raft.two_views(images, args)
            for mode in ("train", "eval"):
                model.train(mode == "train")
                with torch.no_grad():
                    h = [model.encoder(v) for v in (v1, v2)]
                    z = [model.projector(x) for x in h]
                    p = [model.predictor(x) for x in z]
                for name, (a, b) in [("h (encoder)", h), ("z = f_θ", z), ("p = q∘f_θ", p)]:
                    cells = " | ".join(f"{v:.3g}" for v in forms(a, b))
                    print(f"| {size} px, {stem} stem | {seed} | {mode} | {name} | {cells} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/cifar10")
