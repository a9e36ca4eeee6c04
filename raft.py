"""RAFT: Run Away From your Teacher, and the BYOL variants it studies, in one file.

Paper: "Run Away From your Teacher: a New Self-Supervised Approach Solving the Puzzle of
BYOL" (ICLR 2021 submission). Every equation below carries the paper's number; search for
"eq. 8" to find the RAFT loss. Where the paper is silent, the defaults follow the authors'
public code (github.com/WOWNICE/RAFT), each behind a flag (README, "Choices the paper leaves open").

    python raft.py --loss raft --predictor mlp              # Table 1, RAFT row (300 epochs)
    python raft.py --loss byol --predictor none             # BYOL-NP: the collapse of Sec. 3
    python raft.py --epochs 0 --predictor linear            # Rand-Baseline
    bash run_all.sh                                         # Tables 1 and 3, 3 seeds per row

Measured so far (README.md): on a 2-core CPU only, the CPU profile of every table row with a
small encoder (PROFILE=cpu bash run_all.sh, results/cpu/). No GPU run has been made yet, so no
accuracy of ours at the paper's scale is claimed here.

Sections, top to bottom: configuration; data and augmentation (App. C); networks (App. C);
losses (eqs. 1-3, 5, 6, 8, Sec. 5 remark; eq. 7 is checked in test_raft.py); mean teacher
(eq. 4); training (Algorithm 1); linear probe (App. C); results files and checkpoints; then
the tools, not the method: benchmark, tables; main.
"""

import argparse
import copy
import functools
import glob
import json
import math
import os
import platform
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image

# -----------------------------------------------------------------------------
# Configuration (defaults: the paper's Appendix C; where it is silent, the authors' code)

FEATURES, HIDDEN, PROJECTION = 512, 512, 128  # encoder output, MLP hidden width, f_θ's output (App. C)
CROP_SCALE = (0.08, 1.0)  # random resized crop, as torchvision's default (SimCLR / BYOL)
JITTER_P, GRAYSCALE_P = 0.8, 0.2  # App. C
UNIFORM_T = 2.0  # t of eq. 2
PROBE_BATCH = 512  # linear probe batch (authors' eval/eval.py; the paper is silent)
LOG_SAMPLES = 64  # the authors log L_align and L_uniform on the first 64 samples of a step
BLUR_SIGMA = (0.1, 2.0)  # Gaussian blur (off by default): σ range and kernel = 10% of the image, as BYOL
KNN_K, KNN_T, KNN_BANK, KNN_QUERIES = 20, 0.07, 10000, 2000  # the kNN monitor: neighbours, temperature, images


def fail(message):
    """A user mistake or a failed run: one line on stderr, exit status 1, no traceback."""
    raise SystemExit(f"raft.py: error: {message}")


def get_args(argv=None):
    """The flags, checked (one line per mistake), with the device and the defaults that depend on it resolved."""
    args = parser().parse_args(argv)
    validate(args)
    if not (args.list_runs or args.tables):
        resolve_device(args)
    return args


def parser():
    p = argparse.ArgumentParser(description="RAFT / BYOL / BYOL' on CIFAR-10 (see README.md).")
    p.error = fail  # one line, not argparse's usage block

    g = p.add_argument_group("data")
    g.add_argument("--data-dir", default="data", help="CIFAR-10 is downloaded here when missing; or a folder with train/ and test/ in ImageFolder layout")
    g.add_argument("--train-subset", type=int, default=0, help="train (and fit the linear probe) on the first N training images; 0: all")
    g.add_argument("--image-size", type=int, default=96, help="views are cropped and resized to this size (paper: 32 -> 96)")
    g.add_argument("--blur", type=float, default=0.0, help="probability of Gaussian blur (off in the paper's CIFAR setup)")
    g.add_argument("--solarize", type=float, default=0.0, help="probability of solarisation (off in the paper's CIFAR setup)")
    g.add_argument("--jitter-strength", type=float, default=1.0, help="s of ColorJitter(0.8s, 0.8s, 0.8s, 0.2s), p = 0.8; paper: silent; authors' code: 1; SimCLR's CIFAR setting: 0.5")

    g = p.add_argument_group("model")
    g.add_argument("--encoder", choices=["resnet18", "small"], default="resnet18", help="f_θ's backbone: ResNet18 (paper) or a 4-layer CNN for quick CPU runs and tests")
    g.add_argument("--stem", choices=["imagenet", "cifar"], default="imagenet", help="ResNet18 stem: 7x7/2 + max-pool (paper, 96 px) or 3x3/1 without max-pool (32 px runs)")
    g.add_argument("--predictor", choices=["mlp", "mlp-bn", "linear", "linear-identity", "none"], default="mlp", help="q_w: MLP (App. C, no BatchNorm), MLP with BatchNorm (Sec. 3), LP (W), LPI (W initialised to I), NP (identity)")
    g.add_argument("--bn-views", choices=["per-view", "joint"], default="per-view", help="BatchNorm batches: each view its own batch of N (authors' code, BYOL) or both views as one batch of 2N (a departure)")
    g.add_argument("--teacher-init", choices=["random", "copy"], default="random", help="f_ξ at step 0: its own random draw (authors' code, BYOL) or a copy of f_θ")
    g.add_argument("--mirror-init", action="store_true", help="negate q_w's last layer after initialisation: RAFT from here follows BYOL''s trajectory from the plain initialisation, mirrored (Theorem 5.1, generalised)")

    g = p.add_argument_group("loss")
    g.add_argument("--loss", choices=["byol", "byol-prime", "raft"], default="raft", help="eq. 3 (BYOL), eq. 6 (BYOL': α L_align + β L_cross-model) or eq. 8 (RAFT: α L_align - β L_cross-model)")
    g.add_argument("--alpha", type=float, default=1.0, help="α, weight of L_align (eqs. 6, 8); paper: 1")
    g.add_argument("--beta", type=float, default=1.0, help="β > 0, weight of L_cross-model (eqs. 6, 8); RAFT subtracts it; paper: 1")
    g.add_argument("--tangent", action="store_true", help="Tan variant (Sec. 5 remark): ||ẑ' - λẑ||²/λ with λ = sg(<ẑ, ẑ'>) in the teacher terms")

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=300, help="training epochs (paper: 300); 0 evaluates the random network (Rand-Baseline)")
    g.add_argument("--batch-size", type=int, default=128, help="images per step, two views each (paper: 128)")
    g.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (paper: 3e-4)")
    g.add_argument("--tau", type=float, default=0.996, help="τ of the mean teacher, eq. 4 (paper: EMA rate 4e-3, i.e. τ = 0.996)")
    g.add_argument("--tau-schedule", choices=["constant", "cosine"], default="constant", help="constant τ (paper) or BYOL's cosine increase of τ to 1")

    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-epochs", type=int, default=100, help="epochs of the linear classifier (paper: 100)")
    g.add_argument("--eval-lr", type=float, default=5e-4, help="Adam learning rate of the linear classifier (paper: 5e-4)")
    g.add_argument("--probe", choices=["augmented", "features"], default="augmented", help="train the classifier on crop+flip views with features recomputed every epoch (authors' code) or on precomputed features of plain images")
    g.add_argument("--knn-every", type=int, default=10, help="kNN accuracy monitor every N epochs (10k train, 2k test images); 0: off")

    g = p.add_argument_group("system")
    g.add_argument("--seed", type=int, default=0, help="fixes initialisation, batches and augmentations")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda, cuda:1, cpu, ...")
    g.add_argument("--out", help="results file, JSON written atomically (default: raft-run.json; with --benchmark: none); its checkpoint is OUT.ckpt")
    g.add_argument("--resume", action="store_true", help="continue from OUT.ckpt when it exists")
    g.add_argument("--save-every", type=int, default=10, help="checkpoint every N epochs (and at the end of training)")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (default: on for CUDA)")
    g.add_argument("--compile", action="store_true", help="torch.compile the forward pass")
    g.add_argument("--cuda-graph", action="store_true", help="on CUDA, capture the whole step (augmentation, forwards, loss, backward, Adam, EMA, metrics) as one CUDA graph; opt-in until checked on a GPU (README, Speed)")

    g = p.add_argument_group("tools (instead of training)")
    g.add_argument("--benchmark", action="store_true", help="measure augmentation and training-step speed, MFU and the time of a full run")
    g.add_argument("--list-runs", action="store_true", help="print the runs behind Tables 1 and 3 (used by run_all.sh)")
    g.add_argument("--tables", metavar="DIR", help="write DIR/table1.md, table3.md, mirror.md from DIR's results files")

    return p


def validate(args):
    checks = [
        (args.alpha >= 0, "--alpha must be >= 0"),
        (args.beta > 0, "--beta must be > 0 (RAFT's sign is chosen by --loss raft)"),
        (0 <= args.tau <= 1, "--tau must lie in [0, 1]"),
        (args.epochs >= 0 and args.eval_epochs >= 1, "--epochs must be >= 0 and --eval-epochs >= 1"),
        (args.batch_size >= 2, "--batch-size must be >= 2 (L_uniform needs pairs)"),
        (args.image_size >= 8, "--image-size must be >= 8"),
        (args.lr > 0 and args.eval_lr > 0, "learning rates must be > 0"),
        (0 <= args.blur <= 1 and 0 <= args.solarize <= 1, "--blur and --solarize are probabilities"),
        (0 <= args.jitter_strength <= 1.25, "--jitter-strength must lie in [0, 1.25] (brightness factor 1 ± 0.8s stays >= 0)"),
        (args.train_subset >= 0 and args.knn_every >= 0 and args.save_every >= 1, "--train-subset, --knn-every must be >= 0, --save-every >= 1"),
        (args.train_subset == 0 or args.train_subset >= args.batch_size, "--train-subset must be at least --batch-size"),
        (args.loss != "byol" or (args.alpha, args.beta) == (1.0, 1.0), "--alpha and --beta weight eqs. 6 and 8: use them with --loss byol-prime or raft"),
        (not (args.mirror_init and args.predictor == "none"), "--mirror-init needs a predictor (there is no last layer to negate)"),
        (not (args.encoder == "small" and args.stem != "imagenet"), "--stem applies to ResNet18 only"),
        (not args.cuda_graph or args.tau_schedule == "constant", "--cuda-graph needs --tau-schedule constant (τ is captured in the graph)"),
    ]
    for ok, message in checks:
        if not ok:
            fail(message)


def resolve_device(args):
    try:
        args.device = str(torch.device(args.device))
        torch.empty(0, device=args.device)
    except (RuntimeError, AssertionError) as e:
        fail(f"device {args.device!r} is not usable: {str(e).splitlines()[0]}")
    if args.cuda_graph and not args.device.startswith("cuda"):
        fail("--cuda-graph needs a CUDA device")
    if args.amp is None:
        args.amp = args.device.startswith("cuda")
    if args.out is None and not args.benchmark:
        args.out = "raft-run.json"


# -----------------------------------------------------------------------------
# Data: the whole dataset lives on the device as one uint8 tensor (N, 3, H, W)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
LOCAL_COPY_HINT = ("for an offline copy, point --data-dir at a folder with train/ and test/ "
                   "in ImageFolder layout (e.g. tar -xzf cifar10-jpeg.tar.gz -C data; --data-dir data/cifar10)")


def read_image(path):
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as e:
        fail(f"cannot read the image {path} ({type(e).__name__})")


def load_image_folder(root, train_subset=0):
    """root/{train,test}/<class>/<image>; returns {split: (uint8 (N,3,H,W), int64 (N,))}.
    With train_subset N, only the first N training images (in the interleaved order) are decoded."""
    for split in ("train", "test"):
        if not os.path.isdir(os.path.join(root, split)):
            fail(f"{root} has no {split}/ folder (expected ImageFolder layout: {root}/{{train,test}}/<class>/<image>)")
    classes = sorted(e.name for e in os.scandir(os.path.join(root, "train")) if e.is_dir())
    if not classes:
        fail(f"{root}/train has no class folders (expected {root}/train/<class>/<image>)")
    data = {}
    for split in ("train", "test"):
        files, labels = [], []
        for label, name in enumerate(classes):
            found = sorted(glob.glob(os.path.join(root, split, name, "*")))
            found = [f for f in found if f.lower().endswith(IMAGE_EXTENSIONS)]
            if not found:
                fail(f"{root}/{split}/{name} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
            labels += [label] * len(found)
        y = torch.tensor(labels)
        # interleave the classes (one image of each in turn) so that --train-subset N is balanced
        counts = torch.bincount(y)
        rank = torch.arange(len(y)) - (counts.cumsum(0) - counts)[y]  # index of each image within its class
        order = torch.argsort(rank * len(counts) + y)
        if split == "train" and train_subset:
            order = order[:train_subset]
        images = [read_image(files[i]) for i in order.tolist()]
        size = images[0].size
        arrays = [np.asarray(im if im.size == size else im.resize(size, Image.BILINEAR)) for im in images]
        data[split] = (torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous(), y[order])  # (N, 3, H, W), (N,)
    return data


def load_cifar10(root):
    """CIFAR-10 through torchvision, downloaded into root when missing."""
    data = {}
    for split in ("train", "test"):
        try:
            ds = torchvision.datasets.CIFAR10(root, train=split == "train", download=True)
        except Exception as e:  # no network, a bad archive, an unwritable folder
            nearby = [os.path.dirname(d) for d in glob.glob(os.path.join(root, "*", "train"))]
            hint = f"did you mean --data-dir {nearby[0]}?" if nearby else LOCAL_COPY_HINT
            fail(f"no CIFAR-10 in {root!r} and the download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); {hint}")
        data[split] = (torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets))
    return data


def load_data(args):
    root = args.data_dir
    if os.path.isdir(os.path.join(root, "train")) or os.path.isdir(os.path.join(root, "test")):
        data = load_image_folder(root, args.train_subset)
    elif os.path.isfile(root):
        fail(f"--data-dir {root!r} is a file, not a folder; {LOCAL_COPY_HINT}")
    else:
        data = load_cifar10(root)
    if args.train_subset:
        data["train"] = tuple(t[: args.train_subset] for t in data["train"])
    if len(data["train"][1]) < args.batch_size:
        fail(f"{len(data['train'][1])} training images are fewer than --batch-size {args.batch_size}")
    return {k: (x.to(args.device), y.to(args.device)) for k, (x, y) in data.items()}


# -----------------------------------------------------------------------------
# Augmentation (App. C: the SimCLR / BYOL recipe), batched on the device.
# Every image draws its own parameters: torchvision transforms applied to a batch tensor
# would draw one crop and one colour jitter for the whole batch.


def per_image(mask):
    return mask.view(-1, 1, 1, 1)


def crop_flip(x, size, scale=CROP_SCALE, ratio=(3 / 4, 4 / 3), tries=10):
    """Random resized crop + horizontal flip as one affine resampling, per image."""
    n = x.shape[0]
    area = torch.empty(n, tries, device=x.device).uniform_(*scale)
    log_r = torch.empty(n, tries, device=x.device).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    w, h = (area * log_r.exp()).sqrt(), (area / log_r.exp()).sqrt()  # crop size as fractions of the image
    fits = (w <= 1) & (h <= 1)
    first = fits.int().argmax(1, keepdim=True)  # torchvision's rule: the first try that fits
    w = torch.where(fits.any(1), w.gather(1, first).squeeze(1), 1.0)  # none fits: whole image
    h = torch.where(fits.any(1), h.gather(1, first).squeeze(1), 1.0)
    cx = (1 - w) * torch.rand(n, device=x.device) + w / 2
    cy = (1 - h) * torch.rand(n, device=x.device) + h / 2
    flip = torch.where(torch.rand(n, device=x.device) < 0.5, -1.0, 1.0)
    zero = torch.zeros_like(w)
    theta = torch.stack([torch.stack([w * flip, zero, 2 * cx - 1], 1),
                         torch.stack([zero, h, 2 * cy - 1], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def gray(x):
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)  # (N, 1, H, W), torchvision's weights


def rgb_to_hsv(x):
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    delta = v - x.min(1).values
    s = delta / v.clamp_min(1e-8)
    d = delta.clamp_min(1e-8)
    h = torch.where(v == r, (g - b) / d, torch.where(v == g, 2 + (b - r) / d, 4 + (r - g) / d))
    h = torch.where(delta > 0, (h / 6) % 1, 0.0)
    return h, s, v


def hsv_to_rgb(h, s, v):
    k = (torch.arange(5, 0, -2, device=h.device).view(1, 3, 1, 1) + 6 * h.unsqueeze(1)) % 6  # (N, 3, H, W): R, G, B
    return v.unsqueeze(1) * (1 - s.unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1))


def adjust_hue(x, shift):
    h, s, v = rgb_to_hsv(x)
    return hsv_to_rgb((h + shift.view(-1, 1, 1)) % 1, s, v)


def jitter_params(n, s, device, p=JITTER_P):
    """Per image: the factors of ColorJitter(0.8s, 0.8s, 0.8s, 0.2s), applied with probability p,
    and the order of its four ops. Returns factors (N, 4): brightness, contrast, saturation, hue
    (identity 1, 1, 1, 0 where off), and order (N, 4): a random permutation per image."""
    on = torch.rand(n, device=device) < p
    factors = []
    for j, width in enumerate((0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)):
        identity = 0.0 if j == 3 else 1.0
        f = identity + width * (2 * torch.rand(n, device=device) - 1)
        factors.append(torch.where(on, f, identity))
    return torch.stack(factors, 1), torch.rand(n, 4, device=device).argsort(1)


def color_jitter(x, strength=1.0):
    """ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) with probability 0.8, its four ops in a random order per image."""
    factors, order = jitter_params(x.shape[0], strength, x.device)
    for slot in range(4):
        op = order[:, slot]  # (N,) the op each image applies now
        f = per_image(factors.gather(1, op[:, None]).squeeze(1))
        # brightness, contrast and saturation blend the image with black, its mean grey, its grey version
        g = gray(x)
        anchor = torch.where(per_image(op == 0), 0.0, torch.where(per_image(op == 1), g.mean((1, 2, 3), keepdim=True), g))
        blended = f * x + (1 - f) * anchor
        x = torch.where(per_image(op == 3), adjust_hue(x, f.view(-1)), blended).clamp(0, 1)
    return x


def gaussian_blur(x, p):
    """Gaussian blur, kernel 10% of the image, σ ~ U(BLUR_SIGMA) per image (BYOL); probability p."""
    n, c, h, w = x.shape
    k = 2 * (w // 20) + 1
    sigma = torch.empty(n, device=x.device).uniform_(*BLUR_SIGMA)
    r = torch.arange(k, device=x.device) - k // 2
    kernel = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, k)
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (k // 2, k // 2, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, k // 2, k // 2), mode="reflect"), kernel[:, None, :, None], groups=n * c)
    return torch.where(per_image(torch.rand(n, device=x.device) < p), y.view(n, c, h, w), x)


def augment(images, size, jitter=1.0, blur=0.0, solarize=0.0):
    """One random view per image: uint8 (N, 3, H, W) -> float (N, 3, size, size) in [0, 1]."""
    x = crop_flip(images.float() / 255, size)
    x = color_jitter(x, jitter)
    x = torch.where(per_image(torch.rand(len(x), device=x.device) < GRAYSCALE_P), gray(x).expand_as(x), x)
    if blur:
        x = gaussian_blur(x, blur)
    if solarize:
        x = torch.where(per_image(torch.rand(len(x), device=x.device) < solarize) & (x >= 0.5), 1 - x, x)
    return x


@functools.cache
def channel_stats(device):  # copied to the device once, not at every step
    return torch.tensor(CIFAR_MEAN, device=device).view(1, 3, 1, 1), torch.tensor(CIFAR_STD, device=device).view(1, 3, 1, 1)


def normalize(x):
    mean, std = channel_stats(x.device)
    return (x - mean) / std


def two_views(images, args):
    """t1(x), t2(x) (Algorithm 1, line 4): two independent augmentations of each image, normalised; (N, 3, S, S) each."""
    return [normalize(augment(images, args.image_size, args.jitter_strength, args.blur, args.solarize)) for _ in range(2)]


# -----------------------------------------------------------------------------
# Networks (App. C): encoder + projector = f_θ, predictor q_w, mean teacher f_ξ.
# App. C calls the projector alone g_θ; the tables' f_θ, like this file's, is encoder + projector.

def resnet18(stem):
    net = torchvision.models.resnet18()
    if stem == "cifar":  # 32 px images: keep the resolution in the first layers
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()  # (N, 512)
    return net


def small_cnn():
    """A small stand-in for ResNet18, for CPU tests and quick tries (same 512-d output)."""
    layers, width = [], 3
    for out, stride in [(32, 1), (64, 2), (128, 2), (FEATURES, 2)]:
        layers += [nn.Conv2d(width, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        width = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (N, 512)


def projector():
    return nn.Sequential(
        nn.Linear(FEATURES, HIDDEN, bias=False),  # no bias: followed by BN (its zero gradient is float noise that Adam amplifies)
        nn.BatchNorm1d(HIDDEN),
        nn.ReLU(inplace=True),
        nn.Linear(HIDDEN, PROJECTION),
    )


def predictor(kind):
    if kind == "mlp":  # App. C: the projector's shape without BatchNorm
        return nn.Sequential(nn.Linear(PROJECTION, HIDDEN), nn.ReLU(inplace=True), nn.Linear(HIDDEN, PROJECTION))
    if kind == "mlp-bn":  # Sec. 3: "with batch normalization" (BYOL's predictor)
        return nn.Sequential(nn.Linear(PROJECTION, HIDDEN, bias=False), nn.BatchNorm1d(HIDDEN), nn.ReLU(inplace=True),
                             nn.Linear(HIDDEN, PROJECTION))
    if kind == "none":  # NP: q_w = I
        return nn.Identity()
    w = nn.Linear(PROJECTION, PROJECTION, bias=False)  # LP: q_w(z) = W z
    if kind == "linear-identity":  # LPI: W starts at the collapse solution I (Sec. 3, Fig. 4)
        nn.init.eye_(w.weight)
    return w


def mirror_predictor(q):
    """Negate q_w's last linear layer: q̃(z) = -q(z), so ẑ -> -ẑ. Since ||-ẑ - ẑ'||² = 4 - ||ẑ - ẑ'||² on the
    unit sphere, RAFT's loss at the mirrored weights is BYOL''s minus 4β: the two train as mirror images."""
    last = [m for m in q.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        for param in last.parameters():
            param.neg_()


def build_encoder(encoder, stem):
    return resnet18(stem) if encoder == "resnet18" else small_cnn()


def build_model(args):
    model = nn.ModuleDict(dict(encoder=build_encoder(args.encoder, args.stem), projector=projector(),
                               predictor=predictor(args.predictor)))
    if args.mirror_init:
        mirror_predictor(model.predictor)  # draws nothing: a mirrored pair goes on to draw the same teacher
    return model


def build_teacher(model, args):
    """f_ξ = encoder + projector, moved only by eq. 4, never by gradients."""
    if args.teacher_init == "copy":
        teacher = copy.deepcopy(nn.ModuleDict(dict(encoder=model.encoder, projector=model.projector)))
    else:  # its own random initialisation, as the authors' code (--same-init False) and DeepMind's BYOL
        teacher = nn.ModuleDict(dict(encoder=build_encoder(args.encoder, args.stem), projector=projector()))
    return teacher.requires_grad_(False)


def build(args):
    """Online network and teacher, on the device."""
    model = build_model(args)
    teacher = build_teacher(model, args)
    model, teacher = model.to(args.device), teacher.to(args.device)
    if args.device.startswith("cuda"):
        model, teacher = model.to(memory_format=torch.channels_last), teacher.to(memory_format=torch.channels_last)
    return model, teacher


# -----------------------------------------------------------------------------
# Losses. Inputs are un-normalised (N, D) tensors; each loss l2-normalises inside (Sec. 2.1)
# and returns the batch mean.


def fp32_or_wider(x):
    """bf16 (autocast) -> float32; float64 stays float64 (the mirror tests run in float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def sq_dist(p, target, tangent=False):
    """||p̂ - t̂||² per row, for a prediction p and the target t it is pulled towards or pushed from;
    tangent: ||t̂ - λp̂||²/λ with λ = sg(<p̂, t̂>) (Sec. 5 remark)."""
    p, target = F.normalize(fp32_or_wider(p), dim=-1), F.normalize(fp32_or_wider(target), dim=-1)
    if not tangent:
        return (p - target).pow(2).sum(-1)
    lam = (p * target).sum(-1, keepdim=True).detach()
    return ((target - lam * p).pow(2).sum(-1, keepdim=True) / lam).squeeze(-1)

def align_loss(a, b):
    """eq. 1: L_align = E ||f̂(x1) - f̂(x2)||² over positive pairs."""
    return sq_dist(a, b).mean()


def uniform_loss(z, t=UNIFORM_T):
    """eq. 2: L_uniform = log E exp(-t ||f̂(x) - f̂(y)||²) over pairs of different rows."""
    z = F.normalize(fp32_or_wider(z), dim=-1)
    return torch.pdist(z).pow(2).mul(-t).exp().mean().log()


def cross_model_loss(p1, p2, teacher1, teacher2, tangent=False):
    """eq. 5, symmetrised as in Sec. 4.1: each view's prediction against the teacher on the SAME view."""
    return 0.5 * (sq_dist(p1, teacher1, tangent).mean() + sq_dist(p2, teacher2, tangent).mean())


def byol_loss(p1, p2, teacher1, teacher2, tangent=False):
    """eq. 3, symmetrised: each view's prediction against the teacher on the OTHER view."""
    return 0.5 * (sq_dist(p1, teacher2, tangent).mean() + sq_dist(p2, teacher1, tangent).mean())


def objective(p1, p2, teacher1, teacher2, args):
    """The training loss selected by --loss. (eq. 7, Theorem 4.1, L_BYOL <= (1/α + 1/β) L_BYOL', is checked in test_raft.py.)"""
    if args.loss == "byol":
        return byol_loss(p1, p2, teacher1, teacher2, args.tangent)  # eq. 3
    align = align_loss(p1, p2)
    cross_model = cross_model_loss(p1, p2, teacher1, teacher2, args.tangent)
    if args.loss == "byol-prime":
        return args.alpha * align + args.beta * cross_model  # eq. 6 (= eq. 9): run towards the teacher
    return args.alpha * align - args.beta * cross_model  # eq. 8 (= eq. 10): run away from the teacher


# -----------------------------------------------------------------------------
# Mean teacher (eq. 4)


def tau_at(step, total_steps, args):
    """τ_k of Algorithm 1: constant (paper), or BYOL's 1 - (1 - τ)(cos(πk/K) + 1)/2."""
    if args.tau_schedule == "constant":
        return args.tau
    return 1 - (1 - args.tau) * (math.cos(math.pi * step / max(total_steps, 1)) + 1) / 2


@torch.no_grad()
def ema_update(teacher, model, tau):
    """eq. 4: ξ <- τ ξ + (1 - τ) θ, as one fused multi-tensor lerp."""
    xi = list(teacher.parameters())
    theta = list(model.encoder.parameters()) + list(model.projector.parameters())
    torch._foreach_lerp_(xi, theta, 1 - tau)


# -----------------------------------------------------------------------------
# Training (Algorithm 1)


def forward(model, teacher, x):
    """x: (B, 3, S, S), one BatchNorm batch. Returns q_w(f_θ(x)), f_θ(x), f_ξ(x), each (B, 128)."""
    x = to_cuda_layout(x)
    h = model.encoder(x)
    with torch.no_grad():  # the teacher runs in train mode (batch statistics), as BYOL's target
        h_teacher = teacher.encoder(x)
    # projector and predictor in float32: collapsed runs reach L_align ~ 1e-10, far below bf16's resolution
    with torch.autocast(x.device.type, enabled=False):
        z = model.projector(fp32_or_wider(h))
        p = model.predictor(z)
        with torch.no_grad():
            z_teacher = teacher.projector(fp32_or_wider(h_teacher))
    return p, z, z_teacher


def to_cuda_layout(x):
    """channels_last on CUDA: the layout cuDNN's fastest bf16 convolutions use."""
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


def forward_views(model, teacher, v1, v2, args, fwd=forward):
    """Both views through the networks. Returns p1, p2 = q_w(f_θ(v)), z1, z2 = f_θ(v), teacher1, teacher2 = f_ξ(v),
    each (N, 128)."""
    if args.bn_views == "per-view":  # each view its own batch of N: authors' code (gen_rep per view), BYOL
        (p1, z1, teacher1), (p2, z2, teacher2) = fwd(model, teacher, v1), fwd(model, teacher, v2)
        return p1, p2, z1, z2, teacher1, teacher2
    p, z, z_teacher = fwd(model, teacher, torch.cat([v1, v2]))  # joint (a departure): input (2N, 3, S, S), outputs (2N, 128)
    return *p.chunk(2), *z.chunk(2), *z_teacher.chunk(2)  # each (2N, 128) -> view 1 (N, 128), view 2 (N, 128)


METRICS = ["loss", "align", "uniform", "align_authors", "uniform_authors"]


def table_metrics(p1, p2, z1):
    """The L_align(q∘f_θ) and L_uniform(f_θ) of Tables 1 and 3 for one step, in two forms.
    align, uniform: eqs. 1 and 2 as printed, over the batch; L_uniform over all pairs of view 1's projector outputs.
    align_authors, uniform_authors: as the authors' code logs them (models/main/raft.py@74d51b9, register_reps,
    estimate_align, estimate_uniform): the first 64 samples; L_align as a mean over the D dimensions (||·||²/D);
    L_uniform of the normalised PREDICTOR outputs over consecutive pairs (i, i + 1), averaged over the two views."""
    a, b = p1[:LOG_SAMPLES], p2[:LOG_SAMPLES]  # (64, 128) each
    consecutive = lambda p: sq_dist(p[:-1], p[1:]).mul(-UNIFORM_T).exp().mean().log()
    return align_loss(p1, p2), uniform_loss(z1), align_loss(a, b) / a.shape[1], (consecutive(a) + consecutive(b)) / 2


def train_step(model, teacher, opt, v1, v2, args, tau, fwd=forward):
    """One step of Algorithm 1 (App. E) on the views v1 = t1(x), v2 = t2(x) of a batch, each (N, 3, S, S):
        lines 5-6, z = q_w(f_θ(t(x))) and z' = f_ξ(t(x))    forward_views: p1, p2 and teacher1, teacher2
        lines 7-8, l_align and l_cross-model                 objective (eq. 6 or 8; eq. 3 for BYOL)
        lines 10-11, the gradient and the optimiser step     loss.backward(), opt.step()
        line 12, ξ <- τ_k ξ + (1 - τ_k) θ                    ema_update (eq. 4)
    (lines 2-4, the batch and its two transformations, are the epoch loop's: train, make_step, two_views.)
    Returns the METRICS of the step, on the device. With opt=None it only measures (--epochs 0)."""
    # autocast's weight cache cannot live across CUDA graph replays (PyTorch's CUDA graphs notes)
    autocast = torch.autocast(v1.device.type, torch.bfloat16, enabled=args.amp, cache_enabled=not args.cuda_graph)
    with autocast, torch.set_grad_enabled(opt is not None):
        p1, p2, z1, z2, teacher1, teacher2 = forward_views(model, teacher, v1, v2, args, fwd)
    loss = objective(p1, p2, teacher1, teacher2, args)
    if opt is not None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(teacher, model, tau)
    with torch.no_grad():
        return torch.stack([loss.detach(), *table_metrics(p1, p2, z1)])


def make_optimizer(model, args):
    cuda = args.device.startswith("cuda")
    return torch.optim.Adam(model.parameters(), lr=args.lr, fused=cuda, capturable=cuda and args.cuda_graph)


def make_step(model, teacher, opt, args, image_shape, fwd=forward):
    """The epoch loop's step: step(images, tau) makes two views of a uint8 batch, runs train_step and adds its
    METRICS to sums, a device tensor read (and zeroed) once per epoch. The batch is copied into a static buffer,
    so that with --cuda-graph the whole step, augmentation, both views' forwards, loss, backward, Adam, EMA update
    and sums, is one CUDA graph replayed on that buffer: one launch per step instead of several hundred."""
    sums = torch.zeros(len(METRICS), device=args.device)
    static = torch.zeros((args.batch_size, *image_shape), dtype=torch.uint8, device=args.device)

    def body(tau):
        v1, v2 = two_views(static, args)
        sums.add_(train_step(model, teacher, opt, v1, v2, args, tau, fwd))

    def eager(images, tau):
        static.copy_(images)
        body(tau)

    if not args.cuda_graph:
        return eager, sums
    graph = capture(lambda: body(args.tau), model, teacher, opt, sums)  # τ is part of the graph: constant schedule

    def replay(images, tau):
        static.copy_(images)
        graph.replay()
    return replay, sums


def capture(body, model, teacher, opt, sums):
    """Record body() as a CUDA graph. A few warm-up steps run first, on a side stream, so that Adam's state,
    cuDNN's autotuning and the allocator settle (the CUDA graphs notes in the PyTorch docs); then every
    parameter, buffer and optimiser state is put back, so the run goes on from where it was."""
    tensors = [*model.parameters(), *model.buffers(), *teacher.parameters(), *teacher.buffers()]
    saved = [t.detach().clone() for t in tensors]
    saved_opt = {(p, k): v.clone() for p, state in opt.state.items() for k, v in state.items() if torch.is_tensor(v)}
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            body()
    torch.cuda.current_stream().wait_stream(side)
    with torch.no_grad():
        for t, s in zip(tensors, saved):
            t.copy_(s)
        for p, state in opt.state.items():
            for k, v in state.items():
                if torch.is_tensor(v):
                    v.copy_(saved_opt[p, k]) if (p, k) in saved_opt else v.zero_()  # a fresh Adam's state is zero
        sums.zero_()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    return graph


def train(model, teacher, data, args):
    """Algorithm 1 for args.epochs epochs; resumable from OUT.ckpt. Returns the per-epoch history and the seconds."""
    images = data["train"][0]
    epochs, opt = args.epochs, None
    if args.epochs == 0:  # Rand-Baseline: one epoch that only measures (no optimiser), on copies of the networks, so
        # that the probe sees the encoder exactly as initialised, BatchNorm statistics included (authors' --eval-mode rand)
        model, teacher, epochs = copy.deepcopy(model), copy.deepcopy(teacher), 1
    else:
        opt = make_optimizer(model, args)
    fwd = torch.compile(forward) if args.compile else forward
    ckpt_path = args.out + ".ckpt"
    start, history, seconds = 0, [], 0.0
    if args.resume and os.path.exists(ckpt_path):
        start, history, seconds = load_checkpoint(ckpt_path, model, teacher, opt, args)

    step, sums = make_step(model, teacher, opt, args, images.shape[1:], fwd)
    steps = len(images) // args.batch_size  # the last partial batch is dropped
    total_steps = epochs * steps
    session_start = time.perf_counter()
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(images), device=images.device)
        sums.zero_()
        for i in range(steps):
            step(images[perm[i * args.batch_size:(i + 1) * args.batch_size]], tau_at(epoch * steps + i, total_steps, args))
        means = dict(zip(METRICS, (sums / steps).tolist()))  # the one host sync per epoch
        dt = time.perf_counter() - t0
        seconds += dt
        if not all(map(math.isfinite, means.values())):
            fail(f"the loss became {means['loss']} at epoch {epoch + 1}; the last checkpoint ({ckpt_path}, if any) is kept")
        row = dict(epoch=epoch + 1, **means, images_per_s=steps * args.batch_size / dt, seconds=seconds,
                   eta_s=(time.perf_counter() - session_start) / (epoch + 1 - start) * (epochs - epoch - 1))
        if args.knn_every and (epoch + 1) % args.knn_every == 0:
            row["knn_acc"] = knn_accuracy(model.encoder, data, args)
        history.append(row)
        log_row(row, header=epoch == start)
        if opt is not None and ((epoch + 1) % args.save_every == 0 or epoch + 1 == epochs):
            save_checkpoint(dict(model=model.state_dict(), teacher=teacher.state_dict(), opt=opt.state_dict(),
                                 rng=rng_state(args.device), epoch=epoch + 1, history=history, seconds=seconds,
                                 config=config_of(args)), ckpt_path)
    return history, seconds


# -----------------------------------------------------------------------------
# Linear evaluation (App. C): a linear classifier on the frozen encoder (the probe)


@torch.no_grad()
def features(encoder, images, args, crop=False):
    """Frozen encoder features (N, 512), BatchNorm in eval mode, of images resized to --image-size, or
    with crop=True of a random resized crop + flip of each (the authors' probe training set)."""
    was_training = encoder.training
    encoder.eval()
    out = []
    for chunk in images.split(PROBE_BATCH):
        x = chunk.float() / 255
        x = crop_flip(x, args.image_size) if crop else F.interpolate(x, size=args.image_size, mode="bilinear", align_corners=False)
        x = to_cuda_layout(normalize(x))
        with torch.autocast(x.device.type, torch.bfloat16, enabled=args.amp):
            out.append(encoder(x).float())
    encoder.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def knn_accuracy(encoder, data, args, k=KNN_K, temperature=KNN_T):
    """A cheap monitor, not the paper's: weighted kNN on normalised features of training images vs test images."""
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    bank = F.normalize(features(encoder, xtr[:KNN_BANK], args), dim=1)
    query = F.normalize(features(encoder, xte[:KNN_QUERIES], args), dim=1)
    sim, idx = (query @ bank.T).topk(min(k, len(bank)), dim=1)  # (Q, k)
    votes = torch.zeros(len(query), int(ytr.max()) + 1, device=bank.device)
    votes.scatter_add_(1, ytr[idx], (sim / temperature).exp())
    return (votes.argmax(1) == yte[:KNN_QUERIES]).float().mean().item() * 100


def probe_epoch(clf, opt, encoder, images, labels, feats, args):
    """One epoch of the classifier, batch 512. feats None: the authors' probe, new crops and flips of the
    training images every epoch with their features recomputed; else the precomputed features (--probe features)."""
    for idx in torch.randperm(len(labels), device=labels.device).split(PROBE_BATCH):
        f = features(encoder, images[idx], args, crop=True) if feats is None else feats[idx]
        loss = F.cross_entropy(clf(f), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def linear_eval(encoder, data, args):
    """The probe: Adam at --eval-lr for --eval-epochs epochs. Returns the test accuracy (%) after each epoch."""
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    fte = features(encoder, xte, args)  # test images are never augmented
    ftr = features(encoder, xtr, args) if args.probe == "features" else None
    clf = nn.Linear(FEATURES, int(max(ytr.max(), yte.max())) + 1).to(fte.device)
    opt = torch.optim.Adam(clf.parameters(), lr=args.eval_lr)
    accs = []
    for _ in range(args.eval_epochs):
        probe_epoch(clf, opt, encoder, xtr, ytr, ftr, args)
        with torch.no_grad():
            accs.append((clf(fte).argmax(1) == yte).float().mean() * 100)
    return torch.stack(accs).tolist()


# -----------------------------------------------------------------------------
# Results files and checkpoints (not the method: what a run writes, and how it resumes)


def check_writable(path):
    """Fail now, not after hours of training, if the results file cannot be written."""
    if os.path.isdir(path):
        fail(f"--out {path!r} is a folder; give a file name, e.g. {os.path.join(path, 'run.json')}")
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(f"{path}.tmp{os.getpid()}", "w"):
            pass
        os.remove(f"{path}.tmp{os.getpid()}")
    except OSError as e:
        fail(f"cannot write --out {path!r}: {e.strerror or e}")


def config_of(args):
    """The flags that determine a run's result (what a resumed run must share)."""
    ignore = {"resume", "device", "save_every", "out", "data_dir", "knn_every", "compile", "benchmark", "list_runs", "tables"}
    return {k: v for k, v in vars(args).items() if k not in ignore}


def stored_config(config):
    """The configuration in a results file or checkpoint; a flag added since it was written counts at its default."""
    return {**vars(parser().parse_args([])), **config}


def versions():
    return dict(python=platform.python_version(), torch=torch.__version__, torchvision=torchvision.__version__)


def describe_device(device):
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"


def write_text(text, path):
    with open(path, "w") as f:
        f.write(text)


def write_json(obj, path):
    write_text(json.dumps(obj, indent=1), path)


def save_atomically(obj, path, save=torch.save):
    """Write to a temporary file, then rename: a crash never leaves a half-written file."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        save(obj, tmp)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        fail(f"cannot write {path}: {e.strerror or e}")


def save_checkpoint(state, path):  # its own name: the resume test interrupts a run here
    save_atomically(state, path)


def rng_state(device):
    return dict(cpu=torch.get_rng_state(), cuda=torch.cuda.get_rng_state(device) if device.startswith("cuda") else None)


def set_rng_state(state, device):
    torch.set_rng_state(state["cpu"])
    if state["cuda"] is not None and device.startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"], device)


def load_checkpoint(path, model, teacher, opt, args):
    """Restore a run from OUT.ckpt; returns (epoch, history, seconds)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # RNG states must stay on the CPU
    except Exception as e:
        fail(f"cannot read the checkpoint {path} ({type(e).__name__}); remove it to start again")
    config = config_of(args)
    stored = stored_config(ckpt["config"])
    diff = sorted(k for k in config if stored.get(k) != config[k])
    if diff:
        fail(f"{path} was made with other settings ({', '.join('--' + k.replace('_', '-') for k in diff)}); remove it or use another --out")
    model.load_state_dict(ckpt["model"])
    teacher.load_state_dict(ckpt["teacher"])
    opt.load_state_dict(ckpt["opt"])
    set_rng_state(ckpt["rng"], args.device)
    print(f"resumed from {path} at epoch {ckpt['epoch']}")
    return ckpt["epoch"], ckpt["history"], ckpt["seconds"]


def table_values(history):
    """Tables 1 and 3 report L_align and L_uniform as the mean over the last 10 epochs of training (Table 1 caption)."""
    last = history[-10:]
    return {k: sum(r[k] for r in last) / len(last) for k in METRICS[1:]}


def save_weights(model, teacher, args):
    """OUT.pt: the trained networks and the configuration (README: loading the encoder)."""
    weights = {name: module.state_dict() for name, module in model.items()}
    save_atomically(dict(**weights, teacher=teacher.state_dict(), config=vars(args)), args.out + ".pt")


def finished_run(args):
    """The results of a run that --resume finds finished already, if made with the same settings."""
    try:
        with open(args.out) as f:
            done = json.load(f)
        config = done["config"]
    except (OSError, ValueError, KeyError, TypeError):
        fail(f"{args.out} exists but is not a results file of raft.py; remove it or use another --out")
    if {k: stored_config(config).get(k) for k in config_of(args)} != config_of(args):
        fail(f"{args.out} holds a finished run with other settings; remove it or use another --out")
    print(f"{args.out}: finished already")
    return done


def log_row(row, header=False):
    cols = ["epoch", "loss", "align", "uniform", "knn_acc", "images_per_s", "seconds", "eta_s"]
    if header:
        print(" ".join(f"{c:>12}" for c in cols))
    cells = []
    for c in cols:
        v = row.get(c)
        cells.append(f"{'':>12}" if v is None else f"{v:>12d}" if isinstance(v, int) else f"{v:>12.4f}")
    print(" ".join(cells), flush=True)


# =============================================================================
# Tools, not the method: the benchmark (--benchmark) and Tables 1 and 3 (--list-runs, --tables)
# =============================================================================

# -----------------------------------------------------------------------------
# Benchmark (--benchmark): the CUDA graph check, augmentation and step speed, MFU, both probes, a full run

PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A6000": 155.0, "4090": 165.0}


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


def per_image_pipeline(size):
    """What other BYOL code runs: torchvision transforms on each PIL image in DataLoader workers."""
    import torchvision.transforms as T
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0)), T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2),
        T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)])


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
    s = timed(lambda: a @ a, args.device, 5)
    return 2 * 2048 ** 3 / s, f"measured {str(dtype)[6:]} 2048² matmul on {args.device}, {2 * 2048 ** 3 / s / 1e12:.2f} TFLOP/s"


def with_flags(args, **changes):
    return argparse.Namespace(**{**vars(args), **changes})


GRAPH_CHECK_STEPS, GRAPH_CHECK_TOL = 10, 0.25  # relative gaps; bf16 rounds eager and replayed kernels apart, Adam amplifies


def run_steps(args, images, graphed, steps=GRAPH_CHECK_STEPS):
    """make_step's step, eager or as a CUDA graph, from the state seed args.seed gives.
    Returns the summed METRICS, the online parameters after the steps and before them (flattened)."""
    a = with_flags(args, cuda_graph=graphed)
    torch.manual_seed(args.seed)
    model, teacher = build(a)
    opt = make_optimizer(model, a)
    flat = lambda: torch.cat([p.detach().float().flatten() for p in model.parameters()])
    start = flat()
    step, sums = make_step(model, teacher, opt, a, images.shape[1:])
    torch.manual_seed(args.seed + 1)  # the same batches and views: a replay draws from the generator's current state
    for _ in range(steps):
        step(images[torch.randint(0, len(images), (a.batch_size,), device=images.device)], a.tau)
    return sums.clone(), flat(), start


def check_graph(args, images):
    """The CUDA graph against the eager step over a few steps from the same state; fails the run when they differ."""
    eager_sums, eager, start = run_steps(args, images, graphed=False)
    graph_sums, graphed, _ = run_steps(args, images, graphed=True)
    param_gap = ((graphed - eager).norm() / (eager - start).norm()).item()
    metric_gap = ((graph_sums - eager_sums).abs() / eager_sums.abs().clamp_min(1e-12)).max().item()
    print(f"graph check, {GRAPH_CHECK_STEPS} steps: parameters {param_gap:.2e}, loss and metrics {metric_gap:.2e} "
          f"(relative; tolerance {GRAPH_CHECK_TOL})")
    if not (param_gap < GRAPH_CHECK_TOL and metric_gap < GRAPH_CHECK_TOL):
        fail(f"the CUDA graph step differs from the eager step (parameters {param_gap:.2e}, metrics {metric_gap:.2e}); "
             "train without --cuda-graph")
    return dict(graph_check_param_rel=param_gap, graph_check_metric_rel=metric_gap)


def time_augmentation(args, images, batch, rows):
    """Batched augmentation on the device against torchvision's per-image pipeline in DataLoader workers."""
    rows["augment_batched_images_per_s"] = args.batch_size / timed(lambda: two_views(batch(), args), args.device, rows["reps"])
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images[: 32 * args.batch_size if args.device.startswith("cuda") else 2 * args.batch_size]]
    loader = torch.utils.data.DataLoader(pil, batch_size=args.batch_size, num_workers=min(8, os.cpu_count() or 1), persistent_workers=True,
                                         collate_fn=functools.partial(two_view_collate, transform=per_image_pipeline(args.image_size)))
    next(iter(loader))  # start the workers
    t0 = time.perf_counter()
    count = sum(len(v1) for v1, _ in loader)
    rows["augment_per_image_images_per_s"] = count / (time.perf_counter() - t0)
    rows["augment_speedup"] = rows["augment_batched_images_per_s"] / rows["augment_per_image_images_per_s"]


def time_steps(args, batch, shape, rows):
    """The whole step (augmentation + train_step), eager, compiled (--compile) and as a CUDA graph (on CUDA)."""
    from torch.utils.flop_counter import FlopCounterMode
    model, teacher = build(args)
    v1, v2 = two_views(batch(), args)
    with FlopCounterMode(display=False) as counter:
        train_step(model, teacher, make_optimizer(model, args), v1, v2, args, args.tau)
    rows["gflop_per_image"] = counter.get_total_flops() / args.batch_size / 1e9
    peak, rows["peak"] = peak_flops(args)
    variants = [("eager", forward, False)] + ([("compiled", torch.compile(forward), False)] if args.compile else [])
    variants += [("graphed", forward, True)] if args.device.startswith("cuda") else []
    for name, fwd, graphed in variants:
        a = with_flags(args, cuda_graph=graphed)
        model, teacher = build(a)
        t0 = time.perf_counter()
        step, _ = make_step(model, teacher, make_optimizer(model, a), a, shape, fwd)  # captures, when graphed
        step(batch(), a.tau)  # compiles, when compiled
        sync(a.device)
        rows[f"{name}_first_step_s"] = time.perf_counter() - t0
        s = timed(lambda: step(batch(), a.tau), a.device, rows["reps"])
        rows[f"{name}_step_images_per_s"] = args.batch_size / s
        rows[f"{name}_mfu_percent"] = 100 * rows["gflop_per_image"] * 1e9 * args.batch_size / s / peak
    return max(rows[f"{name}_step_images_per_s"] for name, _, _ in variants)


def time_probes(args, batch, rows):
    """Both probes over CIFAR-10's 50,000 (or --train-subset) training and 10,000 test images."""
    model, _ = build(args)
    n_train, n_test = args.train_subset or 50000, 10000
    plain = timed(lambda: features(model.encoder, batch(), args), args.device, rows["reps"]) / args.batch_size  # s per image
    cropped = timed(lambda: features(model.encoder, batch(), args, crop=True), args.device, rows["reps"]) / args.batch_size
    feats, labels = torch.randn(n_train, FEATURES, device=args.device), torch.randint(0, 10, (n_train,), device=args.device)
    clf = nn.Linear(FEATURES, 10).to(args.device)
    clf_opt = torch.optim.Adam(clf.parameters(), lr=args.eval_lr)
    classifier = timed(lambda: probe_epoch(clf, clf_opt, None, None, labels, feats, args), args.device, 1)
    rows["probe_features_s"] = plain * (n_train + n_test) + args.eval_epochs * classifier
    rows["probe_augmented_s"] = plain * n_test + args.eval_epochs * (cropped * n_train + classifier)
    return n_train


def benchmark(args):
    """--benchmark: on CUDA the graph check first, then speeds; printed and, with --out, saved."""
    cuda = args.device.startswith("cuda")
    torch.manual_seed(args.seed)
    images = torch.randint(0, 256, (8192 if cuda else 512, 3, 32, 32), dtype=torch.uint8)  # speed does not depend on content
    rows = dict(reps=20 if cuda else 2)
    gpu_images = images.to(args.device)
    batch = lambda: gpu_images[torch.randint(0, len(images), (args.batch_size,), device=args.device)]
    if cuda:
        rows.update(check_graph(args, gpu_images))
    time_augmentation(args, images, batch, rows)
    best = time_steps(args, batch, images.shape[1:], rows)
    n_train = time_probes(args, batch, rows)
    rows["full_run_estimate_min"] = (args.epochs * n_train / best + rows[f"probe_{args.probe}_s"]) / 60  # no kNN monitor
    setup = f"{args.image_size} px, batch {args.batch_size}, {args.encoder}/{args.stem}, amp={args.amp}, {describe_device(args.device)}"
    print(f"benchmark: {setup}")
    for k, v in rows.items():
        print(f"  {k:<32} {v if isinstance(v, str) else f'{v:,.3f}'}")
    if args.out:
        save_atomically(dict(config=vars(args), versions=versions(), device=describe_device(args.device), benchmark=rows),
                        args.out, save=write_json)


# -----------------------------------------------------------------------------
# Tables 1 and 3 (run_all.sh runs what --list-runs prints, then --tables aggregates)

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
       for pred, flag, betas in [("mlp", "mlp", ["0.1", "10"]), ("lp", "linear", ["0.1", "10"]), ("np", "none", ["10", "100"])]
       for b in betas},
    **{f"byolp-np-b{b}": f"--loss byol-prime --predictor none --beta {b}" for b in ["10", "100"]},
    "raft-mlp-mirror": "--loss raft --predictor mlp --mirror-init",
    "raft-lp-mirror": "--loss raft --predictor linear --mirror-init",
}

# (label, q_w, α, β, run name, paper: linear accuracy %, L_align, L_uniform); β < 0 is RAFT, as Table 3 writes it
TABLE1 = [
    ("Rand-Baseline", "W", "", "", "rand", "42.74 ± 0.41", 78.09e-4, -0.51),
    ("BYOL", "MLP", "", "", "byol-mlp", "64.32 ± 0.89", 25.03e-4, -2.22),
    ("BYOL'", "MLP", 1, 1, "byolp-mlp", "69.21 ± 1.01", 22.09e-4, -2.07),
    ("RAFT", "MLP", 1, -1, "raft-mlp", "71.31 ± 0.75", 18.90e-4, -2.04),
    ("BYOL-LP", "W", "", "", "byol-lp", "67.64 ± 0.90", 7.71e-4, -2.16),
    ("BYOL'-LP", "W", 1, 1, "byolp-lp", "68.61 ± 0.73", 7.32e-4, -2.19),
    ("RAFT-LP", "W", 1, -1, "raft-lp", "67.55 ± 0.55", 7.42e-4, -2.23),
    ("BYOL-NP", "I", "", "", "byol-np", "20.92 ± 1.29", 1.94e-10, -0.14),
    ("BYOL'-NP", "I", 1, 1, "byolp-np", "16.92 ± 1.05", 1.35e-10, -0.10),
    ("RAFT-NP", "I", 1, -1, "raft-np", "11.72 ± 0.05", 16.07e-4, -0.006),
    ("TanBYOL-LP", "W", "", "", "tanbyol-lp", "67.63 ± 1.27", 7.83e-4, -1.92),
    ("TanBYOL'-LP", "W", 1, 1, "tanbyolp-lp", "67.66 ± 0.76", 7.52e-4, -2.19),
    ("TanRAFT-LP", "W", 1, -1, "tanraft-lp", "69.31 ± 0.87", 7.61e-4, -2.13),
    ("BYOL-LPI (Fig. 4)", "W = I at init", "", "", "byol-lpi", None, None, None),
    ("BYOL (Sec. 3)", "MLP with BN", "", "", "byol-mlpbn", "68.08 ± 0.84", None, None),
]
TABLE3 = [
    ("Rand-Baseline", "W", "", "", "rand", "42.74 ± 0.41", 7.81e-3, -0.51),
    ("RAFT", "MLP", 1, -0.1, "raft-mlp-b0.1", "65.53 ± 0.99", 8.37e-5, -2.00),
    ("RAFT", "MLP", 1, -1, "raft-mlp", "71.31 ± 0.75", 1.89e-3, -2.04),
    ("RAFT", "MLP", 1, -10, "raft-mlp-b10", "25.88 ± 0.42", 1.00e-2, -0.29),
    ("RAFT-LP", "W", 1, -0.1, "raft-lp-b0.1", "52.57 ± 2.72", 8.22e-6, -1.61),
    ("RAFT-LP", "W", 1, -1, "raft-lp", "67.55 ± 0.55", 7.42e-4, -2.25),
    ("RAFT-LP", "W", 1, -10, "raft-lp-b10", "66.10 ± 0.82", 3.70e-4, -2.15),
    ("RAFT-NP", "I", 1, -1, "raft-np", "11.72 ± 0.05", 1.61e-3, -0.01),
    ("RAFT-NP", "I", 1, -10, "raft-np-b10", "32.13 ± 0.52", 1.54e-2, -0.99),
    ("RAFT-NP", "I", 1, -100, "raft-np-b100", "29.36 ± 0.53", 1.56e-2, -1.29),
    ("BYOL'-NP", "I", 1, 1, "byolp-np", "16.92 ± 1.05", 1.35e-10, -0.12),
    ("BYOL'-NP", "I", 1, 10, "byolp-np-b10", "24.42 ± 1.14", 2.38e-10, -0.88),
    ("BYOL'-NP", "I", 1, 100, "byolp-np-b100", "37.48 ± 2.06", 4.55e-8, -1.14),
]
MIRROR = [("MLP", "byolp-mlp", "raft-mlp-mirror"), ("LP", "byolp-lp", "raft-lp-mirror")]


def load_results(results_dir):
    """{run name: [results of each seed]} from files named <run>-s<seed>.json."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*-s*.json"))):
        name = os.path.basename(path).rsplit("-s", 1)[0]
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
              "Each (paper) column stands beside ours in the form it most likely uses, the authors' logging "
              "(first 64 samples, L_align as ||·||²/D, L_uniform of q∘f_θ over consecutive pairs); eq. 1 and eq. 2 "
              "give ours as printed in the paper (L_uniform of f_θ over all pairs). All: mean of the last 10 epochs.")


def table_markdown(title, rows, runs):
    lines = [f"## {title}", "", TABLE_NOTE, "",
             "| model | q_w | α | β | seeds | epochs | linear acc. % (ours) | (paper) | L_align, authors' log (ours) | (paper) "
             "| L_align, eq. 1 (ours) | L_uniform, authors' log (ours) | (paper) | L_uniform, eq. 2 (ours) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, q, a, b, name, acc, align, uniform in rows:
        res = runs.get(name, [])
        paper = [acc or "-", "-" if align is None else f"{align:.2e}", "-" if uniform is None else f"{uniform:g}"]
        if res:
            epochs = ", ".join(sorted({str(r["config"]["epochs"]) for r in res}))
            ours = [mean_std([r[k] for r in res], fmt) for k, fmt in
                    [("linear_acc_last10", "{:.2f}"), ("align_authors", "{:.2e}"), ("align", "{:.2e}"),
                     ("uniform_authors", "{:.2f}"), ("uniform", "{:.2f}")]]
            seeds = str(len(res))
        else:
            epochs, seeds, ours = "-", "0", ["missing"] * 5
        lines.append(f"| {label} | {q} | {a} | {b} | {seeds} | {epochs} | {ours[0]} | {paper[0]} | {ours[1]} | {paper[1]} "
                     f"| {ours[2]} | {ours[3]} | {paper[2]} | {ours[4]} |")
    return "\n".join(lines) + "\n"


def rel_gap(x, y):
    return abs(x - y) / max((abs(x) + abs(y)) / 2, 1e-30)


def mirror_markdown(runs):
    lines = ["## BYOL' vs RAFT from mirrored initialisations (same seed)", "",
             "Negating the predictor's last layer turns BYOL''s loss into RAFT's minus 4β, so in exact arithmetic the "
             "pair follows one trajectory (test_raft.py shows it in float64). In float32 the two round differently and "
             "training amplifies the difference: a pair agrees in distribution, not run by run. The gap columns "
             "(relative difference of the epoch's L_align) show how far the pair drifts; the last column is the gap "
             "between two seeds of BYOL' at the last epoch, for scale.", "",
             "| q_w | seed | acc. BYOL' | acc. RAFT (mirror) | L_align BYOL' | L_align RAFT | L_uniform BYOL' | L_uniform RAFT "
             "| gap, epoch 1 | gap, last epoch | gap, two BYOL' seeds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for q, plain, mirrored in MIRROR:
        by_seed = {r["config"]["seed"]: r for r in runs.get(mirrored, [])}
        plain_runs = runs.get(plain, [])
        seeds = f"{rel_gap(plain_runs[0]['history'][-1]['align'], plain_runs[1]['history'][-1]['align']):.1e}" if len(plain_runs) > 1 else "-"
        pairs = [(r, by_seed.get(r["config"]["seed"])) for r in plain_runs]
        for a, b in [p for p in pairs if p[1] is not None] or [(None, None)]:
            if a is None:
                lines.append(f"| {q} | - | missing | missing | missing | missing | missing | missing | missing | missing | {seeds} |")
                continue
            first, last = (rel_gap(a["history"][i]["align"], b["history"][i]["align"]) for i in (0, -1))
            lines.append(f"| {q} | {a['config']['seed']} | {a['linear_acc_last10']:.2f} | {b['linear_acc_last10']:.2f} "
                         f"| {a['align']:.3e} | {b['align']:.3e} | {a['uniform']:.3f} | {b['uniform']:.3f} "
                         f"| {first:.1e} | {last:.1e} | {seeds} |")
    return "\n".join(lines) + "\n"


FIGURE4 = [("BYOL (MLP)", "byol-mlp"), ("BYOL-LP", "byol-lp"), ("BYOL-NP", "byol-np"), ("BYOL-LPI", "byol-lpi")]
FIGURE5 = [("(a) BYOL'-NP", [("β = 1", "byolp-np"), ("β = 10", "byolp-np-b10"), ("β = 100", "byolp-np-b100")]),
           ("(b) RAFT-NP", [("β = 1", "raft-np"), ("β = 10", "raft-np-b10"), ("β = 100", "raft-np-b100")]),
           ("(c) RAFT-LP", [("β = 0.1", "raft-lp-b0.1"), ("β = 1", "raft-lp"), ("β = 10", "raft-lp-b10")])]


def plot_curve(ax, results, key, label, log=False):
    """The mean over seeds of one metric per epoch (geometric mean on a log axis), with a min-max band."""
    epochs = [r["epoch"] for r in results[0]["history"]]
    v = torch.tensor([[r[key] for r in res["history"]] for res in results], dtype=torch.float64)  # (seeds, epochs)
    mean = v.clamp_min(1e-30).log().mean(0).exp() if log else v.mean(0)
    line, = ax.plot(epochs, mean, label=f"{label} ({len(results)} seeds)" if len(results) > 1 else label)
    if len(results) > 1:
        ax.fill_between(epochs, v.min(0).values, v.max(0).values, color=line.get_color(), alpha=0.2)


def plot_figures(runs, results_dir):
    """Figures 4 and 5 from the results files, when matplotlib is installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figures")
        return
    panels = [("loss", "training loss", False), ("align", "L_align(q∘f_θ), eq. 1", True), ("uniform", "L_uniform(f_θ), eq. 2", False)]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for label, name in FIGURE4:
        for ax, (key, _, log) in zip(axes, panels):
            if runs.get(name):
                plot_curve(ax, runs[name], key, label, log)
    for ax, (_, title, log) in zip(axes, panels):
        ax.set(title=title, xlabel="epoch", yscale="log" if log else "linear")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend()
    fig.suptitle("Figure 4: BYOL with each predictor (mean over seeds, band: min to max)")
    fig.savefig(os.path.join(results_dir, "figure4.png"), dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, axes = plt.subplots(2, 3, figsize=(16, 8), sharex=True)
    for col, (title, curves) in enumerate(FIGURE5):
        for label, name in curves:
            if runs.get(name):
                plot_curve(axes[0, col], runs[name], "align", label, log=True)
                plot_curve(axes[1, col], runs[name], "uniform", label)
        axes[0, col].set(title=title, yscale="log", ylabel="L_align(q∘f_θ), eq. 1")
        axes[1, col].set(xlabel="epoch", ylabel="L_uniform(f_θ), eq. 2")
        if axes[0, col].get_legend_handles_labels()[0]:
            axes[0, col].legend()
    fig.suptitle("Figure 5: β in BYOL' and RAFT (mean over seeds, band: min to max)")
    fig.savefig(os.path.join(results_dir, "figure5.png"), dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_tables(results_dir):
    if not os.path.isdir(results_dir):
        fail(f"--tables {results_dir!r}: no such folder")
    runs = load_results(results_dir)
    for filename, text in [("table1.md", table_markdown("Table 1", TABLE1, runs)),
                           ("table3.md", table_markdown("Table 3 (α = 1; β < 0 is RAFT)", TABLE3, runs)),
                           ("mirror.md", mirror_markdown(runs))]:
        save_atomically(text, os.path.join(results_dir, filename), save=write_text)
        print(text)
    plot_figures(runs, results_dir)


# -----------------------------------------------------------------------------
# Main


def set_up_device(args):
    """cuDNN picks its fastest kernels. TF32 for convolutions (bf16 under --amp anyway) but not for matmuls, so that
    the projector, predictor and losses stay true float32: collapsed runs reach L_align ~1e-10."""
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = False


def run(args):
    """One run: train (Algorithm 1), probe, write the results file and OUT.pt."""
    torch.manual_seed(args.seed)
    data = load_data(args)
    model, teacher = build(args)
    print(f"{args.loss} / predictor {args.predictor}{' / tangent' if args.tangent else ''} on {describe_device(args.device)}: "
          f"{len(data['train'][1])} training images, {args.epochs} epochs")
    history, train_seconds = train(model, teacher, data, args)
    t0 = time.perf_counter()
    accs = linear_eval(model.encoder, data, args)
    result = dict(config=vars(args), versions=versions(), device=describe_device(args.device), history=history,
                  **table_values(history), linear_acc=accs[-1], linear_acc_last10=sum(accs[-10:]) / len(accs[-10:]),
                  probe_history=accs, seconds=dict(train=train_seconds, eval=time.perf_counter() - t0))
    save_weights(model, teacher, args)
    save_atomically(result, args.out, save=write_json)
    if os.path.exists(args.out + ".ckpt"):
        os.remove(args.out + ".ckpt")  # the results file and OUT.pt now hold everything the checkpoint was for
    print(f"linear accuracy {accs[-1]:.2f}% (mean of the last 10 probe epochs {result['linear_acc_last10']:.2f}%)  "
          f"L_align {result['align']:.3e}  L_uniform {result['uniform']:.3f}  -> {args.out}, {args.out}.pt")
    return result


def main(argv=None):
    args = get_args(argv)
    if args.list_runs:
        return print("\n".join(f"{name}\t{flags}" for name, flags in RUNS.items()))
    if args.tables:
        return write_tables(args.tables)
    set_up_device(args)
    if args.out:
        check_writable(args.out)
    if args.benchmark:
        return benchmark(args)
    if args.resume and os.path.exists(args.out):  # run_all.sh re-runs everything with --resume
        return finished_run(args)
    return run(args)


if __name__ == "__main__":
    main()
