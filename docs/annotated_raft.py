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
# read in the paper's order beside the code of `raft.py` that computes each step. Every boxed listing is `raft.py`'s
# own text, read from the file when the notebook runs (`inspect.getsource`), never a copy. Each claim that the code
# can be held to is checked live on CIFAR-10 images, beside a **control**: the same check on a named wrong variant,
# which it rejects. A check that fails stops the notebook, and with it the build.

# %% [markdown]
# **Contents**
#
# - [The idea in one picture](#idea)
# - [Sec. 2: alignment and uniformity (eqs. 1, 2)](#sec2)
# - [Sec. 3: BYOL, the mean teacher, the predictor (eqs. 3, 4); the collapse, live](#sec3)
# - [Sec. 4: the cross-model loss, BYOL′, Theorem 4.1, RAFT (eqs. 5-8)](#sec4)
# - [Sec. 5: Theorem 5.1, RAFT ≡ BYOL′, the Tan variant](#sec5)
# - [App. C: the networks, the views, the linear probe](#appc)
# - [Algorithm 1: one training step](#alg1)
# - [What the runs found](#results)
# - [Every check, in one table](#checks)

# %% [markdown]
# **Run it yourself.** From the repository's root:
#
#     python -m pip install -r requirements.txt -r requirements-docs.txt
#     RAFT_DATA_DIR=data/cifar10 jupyter lab docs/annotated_raft.ipynb
#
# `RAFT_DATA_DIR` is `raft.py`'s `--data-dir`: a folder `DIR/{train,test}/<class>/<image>`, or by default `data/`,
# where torchvision downloads CIFAR-10. Run the cells top to bottom; the last one prints how long they took. To
# rebuild this page with its outputs: `RAFT_DATA_DIR=data/cifar10 python tools/build_notebook.py` (its source is
# `docs/annotated_raft.py`). The choices the paper leaves open are in [docs/choices.md](choices.md).

# %%
import base64
import contextlib
import copy
import inspect
import io
import math
import os
import re
import resource
import sys
import tempfile
import textwrap
import time
import types
from unittest import mock

REPO = next(os.path.abspath(p) for p in (".", "..") if os.path.exists(os.path.join(p, "raft.py")))
os.chdir(REPO)  # the notebook lives in docs/; raft.py and results/ are one folder up
sys.path[:0] = [REPO, os.path.join(REPO, "tools")]

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from IPython.display import Markdown, display  # noqa: E402
from pygments import highlight  # noqa: E402
from pygments.formatters import HtmlFormatter  # noqa: E402
from pygments.lexers import PythonLexer  # noqa: E402

import raft  # noqa: E402
import tables  # noqa: E402  (tools/tables.py: the results files read as the repository's tables read them)

plt.rcParams.update({"figure.dpi": 100, "font.size": 12})  # 6.6 in wide: a page, with text as large as its
started, cpu_started = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)

# %% [markdown]
# The helpers. `show` displays a function of `raft.py`, its text read from the file. `check` makes a live check:
# it stops the notebook unless `raft.py`'s value lies within a margin of the expected one and its control's
# outside it. `checked` shows the checks made since its last call as a table, `raft.py`'s value beside the
# control's.

# %%
BOX = ("font-family: Menlo, Consolas, 'DejaVu Sans Mono', monospace; font-size: 12px; line-height: 1.35; "
       "background: #f7f7f7; border: 1px solid #d0d0d0; border-radius: 3px; padding: 6px 8px; "
       "margin: 2px 0 10px; "
       "white-space: pre; overflow-x: auto; text-align: left")


def show(*functions):
    """raft.py's own text of each function, read from raft.py as it is now: highlighted in a box (HTML), or as
    Markdown or plain text where HTML is not shown."""
    for fn in functions:
        lines, first = inspect.getsourcelines(fn)
        source = "".join(lines)
        code = highlight(source, PythonLexer(), HtmlFormatter(noclasses=True, nowrap=True))
        title = f"<div><code>raft.py</code>, line {first}:</div>"
        display({"text/html": f"{title}<pre style=\"{BOX}\">{code}</pre>",
                 "text/markdown": f"`raft.py`, line {first}:\n```python\n{source}```", "text/plain": source},
                raw=True)


CHECKS = []  # every check made: (check, raft.py's value, expected, margin, the control, its value)


def num(x):
    return "0" if x == 0 else f"{x:.1e}" if abs(x) < 1e-3 else f"{x:.5f}"


def powers(text):
    """1.5e-08 -> 1.5×10⁻⁸ in a table: a browser may break a line after the hyphen of 1.5e-08, not in this."""
    sup = str.maketrans("-+0123456789", "⁻⁺⁰¹²³⁴⁵⁶⁷⁸⁹")
    return re.sub(r"(\d)e([+-]?)0*(\d+)", lambda m: f"{m[1]}×10{(m[2].replace('+', '') + m[3]).translate(sup)}",
                  text)


def check(name, value, expected, margin, control_name, control):
    """A live check: raft.py's value must lie within `margin` of the expected one, and the control's (the
    same check on a named wrong variant) outside it, so that the check can fail. Either failing stops the
    notebook."""
    value, expected, control = (float(v.detach() if torch.is_tensor(v) else v)
                                for v in (value, expected, control))
    assert abs(value - expected) <= margin, f"{name}: raft.py's value is off by {abs(value - expected):.1e}"
    assert abs(control - expected) > margin, f"{name}: the control passes too, so this check shows nothing"
    CHECKS.append((name, value, expected, margin, control_name, control))


def checks_table(rows):
    return powers("\n".join(["| ✓ check | raft.py | expected | ✗ control: the wrong variant | its value |",
                      "|:---|---|---|:---|---|",
                      *(f"| {tables.cell(name)} | {num(value)} | {num(expected)} ± {margin:.0e} | {control} "
                        f"| {num(wrong)} |" for name, value, expected, margin, control, wrong in rows)]))


def checked():
    """The checks made since the last call, as a table: each passed, and its control failed."""
    display(Markdown(checks_table(CHECKS[checked.upto:])))
    checked.upto = len(CHECKS)


checked.upto = 0


def sq_dist_by_hand(a, b):
    """||â - b̂||² per row, as 2 - 2 cos(a, b), in float64: computed without raft.py."""
    return 2 - 2 * F.cosine_similarity(a.double(), b.double(), dim=-1)


# %% [markdown]
# <a id="idea"></a>
# ## The idea in one picture
#
# Two augmented views $t_1(x), t_2(x)$ of an image go through the online network ($f_\theta$, encoder and
# projector, then the predictor $q_w$) to $z_1, z_2$, and through the mean teacher $f_\xi$, an average of past
# online networks, to $z'_1, z'_2$. On the unit sphere, RAFT pulls the two views' predictions together (alignment)
# and pushes each away from the teacher's output for the same view (the cross-model term, subtracted): the
# paper's Figure 2(a), redrawn.

# %%
def draw_idea():
    """Figure 2(a): the networks (left); on the unit circle, where each term moves the online outputs."""
    fig, (net, circle) = plt.subplots(1, 2, figsize=(6.6, 3.0), gridspec_kw=dict(width_ratios=[1.15, 1]))
    boxes = {"views\nt₁(x), t₂(x)": (0.14, 0.5), "online\nq_w ∘ f_θ": (0.6, 0.8),
             "teacher f_ξ\n(EMA of θ)": (0.6, 0.2)}
    for text, xy in boxes.items():
        net.text(*xy, text, ha="center", va="center", bbox=dict(boxstyle="round", fc="#eef2f8", ec="0.4"))
    for start, end in [((0.3, 0.6), (0.43, 0.76)), ((0.3, 0.4), (0.43, 0.24)), ((0.76, 0.8), (0.85, 0.8)),
                       ((0.78, 0.2), (0.85, 0.2))]:
        net.annotate("", end, start, arrowprops=dict(arrowstyle="->", color="0.3"))
    net.text(0.94, 0.8, "z₁, z₂", ha="center", va="center", color="tab:blue")
    net.text(0.94, 0.2, "z′₁, z′₂", ha="center", va="center", color="0.35")
    net.set(xlim=(0, 1), ylim=(0, 1))
    at = lambda degrees, r=1.0: (r * math.cos(math.radians(degrees)), r * math.sin(math.radians(degrees)))
    circle.add_patch(plt.Circle((0, 0), 1, fill=False, color="0.7"))
    filled, hollow = ("tab:blue", "tab:blue"), ("0.35", "white")  # online, teacher
    for name, degrees, (colour, face) in [("z₁", 135, filled), ("z₂", 45, filled), ("z′₁", 108, hollow),
                                          ("z′₂", 72, hollow)]:
        circle.plot(*at(degrees), "o", color=colour, mfc=face, ms=10, zorder=3)
        circle.text(*at(degrees, 1.2), name, ha="center", va="center")
    arrows = [(135, 100, 0.0, "tab:green"), (45, 80, 0.0, "tab:green"),  # align: the two views together
              (135, 165, 0.2, "tab:red"), (45, 15, -0.2, "tab:red")]  # cross-model, -β: away from z′
    for start, end, bend, colour in arrows:
        circle.annotate("", at(end, 0.97 if colour == "tab:red" else 0.8), at(start), arrowprops=dict(
            arrowstyle="->", color=colour, lw=2.5, shrinkA=7, connectionstyle=f"arc3,rad={bend}"))
    circle.text(0, 0.3, "align: pulls\nz₁, z₂ together", ha="center", va="center", color="tab:green")
    circle.text(0, -0.4, "cross-model, −β:\npushes each z from\nthe teacher's z′", ha="center",
                va="center", color="tab:red")
    circle.set(xlim=(-1.3, 1.3), ylim=(-1.1, 1.4), aspect="equal")
    for ax in (net, circle):
        ax.axis("off")
    fig.tight_layout()
    plt.show()


draw_idea()

# %% [markdown]
# The data, loaded as every run of `raft.py` loads it (`load_data`): the whole of it as one uint8 tensor. The
# notebook trains at the scale of the project's five-minute demo (`PROFILE=demo bash run_all.sh`): the small
# encoder, 16 px views, the first 2,560 training images, batch 64.

# %%
DATA_DIR = os.environ.get("RAFT_DATA_DIR", raft.parser().get_default("data_dir"))  # raft.py's --data-dir
EPOCHS = 6
in_folder = sum(len(files) for _, _, files in os.walk(os.path.join(DATA_DIR, "train")))  # 0: CIFAR-10's own files
SUBSET = min(2560, in_folder) if in_folder else 2560  # raft.py refuses a subset larger than the data
DEMO = ["--encoder", "small", "--image-size", "16", "--batch-size", "64", "--train-subset", str(SUBSET),
        "--epochs", str(EPOCHS), "--probe", "features", "--knn-every", "0", "--device", "cpu"]
args = raft.get_args([*DEMO, "--data-dir", DATA_DIR])
data = raft.load_data(args)
(x_train, y_train), (x_test, y_test) = data["train"], data["test"]
print(f"training images {tuple(x_train.shape)}, {x_train.dtype}\ntest images {tuple(x_test.shape)}")

# %% [markdown]
# <a id="sec2"></a>
# ## Sec. 2: alignment and uniformity
#
# Every representation is l2-normalised before a loss sees it: $\hat z = z / \lVert z \rVert_2$, a point on the
# unit sphere. Wang and Isola's two measures of a representation $f$, for two augmented views $x_1, x_2$ of one
# image and two different images $x, y$:
#
# $$\mathcal{L}_{\text{align}}(f) = \mathbb{E}_{(x_1, x_2)} \big\lVert \hat f(x_1) - \hat f(x_2) \big\rVert_2^2
# \tag{1}$$
#
# $$\mathcal{L}_{\text{uniform}}(f) = \log \mathbb{E}_{(x, y)}\, e^{-t \lVert \hat f(x) - \hat f(y) \rVert_2^2},
# \qquad t = 2 \tag{2}$$
#
# Alignment is small when the two views of an image land together; uniformity is negative when different images
# spread over the sphere, and 0 when all land on one point: the collapse. `sq_dist` is the squared distance of
# normalised rows that every loss of the paper is built from.

# %%
show(raft.sq_dist, raft.align_loss, raft.uniform_loss)

# %% [markdown]
# Checked on a real batch: 256 training images, two augmented views each (`two_views`, App. C), through a freshly
# initialised $f_\theta$ (`build`; `forward_views` returns, for both views, $z = q_w(f_\theta(v))$,
# $f = f_\theta(v)$ and the teacher's $z' = f_\xi(v)$). The expected values are computed here without `raft.py`
# ($\lVert \hat a - \hat b \rVert^2 = 2 - 2\cos(a, b)$). Untrained, the two views of an image are not much closer
# than two images are: the control differs from the expected value, not necessarily in the direction training
# will bring.

# %%
def uniform_by_hand(f, t=2.0):
    """eq. 2 over every pair of different rows, in float64, without raft.py."""
    pairs = sq_dist_by_hand(f[:, None], f[None])[~torch.eye(len(f), dtype=torch.bool)]
    return torch.exp(-t * pairs).mean().log()


torch.manual_seed(0)
model, teacher = raft.build(args)
v1, v2 = raft.two_views(x_train[:256], args)
with torch.no_grad():
    z1, z2, f1, f2, z_prime1, z_prime2 = raft.forward_views(model, teacher, v1, v2, args)
collapsed = f1[:1].repeat(256, 1)  # every image at one point
check("eq. 1, L_align(f_θ), the two views",  # the check; raft.py, expected, margin; the control
      raft.align_loss(f1, f2), sq_dist_by_hand(f1, f2).mean(), 1e-5,
      "view 1 against another image's view 2", raft.align_loss(f1, f2.roll(1, 0)))
check("eq. 2, L_uniform(f_θ), spread out",
      raft.uniform_loss(f1), uniform_by_hand(f1), 1e-5,
      "the same images collapsed to one point", raft.uniform_loss(collapsed))
check("eq. 2, L_uniform, collapsed",
      raft.uniform_loss(collapsed), 0.0, 1e-5,
      "E e^(-t d²) without its log", raft.uniform_loss(collapsed).exp())
checked()

# %% [markdown]
# <a id="sec3"></a>
# ## Sec. 3: BYOL, the mean teacher and the predictor
#
# BYOL trains an online network $f_\theta$ (encoder and projector) and a predictor $q_w$ so that the prediction for
# one view matches what a *mean teacher* $f_\xi$ outputs for the **other** view:
#
# $$\mathcal{L}_{\text{BYOL}} = \mathbb{E}_{(x, t_1, t_2)} \big\lVert \hat q_w(f_\theta(t_1(x))) -
# \hat f_\xi(t_2(x)) \big\rVert_2^2 \tag{3}$$
#
# symmetrised over the two views as BYOL does, in `byol_loss` (checked with eq. 5 in Sec. 4, where the pairing of
# views is what tells the two apart):

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
# Checked: one `ema_update` on the networks above, beside the same update with $\tau$ and $1 - \tau$ swapped (the
# control), each on a copy of the teacher, against eq. 4 computed here by hand.

# %%
tau = args.tau
theta = [*model.encoder.parameters(), *model.projector.parameters()]
xi_expected = [tau * xi + (1 - tau) * th for xi, th in zip(teacher.parameters(), theta)]


def ema_gap(tau_used):
    """Largest |ξ_new - (τ ξ + (1 - τ) θ)| after raft.ema_update with tau_used, on a teacher's copy."""
    moved = copy.deepcopy(teacher)
    raft.ema_update(moved, model, tau_used)
    return max((new - want).abs().max().item() for new, want in zip(moved.parameters(), xi_expected))


check(f"eq. 4, largest |ξ_new - (τξ + (1 - τ)θ)|, τ = {tau}",
      ema_gap(tau), 0.0, 1e-6,
      "τ and 1 - τ swapped", ema_gap(1 - tau))
checked()
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
# Sec. 3 of the paper: without its predictor BYOL collapses (every image maps to nearly one point: L_align and
# L_uniform go to 0); with it, it does not. `raft.py` watches this with `spread`, about 1 for outputs spread over
# the sphere and 0 for one point, and prints a `collapse:` line the first epoch it falls below `COLLAPSE_SPREAD`.

# %%
show(raft.spread)

# %% [markdown]
# Two runs of BYOL, with the MLP predictor and without one, each as `raft.py`'s `run` makes them (seed, `build`,
# `train`, then the probe `linear_eval`), at the demo's scale. Printed: the columns of `raft.py`'s log that matter
# here, from the history `train` returns, and its `collapse:` line where it prints one.

# %%
def train_quietly(run_args):
    """raft.train on the notebook's data, its log set aside: the history, and the log's collapse line."""
    torch.manual_seed(run_args.seed)
    run_model, run_teacher = raft.build(run_args)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        history, _ = raft.train(run_model, run_teacher, data, run_args)
    notice = [line for line in log.getvalue().splitlines() if line.startswith("collapse:")]
    return run_model, run_teacher, history, notice


runs, out = {}, tempfile.mkdtemp()
for label, predictor in [("BYOL", "mlp"), ("BYOL-NP", "none")]:
    run_args = raft.get_args([*DEMO, "--data-dir", DATA_DIR, "--loss", "byol", "--predictor", predictor,
                              "--out", os.path.join(out, f"byol-{predictor}.json")])
    run_model, run_teacher, history, notice = train_quietly(run_args)
    probe = raft.linear_eval(run_model.encoder, data, run_args)
    runs[label] = dict(args=run_args, model=run_model, teacher=run_teacher, history=history, probe=probe)
    print(f"== {label}, predictor {predictor}\n   epoch     loss  L_align  L_uniform   spread")
    for row in history:
        print(f"{row['epoch']:8d} {row['loss']:8.4f} {row['align']:8.4f} {row['uniform']:10.4f} "
              f"{row['spread']:8.4f}")
    for line in notice:
        print(textwrap.fill(line, 68, subsequent_indent="    "))

# %%
fig, axes = plt.subplots(1, 2, figsize=(6.6, 3.0))
for label, run in runs.items():
    epochs = [row["epoch"] for row in run["history"]]
    axes[0].plot(epochs, [row["spread"] for row in run["history"]], "o-", label=label)
    axes[1].plot(epochs, [row["uniform"] for row in run["history"]], "o-", label=label)
axes[0].axhline(raft.COLLAPSE_SPREAD, color="k", ls="--", lw=0.8)
axes[0].set(title=f"spread of f_θ (dashed: {raft.COLLAPSE_SPREAD})", xlabel="epoch", ylim=(0, None))
axes[1].axhline(0, color="0.6", lw=0.6)  # inside the frame, so that the collapsed curve shows
axes[1].set(title="L_uniform(f_θ), eq. 2", xlabel="epoch")
axes[0].legend()
fig.tight_layout()
plt.show()


# %%
def first_below(history):
    """The first epoch whose spread is below COLLAPSE_SPREAD (raft.py's collapse line), or None."""
    return next((row["epoch"] for row in history if row["spread"] < raft.COLLAPSE_SPREAD), None)


def longest(run):
    """The results folder whose files of `run` log the spread over the most epochs: (folder, its files)."""
    found = [(folder, res) for folder in ("results/cpu-long", "results/cpu")
             for res in [tables.load_results(folder).get(run, [])]
             if res and "spread" in res[0]["history"][0]]
    return max(found, key=lambda f: len(f[1][0]["history"]), default=(None, []))


def spread_path(res):
    """Per seed: the spread at epoch 1, its lowest (and when), and at the last epoch."""
    path = []
    for r in seed_order(res):
        first, last = r["history"][0], r["history"][-1]
        low = min(r["history"], key=lambda row: row["spread"])
        turn = f"lowest {low['spread']:.2f} at epoch {low['epoch']}, " if low is not last else ""
        path.append(f"{first['spread']:.2f} at epoch 1, {turn}{last['spread']:.2f} at epoch {last['epoch']}")
    rises = all(min(r["history"], key=lambda row: row["spread"]) is not r["history"][-1] for r in res)
    return "; ".join(path) + (": it turns back up before the end" if rises else "")


seed_order = lambda res: sorted(res, key=lambda r: r["config"]["seed"])
mlp, none = runs["BYOL"]["history"], runs["BYOL-NP"]["history"]
k = first_below(none)
below = f"below {raft.COLLAPSE_SPREAD} from epoch {k}" if k else f"still above {raft.COLLAPSE_SPREAD}"
fell = 100 * (1 - mlp[-1]["spread"] / mlp[0]["spread"])
at_start, at_end = lambda h, key: f"{h[0][key]:.2f}", lambda h, key: f"{h[-1][key]:.3f}"
reading = [
    f"**Read off these runs.** Without a predictor the spread of f_θ goes from {at_start(none, 'spread')} to "
    f"{at_end(none, 'spread')} ({below}) and L_uniform from {at_start(none, 'uniform')} to "
    f"{at_end(none, 'uniform')}. "
    f"With the predictor the spread falls too, by {fell:.0f} % (from {at_start(mlp, 'spread')} to "
    f"{at_end(mlp, 'spread')}), and L_uniform goes from {at_start(mlp, 'uniform')} to "
    f"{at_end(mlp, 'uniform')}: "
    f"the outputs draw together, but a collapse is every image at one point, spread and L_uniform at 0, "
    f"and {EPOCHS} epochs do not show where the fall ends. The longer runs do."]
for label, run in [("BYOL", "byol-mlp"), ("BYOL-NP", "byol-np")]:
    folder, res = longest(run)
    if res:
        reading.append(f"In `{folder}` ({len(res[0]['history'])} epochs), {label}'s spread per seed: "
                       f"{spread_path(res)}.")
display(Markdown(" ".join(reading)))

# %% [markdown]
# <a id="sec4"></a>
# ## Sec. 4: BYOL′, Theorem 4.1 and RAFT
#
# The paper splits BYOL's target in two: the alignment of the two views' predictions, and how close the online
# prediction of a view is to the teacher's output for **the same** view, the cross-model loss
#
# $$\mathcal{L}_{\text{cross-model}}(f, g) = \mathbb{E}_{x} \big\lVert \hat f(x) - \hat g(x) \big\rVert_2^2
# \tag{5}$$
#
# symmetrised over the two views in `cross_model_loss`:

# %%
show(raft.cross_model_loss)

# %% [markdown]
# Checked on the BYOL run just trained (its MLP predictor, its teacher), 512 training images, two fresh views each:
# eq. 3 pairs each prediction with the teacher's output for the *other* view, eq. 5 with the *same* view's. The
# control of each is the other's pairing, as a swapped implementation would compute it.

# %%
byol = runs["BYOL"]
torch.manual_seed(1)
v1, v2 = raft.two_views(x_train[:512], args)
with torch.no_grad():
    z1, z2, f1, f2, z_prime1, z_prime2 = raft.forward_views(byol["model"], byol["teacher"], v1, v2, args)
other_view = 0.5 * (sq_dist_by_hand(z1, z_prime2).mean() + sq_dist_by_hand(z2, z_prime1).mean())  # by hand
same_view = 0.5 * (sq_dist_by_hand(z1, z_prime1).mean() + sq_dist_by_hand(z2, z_prime2).mean())
align = sq_dist_by_hand(z1, z2).mean()
check("eq. 3, L_BYOL, the other view",
      raft.byol_loss(z1, z2, z_prime1, z_prime2), other_view, 1e-5,
      "the same view's teacher output", same_view)
check("eq. 5, L_cross-model, the same view",
      raft.cross_model_loss(z1, z2, z_prime1, z_prime2), same_view, 1e-5,
      "the other view's teacher output", other_view)
checked()

# %% [markdown]
# BYOL′ runs *towards* the teacher, RAFT runs *away* from it ($\alpha, \beta > 0$, `--alpha`, `--beta`):
#
# $$\mathcal{L}_{\text{BYOL}'} = \alpha\, \mathcal{L}_{\text{align}}(q_w \circ f_\theta) + \beta\,
# \mathcal{L}_{\text{cross-model}}(q_w \circ f_\theta, f_\xi) \tag{6}$$
#
# $$\mathcal{L}_{\text{RAFT}} = \alpha\, \mathcal{L}_{\text{align}}(q_w \circ f_\theta) - \beta\,
# \mathcal{L}_{\text{cross-model}}(q_w \circ f_\theta, f_\xi) \tag{8}$$
#
# Both, and BYOL's eq. 3, are `objective`, the loss that `--loss` selects. RAFT's can go below 0 (down to
# $-4\beta$). Checked on the same outputs with $\alpha = 1, \beta = 0.5$, against the other sign:

# %%
show(raft.objective)

# %%
for loss, sign, control in [("byol-prime", +1, "the cross-model term subtracted"),
                            ("raft", -1, "the cross-model term added")]:
    which = types.SimpleNamespace(loss=loss, alpha=1.0, beta=0.5, tangent=False)
    check(f"eq. {6 if sign > 0 else 8}, objective, --loss {loss}",
          raft.objective(z1, z2, z_prime1, z_prime2, which), align + sign * 0.5 * same_view, 1e-5,
          control, align - sign * 0.5 * same_view)
checked()

# %% [markdown]
# **Theorem 4.1** says BYOL′ bounds BYOL from above: for any $\alpha, \beta > 0$, with $\lambda = \beta / \alpha$,
#
# $$\mathcal{L}_{\text{BYOL}} \le \Big(\frac{1}{\alpha} + \frac{1}{\beta}\Big)\, \mathcal{L}_{\text{BYOL}'}
# = \Big(1 + \frac{1}{\lambda}\Big) \big(\mathcal{L}_{\text{align}} + \lambda\, \mathcal{L}_{\text{cross-model}}\big)
# \tag{7}$$

# %% [markdown]
# It is an inequality of vectors, true sample by sample for *any* $\hat z_1, \hat z_2, \hat z'_2$: with
# $a = \hat z_1 - \hat z_2$ and $b = \hat z_2 - \hat z'_2$,
# $\lVert a + b \rVert^2 \le (1 + 1/\lambda) \lVert a \rVert^2 + (1 + \lambda) \lVert b \rVert^2$. So it cannot
# fail on any output, right or wrong, and checks no code. What it needs of the code is that the three terms are the
# functions' values: every run logs L_BYOL, L_align and L_cross-model (`theorem_metrics`, `step_metrics`), so that
# the bound can be read off its history.

# %%
show(raft.theorem_metrics)

# %% [markdown]
# Checked: one step's log (`views_and_loss`, seeded) against the terms computed by hand from the same views
# (seeded alike), each beside a plausible wrong log; then the bound's two sides as the BYOL run logged them.

# %%
def logged_step(run, seed, images):
    """views_and_loss's metrics for one seeded step, and the outputs of the same views (seeded alike)."""
    torch.manual_seed(seed)
    _, metrics = raft.views_and_loss(run["model"], run["teacher"], images, run["args"])
    torch.manual_seed(seed)
    views = raft.two_views(images, run["args"])
    with torch.no_grad():
        outputs = raft.forward_views(run["model"], run["teacher"], *views, run["args"])
    return dict(zip(raft.METRICS, metrics.tolist())), outputs


logged, (z1, z2, f1, f2, z_prime1, z_prime2) = logged_step(byol, 2, x_train[:512])
other_view = 0.5 * (sq_dist_by_hand(z1, z_prime2).mean() + sq_dist_by_hand(z2, z_prime1).mean())
same_view = 0.5 * (sq_dist_by_hand(z1, z_prime1).mean() + sq_dist_by_hand(z2, z_prime2).mean())
check("logged L_BYOL",
      logged["byol_loss"], other_view, 1e-5,
      "logging the same view's pairing", same_view)
check("logged L_align(q_w ∘ f_θ)",
      logged["align"], sq_dist_by_hand(z1, z2).mean(), 1e-5,
      "measured on f_θ, before q_w", sq_dist_by_hand(f1, f2).mean())
check("logged L_cross-model",
      logged["cross_model"], same_view, 1e-5,
      "logging the other view's pairing", other_view)
checked()
print("\nthe bound's two sides in the BYOL run's log (λ = 1); with the pairings\n"
      "swapped (L_cross-model ≤ 2 (L_align + L_BYOL)) it holds as well")
print(" epoch  L_BYOL   bound  ratio   swapped: L_cm   bound  ratio")
for row in byol["history"]:
    bound, swapped = 2 * (row["align"] + row["cross_model"]), 2 * (row["align"] + row["byol_loss"])
    print(f"{row['epoch']:6d} {row['byol_loss']:7.4f} {bound:7.4f} {row['byol_loss'] / bound:6.3f}"
          f" {row['cross_model']:15.4f} {swapped:7.4f} {row['cross_model'] / swapped:6.3f}")

# %% [markdown]
# <a id="sec5"></a>
# ## Sec. 5: Theorem 5.1, RAFT ≡ BYOL′, and the Tan variant
#
# **Theorem 5.1** (the paper): BYOL′ and RAFT follow one-to-one corresponding trajectories, from $(\theta, W)$ and
# $(\theta, -W)$, when (i) the representations lie on the sphere, (ii) the predictor is linear, $q_w(f) = Wf$, and
# (iii) only the tangential gradient is kept (the Tan variant below).
#
# Why, and more generally: negate the predictor's *last linear layer* ($\tilde w$), so that $q_{\tilde w} = -q_w$.
# The alignment term does not change, and on the sphere
# $\lVert -\hat z - \hat z' \rVert^2 = 4 - \lVert \hat z - \hat z' \rVert^2$, so
#
# $$\mathcal{L}_{\text{RAFT}}(\theta, \tilde w) = \mathcal{L}_{\text{BYOL}'}(\theta, w) - 4\beta .$$
#
# (With the tangential form the cross-model term itself changes sign, and the constant is 0.)

# %% [markdown]
# The two losses then have the same gradient in $\theta$ and in the predictor's hidden layers, and opposite ones in
# its last layer; Adam's update is odd in the gradient, and the teacher follows $\theta$ alone. So from mirrored
# initialisations RAFT follows BYOL′ step for step, for any predictor whose last layer is linear, with or without
# condition (iii). `mirror_predictor` negates that layer; `build_model` applies it for `--mirror-init`, after drawing
# everything else, so that a mirrored pair shares its encoder, projector and teacher:

# %%
show(raft.mirror_predictor, raft.build_model)

# %% [markdown]
# Checked for the paper's own case (linear predictor, `--tangent`) and for App. C's MLP predictor: BYOL′ and
# mirrored RAFT ($\beta = 1$) from one seed, 8 Adam steps of `train_step` each on 32 real images at 16 px. The
# control: RAFT from the same seed *without* the mirror. In float64, since the two losses round differently in
# float32 and training amplifies that (a float32 pair agrees in distribution, not bit for bit); `train_step` makes
# its views in float32, so here `two_views` is wrapped to return them in float64.

# %%
flat = lambda tensors: torch.cat([t.detach().flatten() for t in tensors])
online = lambda m: flat([*m.encoder.parameters(), *m.projector.parameters()])  # θ: encoder and projector


def trajectory(predictor, *flags, steps=8):
    """`steps` Adam steps of raft.train_step in float64 from seed 0, the same images and views each run."""
    step_args = raft.get_args(["--encoder", "small", "--image-size", "16", "--batch-size", "32",
                               "--device", "cpu", "--predictor", predictor,
                               "--tau", "0.9", *flags])  # τ 0.9: the teacher moves too
    torch.manual_seed(0)
    m = raft.build_model(step_args)
    t, m = raft.build_teacher(m, step_args).double(), m.double()
    opt, start = raft.make_optimizer(m, step_args), online(m)
    views = raft.two_views
    torch.manual_seed(1)
    with mock.patch.object(raft, "two_views", lambda x, a: [v.double() for v in views(x, a)]):
        losses = [raft.train_step(m, t, opt, x_train[:32], step_args.tau, step_args)[0].item()
                  for _ in range(steps)]
    w_last = [layer for layer in m.predictor.modules() if isinstance(layer, torch.nn.Linear)][-1]
    return dict(theta=online(m), xi=flat(t.parameters()), w_last=flat(w_last.parameters()), losses=losses,
                moved=(online(m) - start).norm().item())


for case, predictor, flags, offset in [("linear q_w, Tan", "linear", ["--tangent"], 0.0),
                                       ("MLP q_w", "mlp", [], -4.0)]:
    bp = trajectory(predictor, "--loss", "byol-prime", *flags)
    mirrored = trajectory(predictor, "--loss", "raft", "--mirror-init", *flags)
    control = trajectory(predictor, "--loss", "raft", *flags)
    gap = lambda rf: max(abs(r - b - offset) for r, b in zip(rf["losses"], bp["losses"]))
    print(f"{case}: L_RAFT - L_BYOL′ should be {offset:g} at every step (β = 1)")
    check(f"{case}, largest |L_RAFT - L_BYOL′ - c| in 8 steps",
          gap(mirrored), 0, 1e-9,
          "RAFT not mirrored", gap(control))
    distance = lambda rf: max((rf[k] - bp[k]).norm().item() for k in ("theta", "xi")) / bp["moved"]
    check(f"{case}, |θ or ξ of RAFT - BYOL′'s| / |Δθ|",
          distance(mirrored), 0, 1e-9,
          "RAFT not mirrored", distance(control))
    last = lambda rf: ((rf["w_last"] + bp["w_last"]).norm() / bp["w_last"].norm()).item()
    check(f"{case}, |w_last of RAFT + BYOL′'s| / |w_last|",
          last(mirrored), 0, 1e-9,
          "RAFT not mirrored", last(control))
    checked()

# %% [markdown]
# **RAFT ≡ BYOL′ in distribution.** The condition: the predictor's last layer is linear (MLP and LP both
# qualify) and its initialisation symmetric: PyTorch draws a linear layer's weights and bias uniformly on
# $(-k, k)$, so $w$ and $\tilde w$ are equally likely, and all else is drawn alike. Then each RAFT run is a BYOL′
# run with that layer negated: one algorithm in distribution, whose accuracy has one distribution at every scale.
# The paper's RAFT 71.31 ± 0.75 % against BYOL′ 69.21 ± 1.01 % (Table 1, three seeds each) is a difference between
# runs of one algorithm (seed noise, or a difference in the runs' setups), not a property of the losses. Without a
# predictor (NP) they differ.

# %% [markdown]
# **The Tan variant** (the remark after Theorem 5.1) keeps only the tangential part of the gradient, replacing
# $\lVert \hat z - \hat z' \rVert^2$ by $\lVert \hat z' - \lambda \hat z \rVert^2 / \lambda$ with
# $\lambda = \mathrm{sg}(\langle \hat z, \hat z' \rangle)$ (sg: stop gradient): `sq_dist(..., tangent=True)`,
# `--tangent` (shown in Sec. 2). Its value is $(1 - \lambda^2)/\lambda$, another than $2 - 2\lambda$. But the
# normalisation $z \mapsto \hat z$ sits inside the autograd graph, and its Jacobian already removes the radial part
# of the gradient: with respect to the un-normalised $z$ the gradient is the same. Checked on the BYOL outputs of
# Sec. 4 in float64; the controls: Tan ignored, and $\lambda$ without its stop-gradient.

# %%
p1, p2 = z1.double().requires_grad_(), z2.double().requires_grad_()
t1, t2 = z_prime1.double(), z_prime2.double()


def tan_by_hand(z, target):
    """||t̂ - λẑ||²/λ = (1 - λ²)/λ per row, λ = <ẑ, t̂> not stopped: the value, a wrong gradient."""
    lam = F.cosine_similarity(z, target, dim=-1)
    return (1 - lam ** 2) / lam


cross_tan = 0.5 * (tan_by_hand(p1, t1).mean() + tan_by_hand(p2, t2).mean())
tan = raft.cross_model_loss(p1, p2, t1, t2, tangent=True)
plain = raft.cross_model_loss(p1, p2, t1, t2)
check("Tan cross-model loss, value",
      tan, cross_tan, 1e-9,
      "Tan ignored (the plain loss)", plain)
grad = lambda loss: torch.cat(torch.autograd.grad(loss, [p1, p2]))
g_plain = grad(raft.cross_model_loss(p1, p2, t1, t2))
relative = lambda loss: ((grad(loss) - g_plain).norm() / g_plain.norm()).item()
check("Tan, |g_Tan - g| / |g| in z",
      relative(raft.cross_model_loss(p1, p2, t1, t2, tangent=True)), 0, 1e-9,
      "λ without its stop-gradient", relative(cross_tan))
checked()

# %% [markdown]
# <a id="appc"></a>
# ## App. C: the networks, the augmentation, the linear probe
#
# $f_\theta$ is an encoder followed by a projector (App. C calls the projector alone $g_\theta$); the teacher
# $f_\xi$ has the same architecture. The paper's encoder is ResNet18 without its classifier, on images resized
# from 32 to 96 px; this notebook, like the project's CPU runs, uses a small 4-layer CNN with the same 512-d output.

# %%
show(raft.resnet18, raft.small_cnn, raft.projector)

# %%
count = lambda net: f"{sum(p.numel() for p in net.parameters()):>12,}"
print(f"{count(raft.build_encoder('resnet18', 'imagenet'))}  encoder: ResNet18, ImageNet stem (paper, 96 px)")
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
fig, axes = plt.subplots(3, 8, figsize=(6.6, 2.9))
for row, (name, images) in enumerate([("x", shown.float() / 255), ("t₁(x)", views[0]),
                                      ("t₂(x)", views[1])]):
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
# the features of the plain images, `--probe features`.) The two runs of Sec. 3 were probed this way; the
# Rand-Baseline of Table 1 is the same probe on an untrained encoder.

# %%
show(raft.linear_eval)

# %%
torch.manual_seed(0)
untrained = raft.build_encoder("small")
probes = {**{label: run["probe"][-1] for label, run in runs.items()},
          "Rand-Baseline": raft.linear_eval(untrained, data, args)[-1]}
encoders = {**{label: run["model"].encoder for label, run in runs.items()}, "Rand-Baseline": untrained}
spreads = {}
print("                probe, test %   spread of f_θ   of the encoder")
for label, accuracy in probes.items():
    f_theta = f"{runs[label]['history'][-1]['spread']:.3f}" if label in runs else "-"  # untrained: no f_θ run
    h = raft.features(encoders[label], x_test[:512], args.image_size)  # what the probe reads, in eval mode
    spreads[label] = raft.spread(h).item()
    print(f"{label:>14}: {accuracy:13.2f} {f_theta:>15} {spreads[label]:16.3f}")
np_probe, rand_probe = probes["BYOL-NP"], probes["Rand-Baseline"]
display(Markdown(
    f"The collapse is measured on $f_\\theta$, the projector's output that the loss sees; the probe reads "
    f"the encoder's 512-d features. Here BYOL-NP's $f_\\theta$ ends with spread {none[-1]['spread']:.3f}, "
    f"its encoder's features have {spreads['BYOL-NP']:.3f} (the untrained encoder's "
    f"{spreads['Rand-Baseline']:.3f}), and its probe reads {np_probe:.2f} %, "
    f"{'above' if np_probe > rand_probe else 'not above'} the Rand-Baseline's {rand_probe:.2f} %. The "
    f"spreads say where a collapse sits, not why a collapsed run's encoder probes above an untrained one "
    f"where it does: this page does not explain that. (The Rand-Baseline's encoder never fitted its "
    f"BatchNorm statistics; `results/rand-baseline` measures how much that moves its probe.)"))

# %% [markdown]
# <a id="alg1"></a>
# ## Algorithm 1: one training step
#
# App. E's Algorithm 1, lines 4-12, for a batch of $N$ images $x_i$ (lines 1-3, the loop over steps $k$ and the
# batch, are in `train`), and where `train_step` computes each line:

# %% [markdown]
# - **4:** $t_1 \sim \mathcal{T}_1$, $t_2 \sim \mathcal{T}_2$ — `two_views`
# - **5:** $z_1 = q_w(f_\theta(t_1(x_i)))$, $z_2 = q_w(f_\theta(t_2(x_i)))$ — `forward_views`
# - **6:** $z'_1 = f_\xi(t_1(x_i))$, $z'_2 = f_\xi(t_2(x_i))$ — `forward_views`
# - **7:** $l^{\text{align}}_i = \lVert \hat z_1 - \hat z_2 \rVert^2$ — `objective` → `align_loss`
# - **8:** $l^{\text{cross}}_i = -\tfrac{1}{2}\big(\lVert \hat z_1 - \hat z'_1 \rVert^2 + \lVert \hat z_2 - \hat z'_2
#   \rVert^2\big)$ — `objective` → `cross_model_loss`, subtracted
# - **10:** $\delta\theta = \frac{1}{N} \sum_i \nabla_{\theta, w} \big(\alpha\, l^{\text{align}}_i + \beta\,
#   l^{\text{cross}}_i\big)$ — `loss.backward()`
# - **11:** $\theta, w \leftarrow \text{optimizer}(\theta, w, \delta\theta)$ — `opt.step()` (Adam)
# - **12:** $\xi \leftarrow \tau_k\, \xi + (1 - \tau_k)\, \theta$ — `ema_update` (eq. 4)

# %% [markdown]
# `views_and_loss` (lines 4-8) returns the loss and the step's metrics (`step_metrics`) as one tensor that `train`
# sums over the epoch; the Rand-Baseline's pass runs the same function without learning. `forward` also holds
# what serves speed on a GPU (bf16 autocast for the encoders, float32 for the projector and predictor, the
# channels-last layout), which changes no number on a CPU.

# %%
show(raft.train_step, raft.views_and_loss, raft.forward_views, raft.forward)

# %% [markdown]
# Checked: one RAFT step on 64 real images. Adam moves θ (line 11), *then* the teacher moves by eq. 4 towards the
# updated θ (line 12). The control runs the same step with lines 11 and 12 in the wrong order, from the same
# networks and views. Here $\tau = 0.9$, so that what the order changes, $(1 - \tau)$ times Adam's step, stands
# far above float32's rounding of the update; with 0.996 it would be 25 times smaller.

# %%
def wrong_order_step(model, teacher, opt, x, tau, args):
    """The control: Algorithm 1 with line 12 (the EMA) before line 11 (Adam's step)."""
    loss, metrics = raft.views_and_loss(model, teacher, x, args)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    raft.ema_update(teacher, model, tau)
    opt.step()
    return metrics


def step_gap(step, step_args):
    """Largest |ξ_new - (τ ξ + (1 - τ) θ_new)| after one step from seed 0's networks, and its metrics."""
    torch.manual_seed(0)
    model, teacher = raft.build(step_args)
    opt, xi = raft.make_optimizer(model, step_args), [p.clone() for p in teacher.parameters()]
    torch.manual_seed(1)
    metrics = step(model, teacher, opt, x_train[:64], step_args.tau, step_args)
    theta = [*model.encoder.parameters(), *model.projector.parameters()]
    gap = max((new - (step_args.tau * old + (1 - step_args.tau) * th)).abs().max().item()
              for new, old, th in zip(teacher.parameters(), xi, theta))
    return gap, metrics


step_args = raft.get_args([*DEMO, "--data-dir", DATA_DIR, "--loss", "raft", "--tau", "0.9"])
gap, metrics = step_gap(raft.train_step, step_args)
check("Algorithm 1, largest |ξ_new - (τξ + (1 - τ)θ_new)|",
      gap, 0, 1e-6,
      "lines 11 and 12 swapped", step_gap(wrong_order_step, step_args)[0])
checked()
print("the step's metrics, as train sums them:")
row = "  ".join(f"{name} {value:.4f}" for name, value in zip(raft.METRICS, metrics.tolist()))
print(textwrap.fill(row, 68))

# %% [markdown]
# <a id="results"></a>
# ## What the runs found
#
# The project ran every row of Tables 1 and 3 at a small scale on a CPU (`PROFILE=cpu bash run_all.sh`: the small
# encoder, 2,560 training images, into `results/cpu/`), and the six headline rows longer (`results/cpu-long/`).
# Each number below is read from those files as committed, when the notebook runs: each row and each claim from
# the longest runs that hold it, the Rand-Baseline (which does not train) from `results/cpu/`. How the runs were
# made: [results/cpu](../results/cpu/README.md), [results/cpu-long](../results/cpu-long/README.md).

# %%
rand = {n: res for n, res in tables.load_results("results/cpu").items() if tables.untrained(res)}
SCALES = []  # (folder, epochs, runs), the longest first; each with the Rand-Baseline of results/cpu
for folder in ("results/cpu-long", "results/cpu"):
    runs_ = {n: res for n, res in tables.load_results(folder).items() if n in tables.RUNS}  # not benchmarks
    if runs_:
        epochs = max(r["config"]["epochs"] for res in runs_.values() for r in res)
        SCALES.append((folder, epochs, {**rand, **runs_}))
SCALES.sort(key=lambda scale: -scale[1])
for folder, epochs, runs_ in SCALES:
    seeds = sorted({len(res) for name, res in runs_.items() if name not in rand})
    print(f"{folder}: {len(runs_) - len(rand)} runs of {epochs} epochs, "
          f"{' to '.join(str(n) for n in (seeds[0], seeds[-1])[:len(set(seeds))])} seeds each")


def largest_scale(names):
    """(folder, epochs, runs) of the longest runs whose folder holds every run named, or (None, 0, {})."""
    return next(((f, e, r) for f, e, r in SCALES if all(n in r for n in names)), (None, 0, {}))


def split_table(rows, betas=False):
    """One of the paper's tables (1 or 3) as two narrow ones, accuracy and L_align / L_uniform, ours beside
    the paper's; each row from the longest runs that hold it. betas: the row's β in its name (Table 3)."""
    accuracy = ["| model | q_w | epochs × seeds | linear acc. %, ours | paper |", "|:---|:---|---|---|---|"]
    metrics = ["| model | L_align, ours | paper | L_uniform, ours | paper |", "|:---|---|---|---|---|"]
    for label, q, _, beta, name, paper_acc, paper_align, paper_uniform in rows:
        res = largest_scale([name])[2].get(name)
        if not res:
            continue
        label = label.replace("'", "′") + (f", β = {abs(beta):g}" if betas and beta != "" else "")
        ours = lambda key, fmt: tables.mean_std([r[key] for r in res], fmt)
        accuracy.append(f"| {label} | {q} | {res[0]['config']['epochs']} × {len(res)} "
                        f"| {ours('linear_acc_last10', '{:.2f}')} | {paper_acc or '-'} |")
        metrics.append(f"| {label} | {ours('align_authors', '{:.2e}')} | {paper_align or '-'} "
                       f"| {ours('uniform_authors', '{:.2f}')} | {paper_uniform or '-'} |")
    return powers("\n".join(accuracy)), powers("\n".join(metrics))


table1 = split_table(tables.TABLE1)
display(Markdown("**Table 1**, linear accuracy (test %, mean of the last 10 probe epochs; ours: mean ± std "
                 "over seeds; the paper's copied as printed):\n\n" + table1[0]))

# %% [markdown]
# L_align and L_uniform, as the authors' code logs them (the form the paper's columns most likely use: L_align of
# $q_w \circ f_\theta$ as $\lVert\cdot\rVert^2/D$ on the first 64 samples, L_uniform of the predictions over
# consecutive pairs, all pairs for BYOL; [results/rand-baseline](../results/rand-baseline/README.md) tells why),
# the mean over the last 10 epochs of training:

# %%
display(Markdown(table1[1]))

# %%
table3 = split_table(tables.TABLE3, betas=True)
display(Markdown("**Table 3** (α = 1; RAFT's β as eq. 8 writes it), linear accuracy:\n\n" + table3[0]))
display(Markdown("L_align and L_uniform, as in Table 1:\n\n" + table3[1]))

# %% [markdown]
# The paper's claims, each judged by one rule from the results files (`tools/tables.py`'s `CLAIMS`; the rule, the
# metrics and every seed's value are in each folder's `claims.md`). Each claim is judged on the longest runs that
# hold every run it names; the table lists those judged on the longest runs, the line below it counts the others.

# %%
judged = []
for claim in tables.CLAIMS:
    names = [claim[3][0]] + ([claim[5][0]] if claim[5] else [])
    folder, epochs, runs_ = largest_scale(names)
    verdict = tables.judge(runs_, claim)[2] if folder else tables.UNDECIDED
    judged.append((claim, epochs, verdict))
longest = SCALES[0][1]
display(Markdown("\n".join([f"| # | the paper's claim (where), judged at {longest} epochs | verdict |",
                            "|:---|:---|:---|", *(f"| {c[0]} | {tables.cell(c[1])} | {v} |"
                                               for c, e, v in judged if e == longest)])))
for epochs_ in sorted({e for _, e, _ in judged}, reverse=True):
    verdicts = [v for _, e, v in judged if e == epochs_]
    where = f"at {epochs_} epochs" if epochs_ else "nowhere (no folder holds their runs)"
    counted = ", ".join(f"{verdicts.count(v)} {v}" for v in (tables.SHOWN, tables.NOT_SHOWN, tables.UNDECIDED))
    print(textwrap.fill(f"{len(verdicts)} claims judged {where}: {counted}", 68))

# %% [markdown]
# **The headline ordering.** The paper's Table 1 ranks RAFT 71.31 % above BYOL′ 69.21 % above BYOL 64.32 %. Below,
# the three rows with their MLP predictor from the longest runs that hold all three, each seed's accuracy, and the
# rule's verdict on each pair.

# %%
HEADLINE = [("BYOL", "byol-mlp"), ("BYOL′", "byolp-mlp"), ("RAFT", "raft-mlp")]
folder, epochs, runs_ = largest_scale([name for _, name in HEADLINE] + ["rand"])
accuracy = {label: [r["linear_acc_last10"] for r in seed_order(runs_[name])] for label, name in HEADLINE}
for label, values in accuracy.items():
    seeds = " / ".join(f"{v:.2f}" for v in values)
    print(f"{label:>6}: {seeds} % ({len(values)} seeds, {epochs} epochs)")


def compared(a, b):
    """The seeds' ranges of two rows, as the claims' rule reads them."""
    if min(accuracy[a]) > max(accuracy[b]) or max(accuracy[a]) < min(accuracy[b]):
        high, low = (a, b) if min(accuracy[a]) > max(accuracy[b]) else (b, a)
        return f"the seeds' ranges are apart, {high} above {low}"
    return "the seeds' ranges overlap"


pairs = [("RAFT", "BYOL"), ("RAFT", "BYOL′"), ("BYOL′", "BYOL")]
display(Markdown(f"At {epochs} epochs (`{folder}`): " + "; ".join(f"{a} against {b}: {compared(a, b)}"
                                                                for a, b in pairs) + "."))
fig, ax = plt.subplots(figsize=(6.6, 2.2))
for row, (label, name) in enumerate(HEADLINE):
    ax.plot(accuracy[label], [row] * len(accuracy[label]), "o", ms=10, alpha=0.7, color=tables.RUN_COLOURS[name])
ax.set(yticks=range(len(HEADLINE)), yticklabels=[label for label, _ in HEADLINE], ylim=(-0.6, 2.6),
       xlabel=f"linear accuracy %, one dot per seed ({epochs} epochs)")
ax.margins(x=0.15)
fig.tight_layout()
plt.show()

# %% [markdown]
# What this decides, and what it cannot. At this scale (a small encoder, 2,560 images, a few dozen epochs at
# most) the rule decides an ordering only where the seeds' ranges are apart, and says nothing about what ResNet18
# trained for 300 epochs on 50,000 images would show: neither the size nor the direction of a gap need carry over.
# RAFT against BYOL′ is different: by Theorem 5.1 they are one algorithm in distribution, so no scale can rank
# them, and a gap between them, here or in the paper, is seed noise or a difference between the runs' setups. The
# conclusion, from the files:

# %%
display(Markdown(tables.conclusion(folder, root="../")))  # the README's status, from the same files

# %% [markdown]
# <a id="checks"></a>
# ## Every check, in one table
#
# Each check of this page: `raft.py`'s value, and the value of its control, the same check on the named wrong
# variant. Every row passed, or the notebook would have stopped at it.

# %%
display(Markdown(checks_table(CHECKS)))

# %%
used = resource.getrusage(resource.RUSAGE_SELF)
cpu_seconds = used.ru_utime + used.ru_stime - cpu_started.ru_utime - cpu_started.ru_stime
print(textwrap.fill(f"this notebook ran in {time.perf_counter() - started:.0f} s ({cpu_seconds:.0f} s of CPU "
                    f"time) on {raft.describe_device('cpu')}, load average {os.getloadavg()[0]:.1f} at the end",
                    68))
