# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The Annotated RAFT
#
# *"Run Away From your Teacher: a New Self-Supervised Approach Solving the Puzzle of BYOL"* (ICLR 2021 submission),
# read in the paper's order, with the code of `raft.py` that computes each step beside it and a live check of each
# claim on real CIFAR-10 images. Every piece of code shown in a grey box is `raft.py`'s own text, read from the file
# when this notebook runs (`inspect.getsource`): it is never a copy. The cells of the notebook itself only call
# `raft.py`'s functions and print what they return.
#
# The whole notebook runs on a laptop's CPU in a few minutes. To build it again, outputs included (what it needs
# beyond `requirements.txt` is in `requirements-docs.txt`):
#
#     RAFT_DATA_DIR=data/cifar10 python tools/build_notebook.py
#
# `RAFT_DATA_DIR` is what `raft.py` calls `--data-dir` (default `data`, where torchvision downloads CIFAR-10; or a
# folder `DIR/{train,test}/<class>/<image>`). Its source is `docs/annotated_raft.py`, a plain Python script.
#
# **Contents**, in the paper's order: Sec. 2, alignment and uniformity (eqs. 1, 2); Sec. 3, BYOL (eq. 3), the mean
# teacher (eq. 4), the predictor and the collapse without it, live; Sec. 4, the cross-model loss (eq. 5), BYOL′
# (eq. 6), Theorem 4.1 (eq. 7), RAFT (eq. 8); Sec. 5, Theorem 5.1 and the Tan variant; App. C, the networks, the
# augmentation and the linear probe; Algorithm 1, one training step; what the runs found.

# %%
import base64
import inspect
import io
import os
import resource
import sys
import tempfile
import time
import types
from unittest import mock

REPO = next(os.path.abspath(p) for p in (".", "..") if os.path.exists(os.path.join(p, "raft.py")))
os.chdir(REPO)  # the notebook lives in docs/; raft.py and results/ are one folder up
sys.path.insert(0, REPO)

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from IPython.display import Markdown, display  # noqa: E402
from PIL import Image  # noqa: E402

import raft  # noqa: E402

plt.rcParams.update({"figure.dpi": 80, "font.size": 9})
started, cpu_started = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)


def show(*functions):
    """raft.py's own text of each function, read from raft.py as it is now."""
    for fn in functions:
        lines, first = inspect.getsourcelines(fn)
        source = "".join(lines)
        display({"text/markdown": f"`raft.py`, line {first}:\n```python\n{source}```", "text/plain": source},
                raw=True)


# %% [markdown]
# The data, loaded as every run of `raft.py` loads it (`load_data`): the whole of it as one uint8 tensor. The
# notebook trains at the scale of the project's five-minute demo (`PROFILE=demo bash run_all.sh`): the small
# encoder, 16 px views, the first 2,560 training images, batch 64.

# %%
DATA_DIR = os.environ.get("RAFT_DATA_DIR", raft.parser().get_default("data_dir"))  # raft.py's --data-dir
EPOCHS = 6
DEMO = ["--encoder", "small", "--image-size", "16", "--batch-size", "64", "--train-subset", "2560",
        "--epochs", str(EPOCHS), "--probe", "features", "--knn-every", "0", "--device", "cpu"]
args = raft.get_args([*DEMO, "--data-dir", DATA_DIR])
data = raft.load_data(args)
(x_train, y_train), (x_test, y_test) = data["train"], data["test"]
print(f"training images {tuple(x_train.shape)} {x_train.dtype}, test images {tuple(x_test.shape)}, "
      f"{int(y_train.max()) + 1} classes")

# %% [markdown]
# ## Sec. 2: alignment and uniformity
#
# Every representation is l2-normalised before a loss sees it: $\hat z = z / \lVert z \rVert_2$, a point on the unit
# sphere. Wang and Isola's two measures of a representation $f$, for two augmented views $x_1, x_2$ of one image and
# two different images $x, y$:
#
# $$\mathcal{L}_{\text{align}}(f) = \mathbb{E}_{(x_1, x_2)} \big\lVert \hat f(x_1) - \hat f(x_2) \big\rVert_2^2
# \tag{1}$$
#
# computed by `align_loss` (with `sq_dist`, the squared distance of normalised rows that every loss of the paper is
# built from), and
#
# $$\mathcal{L}_{\text{uniform}}(f) = \log \mathbb{E}_{(x, y)}\, e^{-t \lVert \hat f(x) - \hat f(y) \rVert_2^2},
# \qquad t = 2 \tag{2}$$
#
# computed by `uniform_loss`. Alignment is small when the two views of an image land together; uniformity is small
# (negative) when different images spread over the sphere, and 0 when every image lands on one point: the collapse.

# %%
show(raft.sq_dist, raft.align_loss, raft.uniform_loss)

# %% [markdown]
# On a real batch: 256 training images, two augmented views each (`two_views`, App. C), through a freshly
# initialised f_θ (`build`). `forward_views` returns, for both views, $z = q_w(f_\theta(v))$, $f = f_\theta(v)$ and
# the teacher's $z' = f_\xi(v)$; here we measure $f_\theta$. For scale: two identical batches align perfectly, one
# point for every image has uniformity 0, and 256 random directions in 128 dimensions are close to the most uniform
# a batch can be.

# %%
torch.manual_seed(0)
model, teacher = raft.build(args)
v1, v2 = raft.two_views(x_train[:256], args)
with torch.no_grad():
    z1, z2, f1, f2, z_prime1, z_prime2 = raft.forward_views(model, teacher, v1, v2, args)
for value, what in [
        (raft.align_loss(f1, f2), "L_align(f_θ): the two views of each image, random f_θ"),
        (raft.align_loss(f1, f1), "L_align(f_θ): view 1 against itself"),
        (raft.align_loss(f1, f2.roll(1, 0)), "L_align(f_θ): view 1 against ANOTHER image's view 2"),
        (raft.uniform_loss(f1), "L_uniform(f_θ): random f_θ"),
        (raft.uniform_loss(f1[:1].repeat(256, 1)), "L_uniform: every image at one point (collapse)"),
        (raft.uniform_loss(torch.randn(256, 128)), "L_uniform: 256 random directions")]:
    print(f"{value.item():8.4f}  {what}")

# %% [markdown]
# ## Sec. 3: BYOL, the mean teacher and the predictor
#
# BYOL trains an online network $f_\theta$ (encoder and projector) and a predictor $q_w$ so that the prediction for
# one view matches what a *mean teacher* $f_\xi$ outputs for the other view:
#
# $$\mathcal{L}_{\text{BYOL}} = \mathbb{E}_{(x, t_1, t_2)} \big\lVert \hat q_w(f_\theta(t_1(x))) -
# \hat f_\xi(t_2(x)) \big\rVert_2^2 \tag{3}$$
#
# symmetrised over the two views as BYOL does, in `byol_loss`:

# %%
show(raft.byol_loss)

# %% [markdown]
# The teacher is never trained by gradients. After each step it moves a little towards the online network (encoder
# and projector, not the predictor), an exponential moving average with $\tau = 0.996$ (`--tau`):
#
# $$\xi \leftarrow \tau\, \xi + (1 - \tau)\, \theta \tag{4}$$
#
# `build_teacher` makes $f_\xi$ (its own random draw, as the authors' code and DeepMind's BYOL) and `ema_update`
# applies eq. 4:

# %%
show(raft.build_teacher, raft.ema_update)

# %% [markdown]
# Checked: one `ema_update` on the networks above moves every teacher parameter to $\tau \xi + (1 - \tau)\theta$,
# computed here by hand, and the teacher has no parameter that a gradient could reach.

# %%
tau = args.tau
xi_before = [p.clone() for p in teacher.parameters()]
theta = [*model.encoder.parameters(), *model.projector.parameters()]
raft.ema_update(teacher, model, tau)
gap = max((xi - (tau * old + (1 - tau) * th)).abs().max().item()
          for xi, old, th in zip(teacher.parameters(), xi_before, theta))
print(f"τ = {tau}: largest |ξ_new - (τ ξ + (1 - τ) θ)| over {len(theta)} tensors: {gap:.1e}")
print(f"teacher parameters that require a gradient: {sum(p.requires_grad for p in teacher.parameters())}")

# %% [markdown]
# The predictor $q_w$ exists only on the online side. App. C's is an MLP (the projector's shape without
# BatchNorm); Table 1 also tries a linear $q_w(f) = Wf$ (LP), $W$ starting at $I$ (LPI), and no predictor at all
# (NP, $q_w = I$):

# %%
show(raft.predictor)

# %% [markdown]
# ### The collapse without a predictor, live
#
# The paper's Sec. 3: without its predictor BYOL collapses (every image maps to nearly one point, L_align goes to 0
# and so does L_uniform), while with the predictor the representation stays spread. `raft.py` watches this with
# `spread`: about 1 for outputs spread over the sphere, 0 for one point; it prints a `collapse:` line the first
# epoch the spread falls below `COLLAPSE_SPREAD`.

# %%
show(raft.spread)

# %% [markdown]
# Two runs of BYOL, with the MLP predictor and without one, each as `raft.py` runs it (`run`: seed, `build`,
# `train`, then the probe `linear_eval`), at the demo's scale for a few epochs. The rows are `raft.py`'s own log.

# %%
runs, out = {}, tempfile.mkdtemp()
for label, predictor in [("BYOL, MLP predictor", "mlp"), ("BYOL-NP, no predictor", "none")]:
    run_args = raft.get_args([*DEMO, "--data-dir", DATA_DIR, "--loss", "byol", "--predictor", predictor,
                              "--out", os.path.join(out, f"byol-{predictor}.json")])
    print(f"== {label}")
    torch.manual_seed(run_args.seed)
    run_model, run_teacher = raft.build(run_args)
    history, seconds = raft.train(run_model, run_teacher, data, run_args)
    accuracy = raft.linear_eval(run_model.encoder, data, run_args)
    runs[label] = dict(args=run_args, model=run_model, teacher=run_teacher, history=history, probe=accuracy)

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for label, run in runs.items():
    epochs = [row["epoch"] for row in run["history"]]
    axes[0].plot(epochs, [row["spread"] for row in run["history"]], "o-", label=label)
    axes[1].plot(epochs, [row["uniform"] for row in run["history"]], "o-", label=label)
axes[0].axhline(raft.COLLAPSE_SPREAD, color="k", ls="--", lw=0.8)
axes[0].set(title=f"spread of f_θ (0: one point; dashed: {raft.COLLAPSE_SPREAD})", xlabel="epoch", ylim=(0, None))
axes[1].axhline(0, color="0.6", lw=0.6)  # inside the frame, so that the collapsed curve shows
axes[1].set(title="L_uniform(f_θ), eq. 2 (0: one point)", xlabel="epoch")
axes[0].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Sec. 4: BYOL′, Theorem 4.1 and RAFT
#
# The paper splits BYOL's target into two pieces: the alignment of the two views' predictions, and how close the
# online prediction of a view is to the teacher's output for *the same* view, the cross-model loss
#
# $$\mathcal{L}_{\text{cross-model}}(f, g) = \mathbb{E}_{x} \big\lVert \hat f(x) - \hat g(x) \big\rVert_2^2
# \tag{5}$$
#
# symmetrised over the two views in `cross_model_loss`:

# %%
show(raft.cross_model_loss)

# %% [markdown]
# BYOL′ runs *towards* the teacher, RAFT runs *away* from it ($\alpha, \beta > 0$, `--alpha`, `--beta`):
#
# $$\mathcal{L}_{\text{BYOL}'} = \alpha\, \mathcal{L}_{\text{align}}(q_w \circ f_\theta) + \beta\,
# \mathcal{L}_{\text{cross-model}}(q_w \circ f_\theta, f_\xi) \tag{6}$$
#
# $$\mathcal{L}_{\text{RAFT}} = \alpha\, \mathcal{L}_{\text{align}}(q_w \circ f_\theta) - \beta\,
# \mathcal{L}_{\text{cross-model}}(q_w \circ f_\theta, f_\xi) \tag{8}$$
#
# Both, and BYOL's eq. 3, are `objective`, the loss that `--loss` selects:

# %%
show(raft.objective)

# %% [markdown]
# **Theorem 4.1** says BYOL′ bounds BYOL from above: for any $\alpha, \beta > 0$
#
# $$\mathcal{L}_{\text{BYOL}} \le \Big(\frac{1}{\alpha} + \frac{1}{\beta}\Big)\, \mathcal{L}_{\text{BYOL}'}
# = \Big(1 + \frac{1}{\lambda}\Big) \big(\mathcal{L}_{\text{align}} + \lambda\, \mathcal{L}_{\text{cross-model}}\big),
# \qquad \lambda = \beta / \alpha \tag{7}$$
#
# It holds per sample: with $a = \hat z_1 - \hat z_2$ and $b = \hat z_2 - \hat z'_2$,
# $\lVert a + b \rVert^2 \le (1 + 1/\lambda) \lVert a \rVert^2 + (1 + \lambda) \lVert b \rVert^2$. `raft.py` computes no
# bound; every run logs L_BYOL and L_cross-model (`theorem_metrics`) so that the bound can be read off its history.
# Here it is checked on real outputs: the BYOL run just trained (with its MLP predictor and its teacher), on 512
# training images, two fresh views each. The right-hand side is `objective` with `--loss byol-prime` and each
# $(\alpha, \beta)$. How tight is it? The bound is smallest at $\lambda^* = \sqrt{\mathcal{L}_{\text{align}} /
# \mathcal{L}_{\text{cross-model}}}$, where it equals $(\sqrt{\mathcal{L}_{\text{align}}} +
# \sqrt{\mathcal{L}_{\text{cross-model}}})^2$.

# %%
byol = runs["BYOL, MLP predictor"]
torch.manual_seed(1)
v1, v2 = raft.two_views(x_train[:512], args)
with torch.no_grad():
    z1, z2, f1, f2, z_prime1, z_prime2 = raft.forward_views(byol["model"], byol["teacher"], v1, v2, args)
l_byol = raft.byol_loss(z1, z2, z_prime1, z_prime2).item()
l_align, l_cross = raft.align_loss(z1, z2).item(), raft.cross_model_loss(z1, z2, z_prime1, z_prime2).item()
print(f"L_BYOL {l_byol:.4f}   L_align {l_align:.4f}   L_cross-model {l_cross:.4f}")
for lam, note in [(0.1, ""), (1.0, ""), (10.0, ""), ((l_align / l_cross) ** 0.5, "  <- λ*, the tightest")]:
    prime = types.SimpleNamespace(loss="byol-prime", alpha=1.0, beta=lam, tangent=False)  # α = 1, β = λ
    bound = (1 + 1 / lam) * raft.objective(z1, z2, z_prime1, z_prime2, prime).item()
    per_sample = raft.sq_dist(z1, z_prime2) / ((1 + 1 / lam) * raft.sq_dist(z1, z2)
                                                + (1 + lam) * raft.sq_dist(z2, z_prime2))
    print(f"λ = {lam:6.3f}: bound {bound:7.4f}, L_BYOL / bound {l_byol / bound:.3f}; "
          f"per sample, the largest ratio {per_sample.max().item():.3f}{note}")

# %% [markdown]
# On the same outputs the three objectives ($\alpha = \beta = 1$): RAFT's is BYOL′'s with the teacher term's sign
# flipped, so it can go below 0 (down to $-4\beta$).

# %%
for loss in ["byol", "byol-prime", "raft"]:
    which = types.SimpleNamespace(loss=loss, alpha=1.0, beta=1.0, tangent=False)
    print(f"{loss:>10}: {raft.objective(z1, z2, z_prime1, z_prime2, which).item():8.4f}")

# %% [markdown]
# ## Sec. 5: Theorem 5.1 and the Tan variant
#
# **Theorem 5.1** (the paper): BYOL′ and RAFT follow one-to-one corresponding trajectories, when the predictor is
# linear and only the tangential gradient is kept. This project generalises it. On the sphere
# $\lVert -\hat z - \hat z' \rVert^2 = 4 - \lVert \hat z - \hat z' \rVert^2$, and the alignment term does not change
# when both predictions change sign. So if $\tilde w$ is $w$ with the predictor's *last linear layer* negated
# (then $q_{\tilde w} = -q_w$),
#
# $$\mathcal{L}_{\text{RAFT}}(\theta, \tilde w) = \mathcal{L}_{\text{BYOL}'}(\theta, w) - 4\beta ,$$
#
# the two losses have the same gradient in $\theta$ and in the predictor's hidden layers and opposite gradients in
# its last layer; Adam's update is odd in the gradient, and the teacher follows $\theta$ alone. From mirrored
# initialisations RAFT therefore follows BYOL′ step for step, for any predictor whose last layer is linear, with or
# without the tangential gradient. `mirror_predictor` negates the layer; `build_model` applies it for
# `--mirror-init`, after drawing everything else, so that a mirrored pair shares its encoder, projector and
# teacher:

# %%
show(raft.mirror_predictor, raft.build_model)

# %% [markdown]
# Checked: BYOL′ and mirrored RAFT (MLP predictor, β = 1) from one seed, on 32 real images at 16 px, a few Adam
# steps of `train_step` each. In float64, since the two losses round differently in float32 and training amplifies
# that noise (`--mirror-init` in float32 agrees in distribution, not bit for bit). `train_step` makes its own views
# in float32 from the uint8 images, so here its `two_views` is wrapped to return them in float64. The control:
# RAFT from the same initialisation *without* the mirror.

# %%
flat = lambda tensors: torch.cat([t.detach().flatten() for t in tensors])
online = lambda m: flat([*m.encoder.parameters(), *m.projector.parameters()])  # θ: encoder and projector


def trajectory(*flags, steps=8):
    """`steps` Adam steps of raft.train_step in float64 from seed 0, the same images and views in every run."""
    step_args = raft.get_args(["--encoder", "small", "--image-size", "16", "--batch-size", "32", "--device", "cpu",
                               "--predictor", "mlp", "--tau", "0.9", *flags])  # τ 0.9: the teacher moves too
    torch.manual_seed(0)
    m = raft.build_model(step_args)
    t, m = raft.build_teacher(m, step_args).double(), m.double()
    opt, start = raft.make_optimizer(m, step_args), online(m)
    views = raft.two_views
    torch.manual_seed(1)
    with mock.patch.object(raft, "two_views", lambda x, a: [v.double() for v in views(x, a)]):
        losses = [raft.train_step(m, t, opt, x_train[:32], step_args.tau, step_args)[0].item() for _ in range(steps)]
    return dict(theta=online(m), xi=flat(t.parameters()), w_last=flat(m.predictor[-1].parameters()),
                losses=losses, moved=(online(m) - start).norm())


bp = trajectory("--loss", "byol-prime")
for name, rf in [("RAFT, mirrored", trajectory("--loss", "raft", "--mirror-init")),
                 ("RAFT, not mirrored (control)", trajectory("--loss", "raft"))]:
    print(f"{name}\n  (L_RAFT + 4β) - L_BYOL′, step by step:",
          " ".join(f"{r + 4 - b:+.0e}" for r, b in zip(rf["losses"], bp["losses"])))
    print(f"  after {len(rf['losses'])} steps, relative to how far θ_BYOL′ moved: "
          f"|θ_RAFT - θ_BYOL′| {(rf['theta'] - bp['theta']).norm() / bp['moved']:.0e}, "
          f"|ξ_RAFT - ξ_BYOL′| {(rf['xi'] - bp['xi']).norm() / bp['moved']:.0e}")
    print(f"  the predictor's last layer: |w_RAFT + w_BYOL′| / |w_BYOL′| "
          f"{(rf['w_last'] + bp['w_last']).norm() / bp['w_last'].norm():.0e}")


# %% [markdown]
# **The Tan variant** (the remark after Theorem 5.1) keeps only the tangential part of the gradient, replacing
# $\lVert \hat z - \hat z' \rVert^2$ by $\lVert \hat z' - \lambda \hat z \rVert^2 / \lambda$ with
# $\lambda = \mathrm{sg}(\langle \hat z, \hat z' \rangle)$ (sg: stop gradient); in `raft.py` it is
# `sq_dist(..., tangent=True)`, `--tangent` (shown in Sec. 2). Since the normalisation $z \mapsto \hat z$ sits inside
# the autograd graph, its Jacobian already removes the radial part of the gradient: the Tan loss has another value
# but the same gradient with respect to the un-normalised $z$. Checked on the trained BYOL outputs of Sec. 4, in
# float64:

# %%
p1, p2 = z1.double().requires_grad_(), z2.double().requires_grad_()
t1, t2 = z_prime1.double(), z_prime2.double()
for loss in [raft.cross_model_loss, raft.byol_loss]:
    plain, tan = loss(p1, p2, t1, t2), loss(p1, p2, t1, t2, tangent=True)
    g_plain, g_tan = torch.cat(torch.autograd.grad(plain, [p1, p2])), torch.cat(torch.autograd.grad(tan, [p1, p2]))
    print(f"{loss.__name__:>16}: value {plain.item():.5f}, Tan {tan.item():.5f}; "
          f"gradient |g_Tan - g| / |g| = {((g_tan - g_plain).norm() / g_plain.norm()).item():.1e}")

# %% [markdown]
# ## App. C: the networks, the augmentation, the linear probe
#
# $f_\theta$ is an encoder followed by a projector (App. C calls the projector alone $g_\theta$); the teacher
# $f_\xi$ has the same architecture. The paper's encoder is ResNet18 without its classifier, on images resized
# from 32 to 96 px; this notebook, like the project's CPU runs, uses a small 4-layer CNN with the same 512-d output.

# %%
show(raft.resnet18, raft.small_cnn, raft.projector)

# %%
count = lambda net: f"{sum(p.numel() for p in net.parameters()):>12,}"
print(f"{count(raft.build_encoder('resnet18', 'imagenet'))}  encoder: ResNet18, ImageNet stem (the paper, 96 px)")
print(f"{count(raft.build_encoder('resnet18', 'cifar'))}  encoder: ResNet18, CIFAR stem (32 px)")
print(f"{count(raft.build_encoder('small'))}  encoder: the small CNN (this notebook)")
print(f"{count(raft.projector())}  projector 512 -> {raft.HIDDEN} -> {raft.PROJECTION}")
for kind in ["mlp", "mlp-bn", "linear", "none"]:
    print(f"{count(raft.predictor(kind))}  predictor q_w: {kind}")

# %% [markdown]
# **The augmentation** is the SimCLR / BYOL recipe: a random resized crop and a horizontal flip (`crop_flip`),
# colour jitter with probability 0.8 (`color_jitter`), grayscale with probability 0.2. `augment` draws one view per
# image, every image its own parameters, batched on the device; `two_views` draws two and normalises them
# (Algorithm 1, line 4).

# %%
show(raft.augment, raft.two_views)

# %%
torch.manual_seed(2)
shown = x_train[:8]
views = [raft.augment(shown, 32) for _ in range(2)]  # before normalisation, as float images in [0, 1]
fig, axes = plt.subplots(3, 8, figsize=(10, 4))
for row, (name, images) in enumerate([("image", shown.float() / 255), ("view t₁(x)", views[0]),
                                      ("view t₂(x)", views[1])]):
    for col, image in enumerate(images):
        axes[row, col].imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        axes[row, col].set_xticks([])
        axes[row, col].set_yticks([])
    axes[row, 0].set_ylabel(name)
fig.tight_layout()
plt.show()

# %% [markdown]
# **The linear probe** (App. C): the encoder is frozen (its output, not the projector's), and a linear classifier
# is trained on its features of the training images with Adam for 100 epochs, then tested on the test images.
# (`raft.py`'s default, as the authors' code, fits it on new crops and flips every epoch; the demo scale here uses
# the features of the plain images, `--probe features`.) The two runs of Sec. 3 were probed this way; for
# reference, the Rand-Baseline of Table 1 is the same probe on an untrained encoder.

# %%
show(raft.linear_eval)

# %%
torch.manual_seed(0)
rand_baseline = raft.linear_eval(raft.build_encoder("small"), data, args)
for label, accuracy in [*((label, run["probe"]) for label, run in runs.items()), ("Rand-Baseline", rand_baseline)]:
    print(f"{label:>22}: test accuracy {accuracy[-1]:.2f} % after {len(accuracy)} probe epochs")

# %% [markdown]
# ## Algorithm 1: one training step
#
# App. E's Algorithm 1, lines 4-12, for a batch of $N$ images (lines 1-3 are the loop over steps $k$ and the batch
# $B$ in `train`):
#
# | line | Algorithm 1 | `train_step` (lines 4-8: `views_and_loss`) |
# |---|---|---|
# | 4 | $t_1 \sim \mathcal{T}_1$, $t_2 \sim \mathcal{T}_2$ | `v1, v2 = two_views(x, args)` |
# | 5 | $z_1 = q_w(f_\theta(t_1(x_i)))$, $z_2 = q_w(f_\theta(t_2(x_i)))$ | `forward_views` → `z1, z2` |
# | 6 | $z'_1 = f_\xi(t_1(x_i))$, $z'_2 = f_\xi(t_2(x_i))$ | `forward_views` → `z_prime1, z_prime2` |
# | 7 | $l^{\text{align}}_i = \lVert \hat z_1 - \hat z_2 \rVert^2$ | `objective` → `align_loss` |
# | 8 | $l^{\text{cross}}_i = -\tfrac{1}{2}(\lVert \hat z_1 - \hat z'_1 \rVert^2 + \lVert \hat z_2 - \hat z'_2 \rVert^2)$ | `objective` → `cross_model_loss`, subtracted |
# | 10 | $\delta\theta = \frac{1}{N} \sum_i \nabla_{\theta, w} (\alpha\, l^{\text{align}}_i + \beta\, l^{\text{cross}}_i)$ | `loss.backward()` |
# | 11 | $\theta, w \leftarrow \text{optimizer}(\theta, w, \delta\theta)$ | `opt.step()` (Adam) |
# | 12 | $\xi \leftarrow \tau_k \xi + (1 - \tau_k) \theta$ | `ema_update` (eq. 4) |
#
# `views_and_loss` (lines 4-8) returns the loss and the step's metrics (`step_metrics`: the loss, L_align,
# L_uniform, L_cross-model, L_BYOL, the spread) as one tensor that `train` sums over the epoch; the Rand-Baseline's
# pass runs the same function without learning. `forward_views` and `forward` carry lines 5-6; `forward` also
# holds what serves speed on a GPU (bf16 autocast for the encoders, float32 for the projector and predictor, the
# channels-last layout), which changes no number on a CPU.

# %%
show(raft.train_step, raft.views_and_loss, raft.forward_views, raft.forward)

# %% [markdown]
# Checked: one RAFT step on a batch of 64 real images. Adam moves θ, then the teacher moves by eq. 4 towards the
# *updated* θ (line 12 after line 11); the step's metrics, as `train` sums them:

# %%
step_args = raft.get_args([*DEMO, "--data-dir", DATA_DIR, "--loss", "raft"])
torch.manual_seed(0)
model, teacher = raft.build(step_args)
opt = raft.make_optimizer(model, step_args)
xi_before = [p.clone() for p in teacher.parameters()]
metrics = raft.train_step(model, teacher, opt, x_train[:64], step_args.tau, step_args)
theta = [*model.encoder.parameters(), *model.projector.parameters()]
gap = max((xi - (step_args.tau * old + (1 - step_args.tau) * th)).abs().max().item()
          for xi, old, th in zip(teacher.parameters(), xi_before, theta))
print(f"largest |ξ_new - (τ ξ + (1 - τ) θ_new)|: {gap:.1e}")
print("  ".join(f"{name} {value:.4f}" for name, value in zip(raft.METRICS, metrics.tolist())))

# %% [markdown]
# ## What the runs found
#
# The project ran every row of Tables 1 and 3 at a small scale on a CPU (the small encoder, 2,560 training images,
# 7 epochs, 2 seeds; `PROFILE=cpu bash run_all.sh`), and `tools/tables.py` made the tables, the figures and a list
# of the paper's claims, each with a verdict computed by one rule from the results files. What follows is read from
# `results/cpu/` as committed, not copied into this page; [results/cpu/README.md](../results/cpu/README.md) tells
# how the runs were made.
#
# What this scale can decide and what it cannot. The collapse without a predictor shows, here as in the live run
# of Sec. 3. The identities (Theorem 4.1's bound, the mirror of Theorem 5.1, the Tan variant's gradient) hold at any
# scale and were checked above. The paper's headline ordering of the accuracies, RAFT ≥ BYOL′ ≥ BYOL, cannot be
# decided at this scale: 7 epochs of a small encoder on 2,560 images stay far below the paper's accuracies, and two
# seeds a row cannot separate rows as close as these (the claims "RAFT above BYOL" and "RAFT above BYOL′" below
# give the rule's verdict). Only the paper's scale (`bash run_all.sh`: ResNet18, 300 epochs, 3 seeds) can speak to
# it.

# %%
display(Markdown(open("results/cpu/table1.md").read()))

# %%
display(Markdown(open("results/cpu/table3.md").read()))

# %% [markdown]
# The claims ([results/cpu/claims.md](../results/cpu/claims.md) holds the rule, the metrics and every seed's
# value); here each claim with its verdict:

# %%
claims = [row.strip("| ").split(" | ") for row in open("results/cpu/claims.md").read().splitlines()
          if row.startswith("| ") and not row.startswith("| # ")]
display(Markdown("\n".join(["| # | the paper's claim (where) | verdict at this scale |", "|---|---|---|",
                            *(f"| {c[0]} | {c[1]} | {c[-1]} |" for c in claims)])))
verdicts = [c[-1].split("**")[1] for c in claims]
print(", ".join(f"{verdicts.count(v)} {v}" for v in sorted(set(verdicts))))

# %% [markdown]
# The figures `tools/tables.py` drew from these runs (Figure 3: f_θ's outputs on the circle; Figure 4: BYOL with a
# linear predictor, from $W$ random and from $W = I$; Figure 5: RAFT and BYOL′ across β), shown smaller than the
# files in `results/cpu/`:

# %%
for name in ["figure3", "figure4", "figure5"]:
    image = Image.open(f"results/cpu/{name}.png")
    image.thumbnail((1000, 1600))  # as wide as the page
    buffer = io.BytesIO()
    image.convert("RGB").quantize(256).save(buffer, "png", optimize=True)  # a palette: a third of the bytes
    display({"image/png": base64.b64encode(buffer.getvalue()).decode(), "text/plain": f"results/cpu/{name}.png"},
            raw=True)

# %%
used = resource.getrusage(resource.RUSAGE_SELF)
cpu_seconds = used.ru_utime + used.ru_stime - cpu_started.ru_utime - cpu_started.ru_stime
print(f"this notebook ran in {time.perf_counter() - started:.0f} s ({cpu_seconds:.0f} s of CPU time) on "
      f"{raft.describe_device('cpu')}, load average {os.getloadavg()[0]:.1f} at the end")
