"""Benchmark of raft.py: the CUDA graph check, augmentation and step speed (and the augmentation's share of the
step), MFU, both probes, a full run's time.

    python tools/bench.py                              # the paper's setup: 96 px, batch 128, ResNet18
    python tools/bench.py --compile --out bench.json   # also the compiled step; the numbers as JSON
    python tools/bench.py --loss supervised --graph-check   # only the CUDA graph check of this setup

It takes raft.py's flags (the setup it times) and uses random images: speed does not depend on content.
On CUDA it first runs a few steps eager and as a CUDA graph from the same state and exits 1 if they differ.
"""

import argparse
import functools
import os
import sys
import time

import torch
import torch.nn as nn
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import raft  # noqa: E402  (the method; this file only times it)

# datasheet dense bf16 TFLOP/s (without sparsity), by a part of the device's name; the first match counts
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A6000": 155.0,
                    "4090": 165.0}
# The graph check: 10 steps eager twice and graphed once from one state. Two eager runs differ only by the device's
# nondeterministic kernels (atomics, cuDNN's choices); the graphed run may differ from the eager one by as much, so
# the tolerance is that measured spread times GRAPH_CHECK_FACTOR, and at least GRAPH_CHECK_FLOOR (float32 rounding
# of 10 steps where the device happens to be deterministic).
GRAPH_CHECK_STEPS, GRAPH_CHECK_FACTOR, GRAPH_CHECK_FLOOR = 10, 4.0, 1e-5


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed(fn, device, reps):
    fn()  # warm-up
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / reps


def per_image_pipeline(size, s):
    """What other BYOL code runs: torchvision transforms on each PIL image in DataLoader workers."""
    import torchvision.transforms as T
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0)), T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8), T.RandomGrayscale(0.2),
        T.ToTensor(), T.Normalize(raft.CIFAR_MEAN, raft.CIFAR_STD)])


def two_view_collate(batch, transform):
    return [torch.stack([transform(im) for im in batch]) for _ in range(2)]


def peak_flops(args):
    """(FLOP/s, what it is): datasheet dense bf16 for known GPUs under --amp, else a measured matmul."""
    if args.device.startswith("cuda") and args.amp:
        name = torch.cuda.get_device_name(args.device)
        for key, tflops in PEAK_BF16_TFLOPS.items():
            if key in name:
                return tflops * 1e12, f"{name} datasheet dense bf16, {tflops:.0f} TFLOP/s"
    dtype = torch.bfloat16 if args.amp else torch.float32
    a = torch.randn(2048, 2048, device=args.device, dtype=dtype)
    flops = 2 * 2048 ** 3 / timed(lambda: a @ a, args.device, 5)
    return flops, f"measured {str(dtype)[6:]} 2048² matmul on {args.device}, {flops / 1e12:.2f} TFLOP/s"


def with_flags(args, **changes):
    return argparse.Namespace(**{**vars(args), **changes})



def make_step(model, teacher, opt, args, images):
    """raft.train's step: train_step, or with args.cuda_graph the same step as a CUDA graph."""
    step = lambda x, tau, labels: raft.train_step(model, teacher, opt, x, tau, args, labels)  # noqa: E731
    return raft.cuda_graph_step(step, model, teacher, opt, images, args) if args.cuda_graph else step


def run_steps(args, images, graphed, steps=GRAPH_CHECK_STEPS):
    """raft.py's step, eager or as a CUDA graph, from the state seed args.seed gives.
    Returns the summed METRICS, the online parameters after the steps and before them (flattened)."""
    a = with_flags(args, cuda_graph=graphed)
    torch.manual_seed(args.seed)
    model, teacher = raft.build(a)
    opt = raft.make_optimizer(model, a)
    flat = lambda: torch.cat([p.detach().float().flatten() for p in model.parameters()])
    start, sums = flat(), torch.zeros(len(raft.METRICS), device=images.device)
    labels = torch.zeros(a.batch_size, dtype=torch.long, device=images.device)
    step = make_step(model, teacher, opt, a, images)
    torch.manual_seed(args.seed + 1)  # the same batches and views: the capture leaves the generators as they were
    for _ in range(steps):
        sums += step(images[torch.randint(0, len(images), (a.batch_size,), device=images.device)], a.tau, labels)
    return sums.clone(), flat(), start


def check_graph(args, images):
    """The CUDA graph against the eager step over a few steps from the same state, both with the same autocast
    (train_step's); fails the run when they differ by more than two eager runs do, times GRAPH_CHECK_FACTOR."""
    gap = lambda x, y, start: ((x - y).norm() / (y - start).norm()).item()
    metric_gap = lambda x, y: ((x - y).abs() / y.abs().clamp_min(1e-12)).max().item()
    eager_sums, eager, start = run_steps(args, images, graphed=False)
    again_sums, again, _ = run_steps(args, images, graphed=False)
    graph_sums, graphed, _ = run_steps(args, images, graphed=True)
    noise = max(gap(again, eager, start), metric_gap(again_sums, eager_sums))
    tol = max(GRAPH_CHECK_FACTOR * noise, GRAPH_CHECK_FLOOR)
    param_gap, metrics_gap = gap(graphed, eager, start), metric_gap(graph_sums, eager_sums)
    print(f"graph check, {GRAPH_CHECK_STEPS} steps (relative gaps): graphed vs eager: parameters {param_gap:.2e}, "
          f"loss and metrics {metrics_gap:.2e}; eager vs eager {noise:.2e}; tolerance {tol:.2e}")
    if not (param_gap <= tol and metrics_gap <= tol):
        raft.fail(f"the CUDA graph step differs from the eager step (parameters {param_gap:.2e}, "
                  f"metrics {metrics_gap:.2e}, tolerance {tol:.2e}); train without --cuda-graph")
    return dict(graph_check_param_rel=param_gap, graph_check_metric_rel=metrics_gap, graph_check_eager_rel=noise,
                graph_check_tolerance=tol)


def time_augmentation(args, images, batch, rows):
    """Batched augmentation on the device against torchvision's per-image pipeline in DataLoader workers."""
    s = timed(lambda: raft.two_views(batch(), args), args.device, rows["reps"])
    rows["augment_batched_images_per_s"] = args.batch_size / s
    n = (32 if args.device.startswith("cuda") else 2) * args.batch_size
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images[:n]]
    collate = functools.partial(two_view_collate, transform=per_image_pipeline(args.image_size, args.jitter_strength))
    loader = torch.utils.data.DataLoader(pil, batch_size=args.batch_size, num_workers=min(8, os.cpu_count() or 1),
                                         persistent_workers=True, collate_fn=collate)
    next(iter(loader))  # start the workers
    t0 = time.perf_counter()
    count = sum(len(v1) for v1, _ in loader)
    rows["augment_per_image_images_per_s"] = count / (time.perf_counter() - t0)
    rows["augment_speedup"] = rows["augment_batched_images_per_s"] / rows["augment_per_image_images_per_s"]


def time_steps(args, batch, rows):
    """The whole step (augmentation + train_step), eager, compiled (--compile) and as a CUDA graph (on CUDA)."""
    from torch.utils.flop_counter import FlopCounterMode
    model, teacher = raft.build(args)
    with FlopCounterMode(display=False) as counter:
        raft.train_step(model, teacher, raft.make_optimizer(model, args), batch(), args.tau, args)
    rows["gflop_per_image"] = counter.get_total_flops() / args.batch_size / 1e9
    peak, rows["peak"] = peak_flops(args)
    variants = [("eager", False, False)]
    variants += [("compiled", True, False)] if args.compile else []
    variants += [("graphed", False, True)] if args.device.startswith("cuda") else []
    labels = torch.zeros(args.batch_size, dtype=torch.long, device=args.device)
    for name, compiled, graphed in variants:
        a = with_flags(args, cuda_graph=graphed, compile=compiled)
        model, teacher = raft.build(a)
        if compiled:
            raft.compile_encoders(model, teacher)
        t0 = time.perf_counter()
        step = make_step(model, teacher, raft.make_optimizer(model, a), a, batch())  # captures a graph
        step(batch(), a.tau, labels)  # compiles, when compiled
        sync(a.device)
        rows[f"{name}_first_step_s"] = time.perf_counter() - t0
        s = timed(lambda: step(batch(), a.tau, labels), a.device, rows["reps"])
        rows[f"{name}_step_images_per_s"] = args.batch_size / s
        rows[f"{name}_mfu_percent"] = 100 * rows["gflop_per_image"] * 1e9 * args.batch_size / s / peak
    # the augmentation's share of the eager step, which runs it (two_views) before the networks
    rows["augment_share_of_step_percent"] = 100 * rows["eager_step_images_per_s"] / rows["augment_batched_images_per_s"]
    return max(rows[f"{name}_step_images_per_s"] for name, _, _ in variants)


def time_probes(args, batch, rows):
    """Both probes over CIFAR-10's 50,000 (or --train-subset) training and 10,000 test images."""
    model, _ = raft.build(args)
    n_train, n_test = args.train_subset or 50000, 10000
    per_image = lambda crop: timed(lambda: raft.features(model.encoder, batch(), args.image_size, crop, args.amp),
                                   args.device, rows["reps"]) / args.batch_size  # seconds per image
    plain, cropped = per_image(False), per_image(True)
    feats = torch.randn(n_train, raft.FEATURES, device=args.device)
    labels = torch.randint(0, 10, (n_train,), device=args.device)
    clf = nn.Linear(raft.FEATURES, 10).to(args.device)
    clf_opt = torch.optim.Adam(clf.parameters(), lr=args.eval_lr)
    classifier = timed(lambda: raft.probe_epoch(clf, clf_opt, None, None, labels, feats, args.image_size, args.amp),
                       args.device, 1)
    rows["probe_features_s"] = plain * (n_train + n_test) + args.eval_epochs * classifier
    rows["probe_augmented_s"] = plain * n_test + args.eval_epochs * (cropped * n_train + classifier)
    return n_train


def cpu_model():
    return f"{raft.cpu_model()}, {os.cpu_count()} logical cores"


def benchmark(args, argv=None):
    """On CUDA the graph check first, then the speeds; printed and, with --out, saved with the command and the date."""
    cuda = args.device.startswith("cuda")
    torch.manual_seed(args.seed)
    images = torch.randint(0, 256, (8192 if cuda else 512, 3, 32, 32), dtype=torch.uint8)
    rows = dict(reps=20 if cuda else 2)
    gpu_images = images.to(args.device)
    batch = lambda: gpu_images[torch.randint(0, len(images), (args.batch_size,), device=args.device)]
    if cuda:
        rows.update(check_graph(args, gpu_images))
    if args.graph_check:  # the check alone: a few seconds for each set of flags (tools/gpu_check.sh)
        return
    time_augmentation(args, images, batch, rows)
    best = time_steps(args, batch, rows)
    n_train = time_probes(args, batch, rows)
    # one --epochs run with --probe, without the kNN monitor
    rows["full_run_estimate_min"] = (args.epochs * n_train / best + rows[f"probe_{args.probe}_s"]) / 60
    device = raft.describe_device(args.device)
    print(f"benchmark: {args.image_size} px, batch {args.batch_size}, {args.encoder}/{args.stem}, amp={args.amp}, "
          f"{device}")
    for k, v in rows.items():
        print(f"  {k:<32} {v if isinstance(v, str) else f'{v:,.3f}'}")
    if args.out:
        command = " ".join(["python tools/bench.py", *(sys.argv[1:] if argv is None else map(str, argv))])
        date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        raft.save_atomically(dict(command=command, date=date, cpu=cpu_model(), device=device, config=vars(args),
                                  versions=raft.versions(), benchmark=rows), args.out, save=raft.write_json)


def main(argv=None):
    p = raft.parser()
    p.description = "Time raft.py's training step, augmentation and probes for the setup its flags give."
    p.set_defaults(out=None)  # print only, unless --out names a JSON file
    p.add_argument("--graph-check", action="store_true", help="only the CUDA graph check of this setup (exit 1 if "
                   "the graphed step differs from the eager one)")
    args = raft.get_args(argv, p)
    if args.graph_check and not args.device.startswith("cuda"):
        raft.fail("--graph-check needs a CUDA device")
    raft.set_up_device(args)
    if args.out:
        raft.check_writable(args.out)
    benchmark(args, argv)


if __name__ == "__main__":
    main()
