"""Tests of the tools around raft.py: the tables (tools/tables.py), run_all.sh, the benchmark (tools/bench.py), the
documentation's links. CPU only, synthetic data:  python -m pytest -q test_raft.py tools
"""

import glob
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import torch
import pytest
from PIL import Image

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, REPO)
import raft  # noqa: E402
import bench  # noqa: E402
import tables  # noqa: E402
import compare  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny ImageFolder: 3 classes of random 16 px images, 32 for training and 15 for testing."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in [("train", 32), ("test", 15)]:
        for i in range(n):
            os.makedirs(root / split / f"class{i % 3}", exist_ok=True)
            image = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
            image.save(root / split / f"class{i % 3}" / f"{i}.png")
    return str(root)


# -----------------------------------------------------------------------------
# The tables: Tables 1 and 3 and the mirror table from results files


def fake_result(seed, acc, align=2e-3, uniform=-2.0, epochs=300):
    history = [dict(epoch=e + 1, loss=0.1, align=align + 1e-4 * seed * e, uniform=uniform) for e in range(3)]
    return dict(config=dict(seed=seed, epochs=epochs), history=history, align=align, uniform=uniform,
                align_authors=align / 128, uniform_authors=uniform / 2, linear_acc=acc - 5, linear_acc_last10=acc)


def row_of(text, label):
    return [line for line in text.splitlines() if line.startswith(f"| {label} |")]


def test_write_tables(tmp_path):
    for name, seed, acc in [("raft-mlp", 0, 70.0), ("raft-mlp", 1, 72.0), ("byolp-mlp", 0, 69.0),
                            ("raft-mlp-mirror", 0, 68.0)]:
        (tmp_path / f"{name}-s{seed}.json").write_text(json.dumps(fake_result(seed, acc)))
    tables.main([str(tmp_path)])
    assert set(tables.load_results(str(tmp_path))) == {"raft-mlp", "byolp-mlp", "raft-mlp-mirror"}

    table1 = (tmp_path / "table1.md").read_text()
    for label, *_ in tables.TABLE1:
        assert row_of(table1, label), label  # every row is there, with or without results
    cells = [c.strip() for c in row_of(table1, "RAFT")[0].split("|")[1:-1]]
    assert cells[4:7] == ["2", "300", "71.00 ± 1.41"]  # seeds, epochs, mean ± sample std of the last-10 mean
    assert cells[7] == "71.31 ± 0.75"  # the paper's number beside it
    # the paper's metric columns beside ours in the authors' logging form; eq. 1 / eq. 2 forms after them
    assert [c.split(" ± ")[0] for c in cells[8:14]] == ["1.56e-05", "18.90e-4", "2.00e-03", "-1.00", "-2.04", "-2.00"]
    assert "| -0.10 |" in row_of(table1, "BYOL'-NP")[0]  # the paper's numbers as printed
    assert "| 1 | 300 | 69.00 |" in row_of(table1, "BYOL'")[0]  # one seed: the value alone
    assert row_of(table1, "BYOL-NP")[0].count("missing") == 5
    table3 = (tmp_path / "table3.md").read_text()
    assert sum("71.00 ± 1.41" in line for line in table3.splitlines()) == 1
    assert sum("missing" in line for line in table3.splitlines()) == len(tables.TABLE3) - 1

    mirror = (tmp_path / "mirror.md").read_text()
    mlp = [line for line in mirror.splitlines() if line.startswith("| MLP |")]
    lp = [line for line in mirror.splitlines() if line.startswith("| LP |")]
    assert len(mlp) == 2 and "| 0 | 69.00 | 68.00 |" in mlp[1]  # the mirrored pair of seed 0
    assert mlp[0] == "| MLP | 69.00 | 70.00 / 72.00 | 69.00 (69.00 to 69.00) | 71.00 (70.00 to 72.00) | fewer than two seeds |"
    assert not lp and "missing" not in mirror  # no LP run: no LP row

    trajectories = (tmp_path / "trajectories.md").read_text()  # each seed's values, epoch by epoch
    assert "last-10 mean 70.00 / 72.00, last epoch 65.00 / 67.00" in trajectories
    assert "| 3 | 0.1 / 0.1 | 0.002 / 0.0022 | -2 / -2 |" in trajectories
    (tmp_path / "mirror.md").unlink()
    for name in ("raft-mlp", "byolp-mlp", "raft-mlp-mirror"):
        for path in tmp_path.glob(f"{name}-s*.json"):
            path.unlink()
    (tmp_path / "byol-np-s0.json").write_text(json.dumps(fake_result(0, 30.0)))
    tables.main([str(tmp_path)])
    assert not (tmp_path / "mirror.md").exists()  # no file that says only "missing"


def test_identical_compares_every_number_but_the_clock(tmp_path, capsys):
    a = fake_result(0, 70.0)
    a["seconds"], a["versions"] = {"train": 1.0}, {"commit": "abc"}
    b = json.loads(json.dumps(a))
    b["seconds"], b["versions"] = {"train": 2.0}, {"commit": "def"}  # another clock, another commit: the same run
    a["config"]["out"], b["config"]["out"] = "results/a.json", "/elsewhere/a.json"  # and another place
    a["device"], b["device"] = "cpu (AMD EPYC, 2 threads)", "cpu (Intel Xeon, 8 threads)"
    a["processor"], b["processor"] = dict(model_name="AMD EPYC", family="25"), dict(model_name="Intel Xeon", family="6")
    b["config"].update(resume=True, save_every=1, checkpoint_minutes=5.0, knn_every=0)  # resumed: the same numbers
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert compare.identical(tmp_path / "a.json", tmp_path / "b.json")
    b["history"][2]["align"] += 1e-12
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert not compare.identical(tmp_path / "a.json", tmp_path / "b.json")
    assert "history.2.align:" in capsys.readouterr().out
    (tmp_path / "c.json").write_text("not json")
    with pytest.raises(SystemExit) as exit:  # a user's mistake: one line, no traceback
        compare.identical(tmp_path / "c.json", tmp_path / "a.json")
    assert "not a results file" in str(exit.value.code)  # fail: the message is the exit status
    b["history"][2]["align"] = a["history"][2]["align"]
    a["config"]["lr"], b["config"]["lr"] = 3e-4, 1.0  # a flag that changes the numbers is compared
    for name, result in [("a", a), ("b", b)]:
        (tmp_path / f"{name}.json").write_text(json.dumps(result))
    capsys.readouterr()
    assert not compare.identical(tmp_path / "a.json", tmp_path / "b.json")
    assert capsys.readouterr().out.splitlines()[0] == "config.lr: 0.0003 != 1.0"


def test_compare_answers_help_and_names_its_own_mistakes(capsys, tmp_path):
    assert compare.main(["--help"]) == 0 and "compare.py --identical A.json B.json" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="^compare.py: error: give two or more results folders"):
        compare.main([])
    (tmp_path / "a.json").write_text("{}")
    for argv, says in [(["--identical", str(tmp_path / "a.json"), "missing.json"], "missing.json: no such file"),
                       (["--identical", "gone.json", str(tmp_path / "a.json")], "gone.json: no such file"),
                       (["--identical", str(tmp_path), str(tmp_path / "a.json")], f"{tmp_path}: a folder, not a"),
                       ([str(tmp_path), "no-folder"], "no-folder: no such folder")]:
        with pytest.raises(SystemExit, match=f"^compare.py: error: {re.escape(says)}"):
            compare.main(argv)


def test_every_table_row_has_a_run_and_every_run_parses():
    rows = {row[4] for row in tables.TABLE1 + tables.TABLE3} | {r for _, *pair in tables.MIRROR for r in pair}
    assert rows <= set(tables.RUNS)
    for flags in tables.RUNS.values():
        raft.get_args([*flags.split(), "--device", "cpu"])  # raft.py accepts every run's flags


def test_figure3_runs_get_snapshots_and_figure4_runs_the_knn_monitor():
    runs = tables.run_list("1,2", figure4_knn_every=1)
    assert {n for n, f in runs.items() if "--snapshot-epochs 1,2" in f} == {run for _, run in tables.FIGURE3}
    assert {n for n, f in runs.items() if "--knn-every 1" in f} == {run for _, run in tables.FIGURE4}
    assert tables.run_list() == tables.RUNS  # neither unless asked


@pytest.mark.parametrize("argv,says", [([], "give a results folder"), (["/no/such/folder"], "no such folder")])
def test_tables_bad_input_is_one_line_error(argv, says):
    with pytest.raises(SystemExit) as exit:
        tables.main(argv)
    assert str(exit.value).startswith("raft.py: error:") and says in str(exit.value) and "\n" not in str(exit.value)


# -----------------------------------------------------------------------------
# run_all.sh: commands for a cluster (PRINT=1) and runs spread over GPUs (GPUS)

TINY = "--encoder small --image-size 8 --batch-size 16 --eval-epochs 1 --knn-every 0 --device cpu"


def run_all(env, cwd):
    env = {**os.environ, "PYTHON": sys.executable, "SEEDS": "1", "EPOCHS": "1", "TRAIN_SUBSET": "32", "ARGS": TINY,
           **env}
    return subprocess.run(["bash", os.path.join(REPO, "run_all.sh")], env=env, cwd=cwd, capture_output=True, text=True)


def test_printed_command_writes_what_run_all_writes(folder, tmp_path):
    printed = run_all(dict(PRINT="1", DATA_DIR=folder, OUT_DIR=str(tmp_path / "by_hand")), cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    commands = printed.stdout.strip().splitlines()
    assert len(commands) == len(tables.RUNS)  # one per run (one seed)
    assert not (tmp_path / "by_hand").exists()  # printing runs nothing
    command = next(c for c in commands if "/byol-np-s0.json" in c)
    subprocess.run(["bash", "-c", command], cwd="/", check=True, capture_output=True)  # self-contained: from anywhere

    done = run_all(dict(DATA_DIR=folder, OUT_DIR=str(tmp_path / "run_all"), RUNS="byol-np"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "run_all" / "table1.md").exists()  # run_all.sh ends with the tables
    a, b = (json.loads((tmp_path / d / "byol-np-s0.json").read_text()) for d in ("by_hand", "run_all"))
    drop = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "history", "config")}
    assert drop(a) == drop(b)
    metrics = lambda r: [{k: row[k] for k in raft.METRICS} for row in r["history"]]
    assert metrics(a) == metrics(b)
    assert {**a["config"], "out": None, "data_dir": None} == {**b["config"], "out": None, "data_dir": None}
    assert not os.path.isabs(b["config"]["data_dir"]) and not os.path.isabs(b["config"]["out"])  # no machine's path


def test_gpus_are_dealt_round_robin(tmp_path):
    log = tmp_path / "calls.txt"
    stand_in = tmp_path / "python"  # records each run's arguments and CUDA device instead of training
    stand_in.write_text(f"""#!/usr/bin/env bash
case "$1" in *tables.py) exec {sys.executable} "$@";; esac
echo "$CUDA_VISIBLE_DEVICES $*" >> {log}
""")
    stand_in.chmod(0o755)
    (tmp_path / "data" / "train").mkdir(parents=True)  # CIFAR-10 here: no run goes alone to download it
    res = run_all(dict(PYTHON=str(stand_in), GPUS="3,5", JOBS="2", SEEDS="2", OUT_DIR=str(tmp_path / "out"),
                       DATA_DIR=str(tmp_path / "data")), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    printed = run_all(dict(PYTHON=str(stand_in), PRINT="1", SEEDS="2", OUT_DIR=str(tmp_path / "out")), cwd=tmp_path)
    order = [os.path.basename(c.split("--out ")[1].split()[0]) for c in printed.stdout.strip().splitlines()]
    calls = [line.split() for line in log.read_text().strip().splitlines()]
    device = {os.path.basename(args[args.index("--out") + 1]): args[0] for args in calls}
    assert len(calls) == len(order) == 2 * len(tables.RUNS)  # every run once
    assert [device[out] for out in order] == [["3", "5"][i % 2] for i in range(len(order))]


def printed(**env):
    """run_all.sh PRINT=1 for two runs: exit status, stderr, and (seed, results file) of each printed command."""
    res = run_all({"PRINT": "1", "RUNS": "byol-np,rand", "OUT_DIR": "/out", "SEEDS": "", **env}, cwd=REPO)
    commands = res.stdout.splitlines()
    seed_and_file = lambda c: (c.split("--seed ")[1].split()[0], os.path.basename(c.split("--out ")[1].split()[0]))
    return res.returncode, res.stderr, [seed_and_file(c) for c in commands]


def test_seeds_are_a_count_or_a_list_so_any_seed_runs_alone():
    assert printed(SEEDS="2")[2] == [("0", "rand-s0.json"), ("1", "rand-s1.json"), ("0", "byol-np-s0.json"),
                                     ("1", "byol-np-s1.json")]  # a count: seeds 0..SEEDS-1
    assert printed(SEED_LIST="1")[2] == [("1", "rand-s1.json"), ("1", "byol-np-s1.json")]  # seed 1 alone
    status, _, runs = printed(SEED_LIST="2,0,2")  # the seeds given, each once, in their order
    assert status == 0 and runs == [("2", "rand-s2.json"), ("0", "rand-s0.json"), ("2", "byol-np-s2.json"),
                                    ("0", "byol-np-s0.json")]
    for env, says in [(dict(SEEDS="0,2"), "SEED_LIST"), (dict(SEEDS="1", SEED_LIST="1"), "not both"),
                      (dict(SEED_LIST="1,,2"), "SEED_LIST must"), (dict(SEED_LIST="01"), "SEED_LIST must"),
                      (dict(SEEDS="0"), "SEEDS must")]:
        status, stderr, runs = printed(**env)
        assert status == 2 and says in stderr and not runs, env  # a mistake: one line, nothing printed


@pytest.mark.parametrize("env,says", [(dict(GPUS="x"), "GPUS must be CUDA device numbers"),
                                      (dict(GPUS="0,,1"), "GPUS must"), (dict(THREADS="-1"), "THREADS must"),
                                      (dict(THREADS="0"), "THREADS must")])
def test_gpus_and_threads_are_checked_like_the_other_knobs(env, says):
    status, stderr, runs = printed(**env)
    assert status == 2 and says in stderr and not runs and len(stderr.splitlines()) == 1, stderr


def test_demo_profile_runs_byol_with_and_without_predictor_on_the_cpu():
    res = run_all(dict(PRINT="1", PROFILE="demo", SEEDS="", EPOCHS="", TRAIN_SUBSET="", ARGS=""), cwd=REPO)
    assert res.returncode == 0, res.stderr
    commands = res.stdout.splitlines()
    outs = [c.split("--out ")[1].split()[0] for c in commands]
    assert [os.path.relpath(o, REPO) for o in outs] == [f"results/demo/{n}-s0.json" for n in ("byol-mlp", "byol-np",
                                                                                              "raft-np")]
    for c in commands:
        assert c.startswith("OMP_NUM_THREADS=1 ") and "--device cpu" in c and "--encoder small" in c
    assert "--predictor none" in commands[1] and "--predictor mlp" in commands[0]


def test_the_demo_run_again_keeps_every_log_and_refused_runs_keep_its_table_and_figure(folder, tmp_path):
    """run_all.sh appends to each run's log under a dated line: the demo run twice, each log still holds what the
    first time wrote (its epoch rows, and a collapse line where one came) before the second's 'finished already'.
    Runs then refused (other settings) leave demo.md and demo.png as they were, and the failed runs are counted."""
    out = tmp_path / "demo"
    env = dict(PROFILE="demo", DATA_DIR=folder, OUT_DIR=str(out))
    first = run_all(env, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    logs = {p: open(p).read() for p in sorted(glob.glob(str(out / "logs" / "*.log")))}
    assert [os.path.basename(p) for p in logs] == ["byol-mlp-s0.log", "byol-np-s0.log", "raft-np-s0.log"]
    dated = r"==== \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC run_all.sh: OMP_NUM_THREADS=1 \S+ raft.py "
    for text in logs.values():
        assert re.match(dated, text) and re.search(r"^ +1 +-?\d+\.\d{4} ", text, re.M), text  # epoch 1's row
    assert run_all(env, cwd=tmp_path).returncode == 0
    for path, text in logs.items():
        now = open(path).read()
        assert now.startswith(text) and re.match(dated, now[len(text):]), now
        assert now.strip().endswith("finished already")
    drawn = {f: (out / f).stat().st_mtime_ns for f in ("demo.md", "demo.png")}
    refused = run_all({**env, "EPOCHS": "2", "RUNS": "byol-np"}, cwd=tmp_path)
    assert refused.returncode == 1
    assert "failed runs (1):" in refused.stdout
    assert refused.stdout.splitlines()[-1].endswith("holds a finished run with other settings (EPOCHS); remove it or "
                                                    "use another --out")  # run_all.sh's knob for raft.py's --epochs
    assert "tables: not written, no run finished" in refused.stdout
    assert {f: (out / f).stat().st_mtime_ns for f in drawn} == drawn
    assert all(open(path).read().startswith(text) for path, text in logs.items())


def test_offline_the_download_is_tried_once_and_the_error_names_data_dir(tmp_path):
    """No CIFAR-10 and no network: the first run tries the download, the others are not started, and the one line
    names run_all.sh's DATA_DIR, where raft.py's own line in the log names its --data-dir."""
    no_network = {k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    res = run_all(dict(PROFILE="demo", DATA_DIR=str(tmp_path / "cifar"), OUT_DIR=str(tmp_path / "demo"),
                       NO_PROXY="", no_proxy="", **no_network), cwd=tmp_path)
    if res.returncode == 0:
        pytest.skip("CIFAR-10 was downloaded after all")
    assert res.returncode == 1
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(f"run_all.sh: error: no CIFAR-10 in '{tmp_path}/cifar' and the download failed"), line
    assert "point DATA_DIR at a folder" in line and "--data-dir" not in line, line
    assert line.endswith("; the other 2 runs were not started"), line
    assert os.listdir(tmp_path / "demo" / "logs") == ["byol-mlp-s0.log"] and not (tmp_path / "cifar").exists()
    assert "point --data-dir at a folder" in (tmp_path / "demo" / "logs" / "byol-mlp-s0.log").read_text()


def test_an_unusable_out_dir_is_one_line_before_any_run(tmp_path):
    stand_in = tmp_path / "python"  # lists one run, and records any other call (a run started)
    stand_in.write_text(f"""#!/usr/bin/env bash
case "$*" in *--list-runs*) printf 'byol-np\\t--loss byol\\n';; *) echo "$*" >> {tmp_path / "calls"};; esac
""")
    stand_in.chmod(0o755)
    (tmp_path / "file").write_text("kept")
    for out_dir, says in [(tmp_path / "file", f"OUT_DIR {tmp_path}/file is a file, not a folder"),
                          (tmp_path / "file" / "x", f"OUT_DIR {tmp_path}/file/x: {tmp_path}/file is a file"),
                          ("/proc/raft-out", "OUT_DIR /proc/raft-out: ")]:  # not writable, even for root
        res = run_all(dict(PROFILE="demo", OUT_DIR=str(out_dir), PYTHON=str(stand_in)), cwd=tmp_path)
        assert res.returncode == 2 and res.stderr.startswith(f"run_all.sh: error: {says}"), res.stderr
        assert len(res.stderr.splitlines()) == 1 and "run " not in res.stdout, res.stdout
    assert (tmp_path / "file").read_text() == "kept" and not (tmp_path / "calls").exists()


# -----------------------------------------------------------------------------
# The benchmark, on the CPU (the CUDA graph check runs on CUDA only)


def test_benchmark_prints_and_saves_its_measurements(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench.main(["--encoder", "small", "--image-size", "16", "--batch-size", "16", "--train-subset", "64",
                "--epochs", "1", "--eval-epochs", "1", "--device", "cpu", "--out", str(out)])
    saved = json.loads(out.read_text())
    rows = saved["benchmark"]
    for key in ["augment_batched_images_per_s", "augment_per_image_images_per_s", "eager_step_images_per_s",
                "gflop_per_image", "eager_mfu_percent", "probe_features_s", "probe_augmented_s",
                "full_run_estimate_min"]:
        assert rows[key] > 0, key
    share = rows["augment_share_of_step_percent"]  # two views per step, at the step's own rate
    assert share == pytest.approx(100 * rows["eager_step_images_per_s"] / rows["augment_batched_images_per_s"])
    assert "augment_share_of_step_percent" in capsys.readouterr().out
    assert saved["command"].startswith("python tools/bench.py --encoder small")
    assert {"date", "cpu", "device", "config", "versions"} <= set(saved)
    assert saved["config"]["image_size"] == 16


# -----------------------------------------------------------------------------
# Figure 3 (App. F.1): representations on the circle; Figure 4(c): accuracy over epochs


def test_a_collapsed_representation_puts_its_mass_at_one_angle():
    """Figure 3 (App. F.1): PCA (centred) to 2-D, then onto the circle. A representation that sends most images to
    one point (BYOL without predictor, the paper's panel c) puts their mass at one angle; one spread around any
    common offset covers the circle."""
    g = torch.Generator().manual_seed(0)
    offset = 5 * torch.randn(1, 128, generator=g)
    collapsed = torch.cat([offset + 1e-3 * torch.randn(950, 128, generator=g), torch.randn(50, 128, generator=g)])
    spread = offset + torch.randn(1000, 128, generator=g)
    for reps, one_angle in [(collapsed, True), (spread, False)]:
        points = tables.circle_points(reps)
        torch.testing.assert_close(points.norm(dim=1), torch.ones(1000, dtype=points.dtype))  # on the unit circle
        density = tables.angular_density(points, bins=12)
        assert abs(density.mean().item() - 1) < 1e-9  # relative to a uniform spread
        if one_angle:
            bulk = points[:950]
            assert (bulk @ bulk.mean(0)).min() > 0.99 * bulk.mean(0).norm()  # 950 images at one angle
        else:
            assert points.mean(0).norm() < 0.1 and density.min() > 0.5 and density.max() < 2  # the circle covered


def test_view_pairs_join_the_two_views_of_one_image():
    g = torch.Generator().manual_seed(1)
    view1 = torch.randn(200, 128, generator=g)
    view2 = view1 + 0.01 * torch.randn(200, 128, generator=g)  # each image's views close, images far apart
    points = tables.circle_points(torch.cat([view1, view2]))
    pairs = tables.view_pairs(points, pairs=6, seed=3)
    assert pairs.shape == (6, 2, 2)
    assert (pairs[:, 0] - pairs[:, 1]).norm(dim=1).max() < 0.1
    assert torch.equal(pairs, tables.view_pairs(points, pairs=6, seed=3))  # seeded: the same figure again
    assert not torch.equal(pairs, tables.view_pairs(points, pairs=6, seed=4))


def test_figures_are_drawn_from_results_and_snapshots(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for name in ("byol-mlp", "byol-np", "supervised", "raft-np", "raft-np-b10"):
        result = fake_result(0, 50.0)
        result["history"][1]["knn_acc"] = 30.0  # the kNN monitor ran at epoch 2 only
        (tmp_path / f"{name}-s0.json").write_text(json.dumps(result))
        for epoch in (1, 3):
            torch.save(dict(epoch=epoch, f_theta=torch.randn(2, 64, 128)), tmp_path / f"{name}-s0.json.epoch{epoch}.pt")
    tables.main([str(tmp_path)])
    for figure in ("figure3.png", "figure4.png", "figure5.png"):
        assert (tmp_path / figure).stat().st_size > 10000, figure
    assert list(tables.snapshots(str(tmp_path), "byol-np")) == [1, 3]
    drawn = (tmp_path / "figure3.png").read_bytes()
    for snapshot in tmp_path.glob("*.epoch*.pt"):
        snapshot.unlink()  # the snapshots are gone: figure3.pt (kept with the results) draws the same figure
    tables.main([str(tmp_path)])
    assert (tmp_path / "figure3.png").read_bytes() == drawn
    fig, ax = plt.subplots()
    tables.plot_curve(ax, tables.load_results(str(tmp_path))["byol-np"], "knn_acc", "BYOL-NP")
    assert list(ax.lines[0].get_xdata()) == [2] and list(ax.lines[0].get_ydata()) == [30.0]
    plt.close(fig)


def test_ring_width_tells_every_density_apart_within_the_panel():
    """Figure 3's ring: a wider ring for every larger density up to all points in one bin (no clipping: 17.7 and
    25.5, BYOL-NP's peaks at epochs 1 and 7 of results/cpu, look different), inside the panel's ±2."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    densities = torch.linspace(0, tables.CIRCLE_BINS, 721)
    widths = tables.ring_width(densities)
    assert (widths.diff() > 0).all() and widths.max() <= 0.95
    assert tables.ring_width(25.5) - tables.ring_width(17.7) > 0.05
    fig, ax = plt.subplots()
    for seed in range(4):
        generator = torch.Generator().manual_seed(seed)
        collapsed = torch.randn(2, 64, 128, generator=generator) * torch.tensor([1.0] + [1e-4] * 127)  # one direction
        peak = tables.draw_circle(ax, collapsed)
        ring = ax.patches[-1].get_xy()  # the grey ring drawn: its outer edge reaches 1 + ring_width(peak)
        assert abs(torch.tensor(ring).norm(dim=1).max().item() - 1 - tables.ring_width(peak).item()) < 1e-3
        # two opposite spikes, at 0 and π: half the points in each of two bins, neither split by a bin edge at ±π
        density = tables.angular_density(tables.circle_points(collapsed.flatten(0, 1)))
        assert density.topk(2).values.sum().item() > 0.9 * tables.CIRCLE_BINS and peak > 25  # nearly all in two
    plt.close(fig)


def test_load_results_reads_run_files_only(tmp_path):
    """bench-augment-share.json matches *-s*.json: it is a benchmark, not seed 'hare' of a run 'bench-augment'."""
    (tmp_path / "byol-np-s0.json").write_text(json.dumps(fake_result(0, 30.0)))
    (tmp_path / "bench-augment-share.json").write_text(json.dumps(dict(benchmark=[])))
    assert list(tables.load_results(str(tmp_path))) == ["byol-np"]


def test_figure3_names_the_rows_it_does_not_draw(tmp_path):
    """A folder without the supervised run draws Figure 3 from row (b): the caption says which rows are absent."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    torch.save(dict(epoch=1, f_theta=torch.randn(2, 16, 8)), tmp_path / "byol-np-s0.json.epoch1.pt")
    caption = tables.plot_figure3(plt, str(tmp_path))._suptitle.get_text()
    assert "Not in this folder (no snapshots): (a) supervised, (b) BYOL, (d) BYOL', (e) RAFT." in caption


def test_figure3s_ring_is_closed_at_plus_minus_pi():
    """The ring is one band all the way round: the bins either side of ±π are joined (a white notch at 9 o'clock
    split BYOL-NP's collapse spike), so a point just outside the circle lies inside the grey ring at every angle."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    tables.draw_circle(ax, torch.randn(2, 512, 16, generator=torch.Generator().manual_seed(0)))  # spread: every bin
    ring = ax.patches[0].get_path()
    around = torch.linspace(0, 2 * math.pi, 721)
    assert all(ring.contains_point((1.01 * a.cos().item(), 1.01 * a.sin().item())) for a in around)  # no gap
    assert not any(ring.contains_point((0.99 * a.cos().item(), 0.99 * a.sin().item())) for a in around)  # inside
    lines = [line for line in ax.lines if line.get_marker() == "o"]  # the view pairs
    assert lines and {line.get_color() for line in lines} == {"k"}  # black: no run's colour
    plt.close(fig)


@pytest.mark.parametrize("low,high", [(0.22, 1.75), (4e-3, 0.35), (1.2e-10, 9e-10), (0.5, 0.6), (1.0, 1.0)])
def test_a_log_axis_has_labelled_ticks_below_and_above_its_values(low, high):
    """Figure 5(b) had no tick label above 10^0 for values up to 1.75: a label at or below the smallest value and
    one at or above the largest, whatever the range."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([1, 2], [low, high])
    tables.log_axis(ax, tables.plotted(ax))
    fig.canvas.draw()
    bottom, top = ax.get_ylim()
    labelled = [t.get_loc() for t in ax.yaxis.get_major_ticks()
                if t.label1.get_visible() and t.label1.get_text() and bottom * 0.999 <= t.get_loc() <= top * 1.001]
    assert min(labelled) <= low and max(labelled) >= high and len(labelled) >= 2, labelled
    plt.close(fig)


def test_figure4_legend_covers_no_curve_and_figure5_draws_only_panels_with_runs(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = {name: [fake_result(0, 50.0)] for name in ("byol-mlp", "byol-np", "raft-np", "raft-np-b10")}
    fig = tables.plot_figure4(plt, runs, str(tmp_path))
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes)  # one legend, under the panels
    assert all(ax.get_ylabel() for ax in fig.axes)
    fig = tables.plot_figure5(plt, runs, str(tmp_path))  # RAFT-NP's runs only: its column alone
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["(b) RAFT-NP"] and len(fig.axes) == 2
    (tmp_path / "figure5.png").unlink()
    assert tables.plot_figure5(plt, {"byol-mlp": runs["byol-mlp"]}, str(tmp_path)) is None  # no run of Figure 5
    assert not (tmp_path / "figure5.png").exists()  # no empty axes


def test_one_colour_per_run_and_per_beta_in_every_figure_and_nothing_written_over_a_curve(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba
    import demo
    names = ("byol-mlp", "byol-np", "byol-lp", "raft-np", "raft-np-b10", "byolp-np", "raft-lp", "raft-lp-b0.1")
    runs = {name: [fake_result(0, 50.0), fake_result(1, 51.0)] for name in names}
    curve = lambda line: re.sub(r" \(\d+ seeds\)$", "", line.get_label())  # the run's label, without "(2 seeds)"
    colours = lambda fig: {curve(line): to_rgba(line.get_color())
                           for ax in fig.axes for line in ax.lines if not line.get_label().startswith("_")}
    figure4 = colours(tables.plot_figure4(plt, runs, str(tmp_path)))
    for label, name in tables.FIGURE4:
        if name in runs:
            assert figure4[label] == to_rgba(tables.RUN_COLOURS[name]), name
    for result in runs["byol-np"] + runs["byol-mlp"] + runs["raft-np"]:
        result["config"].update(encoder="small", image_size=16, train_subset=1280, batch_size=64, tau=0.996,
                                eval_epochs=50, probe="features", epochs=3)
        for row in result["history"]:
            row["spread"] = 0.05  # collapsed: the curve runs along the threshold's region
    # without BYOL-MLP, so that matplotlib's own colour cycle would give BYOL-NP another colour
    demo_fig = demo.plot_demo(plt, {n: runs[n] for n in ("byol-np", "raft-np")}, str(tmp_path))
    for label, name in demo.DEMO[1:]:
        assert colours(demo_fig)[label] == to_rgba(tables.RUN_COLOURS[name]), name
    assert not any(ax.texts for ax in demo_fig.axes)  # the threshold is named in the title, not over the curves
    assert demo_fig.axes[1].get_ylim()[1] > 0  # L_uniform's frame reaches above 0, where a collapsed curve ends
    figure5 = tables.plot_figure5(plt, runs, str(tmp_path))
    by_beta = {}
    for ax in figure5.axes:
        for line in ax.lines:
            by_beta.setdefault(curve(line), set()).add(to_rgba(line.get_color()))
    assert set(by_beta) == {"β = 0.1", "β = 1", "β = 10"}
    assert all(len(c) == 1 for c in by_beta.values()) and len(set().union(*by_beta.values())) == 3
    run_colours = {to_rgba(c) for c in tables.RUN_COLOURS.values()}
    assert not run_colours & {to_rgba(c) for c in tables.BETA_COLOURS.values()}  # a β curve is no run's colour
    styles = {curve(line): line.get_linestyle() for ax in figure5.axes for line in ax.lines}
    assert len(set(styles.values())) == len(styles)  # and a line style each
    figure4_styles = {curve(line): line.get_linestyle() for ax in tables.plot_figure4(plt, runs, str(tmp_path)).axes
                      for line in ax.lines if not line.get_label().startswith("_")}
    assert len(set(figure4_styles.values())) == len(figure4_styles) == 3  # curves on one another told apart
    one_beta = {n: runs[n] for n in ("byol-mlp", "raft-np", "byolp-np")}  # β = 1 only in every panel
    assert tables.plot_figure5(plt, one_beta, str(tmp_path / "none")) is None  # a β figure with one β compares nothing
    assert len(figure5.legends) == 1 and not any(ax.get_legend() for ax in figure5.axes)
    fig, ax = plt.subplots()
    tables.draw_circle(ax, torch.randn(2, 64, 128))
    assert not ax.texts  # Figure 3's key circles are named in its caption, not over the ring
    assert "seed 0" in tables.FIGURE3_CAPTION and f"first {raft.SNAPSHOT_IMAGES}" in tables.FIGURE3_CAPTION
    plt.close("all")


def test_figure4_title_names_the_predictors_it_draws(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = {name: [fake_result(0, 50.0)] for name in ("byol-mlp", "byol-np")}
    title = tables.plot_figure4(plt, runs, str(tmp_path))._suptitle.get_text()
    assert title.startswith("Figure 4: BYOL with 2 of the paper's 4 predictors: BYOL (MLP), BYOL-NP")
    plt.close("all")


def test_demo_table_and_figure_say_which_run_collapsed(tmp_path, capsys):
    import demo
    for name, spreads in [("byol-mlp", [0.6, 0.5, 0.45]), ("byol-np", [0.5, 0.09, 0.05]), ("raft-np", [0.7, 0.6, 0.5])]:
        result = fake_result(0, {"byol-mlp": 40.0, "byol-np": 30.0, "raft-np": 20.0}[name])
        result["config"].update(encoder="small", image_size=16, train_subset=1280, batch_size=64, tau=0.996,
                                eval_epochs=5, probe="features", epochs=3)
        for row, s in zip(result["history"], spreads):
            row["spread"] = s
        (tmp_path / f"{name}-s0.json").write_text(json.dumps(result))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "byol-np-s0.log").write_text(  # an earlier training, then the one of the results file
        "==== run_all.sh\ncollapse: the spread fell to 0.080\n==== run_all.sh\nepoch 2 ...\n"
        "collapse: the spread fell to 0.090\nepoch 3 ...\n")
    demo.main([str(tmp_path)])
    table = (tmp_path / "demo.md").read_text()
    out = capsys.readouterr().out
    assert table in out  # printed too, with raft.py's own line from the run's log
    assert "byol-np seed 0, raft.py said: collapse: the spread fell to 0.090" in out and "0.080" not in out
    assert "mean of its last 5 epochs" in table  # the probe's 5, not 10
    cells = lambda label: [c.strip() for c in row_of(table, label)[0].split("|")[2:-1]]  # after the run's name
    # seed, epochs, then the last epoch's L_align, L_uniform, spread, the collapse's epoch, the probe's accuracy
    assert cells("BYOL-NP, no predictor (`byol-np`)")[:7] == ["0", "3", "0.002", "-2", "0.050", "epoch 2", "30.00"]
    assert cells("BYOL, MLP predictor (`byol-mlp`)")[5] == "no"
    assert "collapsed (below 0.1) from epoch 2" in table and "not collapsed (never below 0.1; lowest 0.450)" in table
    assert "1,280 training images, batch 64, 3 epochs (60 steps)" in table
    assert (tmp_path / "demo.png").stat().st_size > 10000
    with pytest.raises(SystemExit, match="^demo.py: error: no results files"):  # its own name on its errors
        demo.main([str(tmp_path / "logs")])


# -----------------------------------------------------------------------------
# claims.md: every claim's verdict computed by one rule


@pytest.mark.parametrize("direction,a,b,expected", [
    (">", [2.0, 3.0], [0.0, 1.0], "shown"),  # the seed ranges apart in the paper's direction
    (">", [0.0, 1.0], [2.0, 3.0], "not shown"),  # apart the other way
    (">", [0.0, 2.0], [1.0, 3.0], "cannot be decided"),  # overlapping
    (">", [1.0, 2.0], [0.0, 1.0], "cannot be decided"),  # touching counts as overlapping
    (">", [5.0], [0.0, 1.0], "cannot be decided"),  # one seed
    ("<", [0.0, 1.0], [2.0, 3.0], "shown"),
    ("<", [2.0, 3.0], [0.0, 1.0], "not shown"),
    ("<", [0.0, 2.0], [1.0, 3.0], "cannot be decided"),
    ("~", [0.0, 2.0], [1.0, 3.0], "shown"),  # similarity: the ranges overlap
    ("~", [1.0, 2.0], [2.0, 3.0], "shown"),
    ("~", [0.0, 1.0], [2.0, 3.0], "not shown"),  # apart, either way
    ("~", [2.0, 3.0], [0.0, 1.0], "not shown"),
    ("~", [0.0], [0.0, 1.0], "cannot be decided"),
    ("bound", [0.5, 1.0], None, "shown"),  # Theorem 4.1: every seed's largest ratio L_BYOL / bound at most 1
    ("bound", [0.5, 1.01], None, "not shown"),
])
def test_claim_verdict_rule(direction, a, b, expected):
    assert tables.verdict(direction, a, b) == expected


@pytest.mark.parametrize("direction,a,b,expected", [
    ("<", [0.8, 0.5], [1.0, 0.6], "shown"),  # each seed falls, though the seed ranges overlap
    (">", [0.8, 0.5], [1.0, 0.6], "not shown"),  # each seed changes the other way
    ("<", [0.8, 0.7], [1.0, 0.6], "cannot be decided"),  # the seeds disagree
    ("<", [0.8, 0.6], [1.0, 0.6], "cannot be decided"),  # a seed does not change
    ("<", [0.8], [1.0], "cannot be decided"),  # one seed
])
def test_a_claim_inside_one_run_compares_each_seed_with_itself(direction, a, b, expected):
    assert tables.verdict(direction, a, b, paired=True) == expected


def test_a_claim_inside_one_run_is_paired_by_seed_and_one_across_runs_is_not():
    def run(seed, gaps):
        return dict(config=dict(seed=seed, epochs=2), history=[dict(epoch=e + 1, w_identity_gap=g)
                                                               for e, g in enumerate(gaps)])
    runs = {"lp": [run(0, [1.0, 0.8]), run(1, [0.6, 0.5])], "other": [run(0, [1.0, 1.0]), run(1, [0.6, 0.6])]}
    within = ("t", "W moves towards I", "w_identity_gap", ("lp", tables.LAST), "<", ("lp", 1))
    across = ("t", "below other's epoch 1", "w_identity_gap", ("lp", tables.LAST), "<", ("other", 1))
    assert tables.judge(runs, within)[2] == "shown"  # 0.8 < 1.0 and 0.5 < 0.6
    assert tables.judge(runs, across)[2] == "cannot be decided"  # ranges [0.5, 0.8] and [0.6, 1.0] overlap


def test_the_rand_baselines_epoch_is_its_pass_and_it_has_no_numbered_epoch():
    rand = [dict(config=dict(seed=s, epochs=0), history=[dict(epoch=1, align=1.2 + s / 100)]) for s in (0, 1)]
    trained = [dict(config=dict(seed=s, epochs=7), history=[dict(epoch=e + 1, align=0.5) for e in range(7)])
               for s in (0, 1)]
    runs = {"rand": rand, "raft-np": trained}
    last = ("t", "below the untrained network's", "align", ("raft-np", tables.LAST), "<", ("rand", tables.LAST))
    numbered = ("t", "below rand at epoch 1", "align", ("raft-np", tables.LAST), "<", ("rand", 1))
    assert tables.judge(runs, last)[1:3] == ([1.2, 1.21], "shown")
    assert tables.judge(runs, numbered)[2:] == ("cannot be decided",
                                                "rand does not train (--epochs 0): it has its pass, no epoch 1")
    text = tables.claims_markdown(runs, [last])
    assert "| rand, pass | 1.2 / 1.21 | **shown** |" in text and "raft-np, last" in text


def test_claims_md_reads_each_seed_and_says_what_is_missing(tmp_path):
    runs = {"up": [fake_result(0, 40.0), fake_result(1, 41.0)], "down": [fake_result(0, 30.0), fake_result(1, 39.0)],
            "one": [fake_result(0, 50.0)]}
    for r in runs["up"]:
        for e, h in enumerate(r["history"]):  # Theorem 4.1's terms: ||a + b||² <= 2||a||² + 2||b||² (λ = 1)
            h.update(byol_loss=0.3 + 0.02 * e, cross_model=0.2, w_identity_gap=0.1 * e)
    r = runs["up"][0]
    r["config"].update(loss="raft", alpha=1.0, beta=10.0)  # λ = 10: bound 1.1 × (align + 10 × 0.2)
    claims = [("t1", "up above down", tables.ACC, ("up", None), ">", ("down", None)),
              ("t2", "one seed", tables.ACC, ("one", None), ">", ("down", None)),
              ("t3", "gap grows", "w_identity_gap", ("up", tables.LAST), ">", ("up", 1)),
              ("t4", "gap of down", "w_identity_gap", ("down", tables.LAST), ">", ("down", 1)),
              ("t5", "a late epoch", "uniform", ("up", 300), "<", ("up", 1)),
              ("t6", "bound", "bound", ("up", None), "bound", None),
              ("t7", "bound, not logged", "bound", ("down", None), "bound", None)]
    a, _, result, why = tables.judge(runs, claims[5])
    hist = r["history"]
    assert a[0] == pytest.approx(max(h["byol_loss"] / (1.1 * (h["align"] + 2.0)) for h in hist)) and result == "shown"
    text = tables.claims_markdown(runs, claims)
    assert text.index("**The rule.**") < text.index("| t1 |")  # opens with the rule
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| t")}
    assert "| 40 / 41 | > | down | 30 / 39 | **shown** |" in rows["t1"]  # each seed's value, both sides
    assert "**cannot be decided** |" in rows["t2"]  # one seed
    assert "| up, last | 0.2 / 0.2 | > | up, 1 | 0 / 0 | **shown** |" in rows["t3"]  # a metric at two epochs
    assert "**cannot be decided**: w_identity_gap not logged in the files of down |" in rows["t4"]
    assert "epoch 300 not in the files of up" in rows["t5"]
    assert "not logged in the files of down" in rows["t7"]
    assert text.rstrip().endswith("Verdicts of the 7 empirical claims: 3 shown, 0 not shown, 4 cannot be decided (3 of "
                                  "them for a metric, epoch or run the files do not hold).")


def test_claims_md_counts_the_codes_identities_apart_from_the_empirical_claims():
    """The Tan rows (10), the mirror (11) and Theorem 4.1's bound (22) hold at any scale: their verdicts check the code,
    and a count that mixes them with the empirical claims says more than the runs show."""
    assert [c[0] for c in tables.CLAIMS if tables.identity(c[0])] == \
        [*(f"10{x}" for x in "abcdef"), *(f"11{x}" for x in "abcd"), *(f"22{x}" for x in "abcdefghij")]
    runs = {"up": [fake_result(0, 40.0), fake_result(1, 41.0)], "down": [fake_result(0, 30.0), fake_result(1, 39.0)]}
    claims = [("1z", "up above down", tables.ACC, ("up", None), ">", ("down", None)),
              ("10z", "up ~ down", tables.ACC, ("up", None), "~", ("down", None)),
              ("22z", "no bound logged", "bound", ("down", None), "bound", None)]
    last = tables.claims_markdown(runs, claims).rstrip().splitlines()[-1]
    assert last.startswith("Verdicts of the 1 empirical claims: 1 shown, 0 not shown, 0 cannot be decided (0 of them")
    assert "the 2 claims that an identity of the code decides at any scale and any training" in last
    assert last.endswith(": 0 shown, 1 not shown, 1 cannot be decided (1 of them for a metric, epoch or run the files "
                         "do not hold).")


def test_claims_name_runs_of_the_run_list_and_write_tables_writes_claims_md(tmp_path):
    for cid, _, metric, (run_a, _), direction, side_b in tables.CLAIMS:
        assert run_a in tables.RUNS and (side_b is None or side_b[0] in tables.RUNS), cid
        assert direction in (">", "<", "~", "bound"), cid
    assert len({c[0] for c in tables.CLAIMS}) == len(tables.CLAIMS)  # ids unique
    (tmp_path / "byol-np-s0.json").write_text(json.dumps(fake_result(0, 30.0)))
    tables.main([str(tmp_path)])
    assert "Verdicts of the" in (tmp_path / "claims.md").read_text()


def test_identical_lists_added_keys_apart_and_still_compares_every_shared_number(tmp_path, capsys):
    """A re-run by a raft.py that logs more (cross_model, spread, ...) is identical when every number both files hold
    is equal: the new keys are listed as added, not counted as differences."""
    old = fake_result(0, 70.0)
    new = json.loads(json.dumps(old))
    for e, row in enumerate(new["history"]):
        row.update(spread=0.5 + e, w_identity_gap=0.1 * e)
    new["spread"] = 0.7
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    assert compare.identical(tmp_path / "old.json", tmp_path / "new.json")
    out = capsys.readouterr().out
    assert f"added, only in {tmp_path / 'new.json'}: history.0.spread" in out
    assert f"added, only in {tmp_path / 'new.json'}: spread" in out
    assert out.strip().endswith("differ; 7 keys only in one file (not compared)")
    assert "0 differ" in out.strip().splitlines()[-1]
    new["history"][1]["uniform"] = -2.0000001  # a shared number off by a little: not identical
    (tmp_path / "new.json").write_text(json.dumps(new))
    assert not compare.identical(tmp_path / "old.json", tmp_path / "new.json")
    assert "history.1.uniform: -2.0 != -2.0000001" in capsys.readouterr().out
    new["history"][1]["uniform"] = -2.0
    new["history"].append(dict(new["history"][-1], epoch=4))  # one epoch more: its keys are only in one file, but the
    (tmp_path / "new.json").write_text(json.dumps(new))      # history's length differs
    assert not compare.identical(tmp_path / "old.json", tmp_path / "new.json")
    assert "history: 3 entries != 4 entries" in capsys.readouterr().out


def test_trajectories_show_the_new_metrics_only_where_logged(tmp_path):
    old, new = fake_result(0, 30.0), fake_result(1, 31.0)
    for row in new["history"]:
        row.update(spread=0.25, w_identity_gap=1.5, cross_model=0.1, byol_loss=0.3)
    text = tables.trajectories_markdown({"byol-lp": [old, new], "byol-np": [fake_result(0, 20.0)]})
    lp, np_ = text.split("## byol-np")[0], text.split("## byol-np")[1]
    assert ("| epoch | loss | L_align, eq. 1 | L_uniform, eq. 2 | L_cross-model, eq. 5 | L_BYOL, eq. 3 "
            "| spread of f_θ | ‖W − I‖/‖I‖ |") in lp
    # a file without the new metrics: '-'; a run whose files all lack them: no column
    assert "| 3 | 0.1 / 0.1 | 0.002 / 0.0022 | -2 / -2 | - / 0.1 | - / 0.3 | - / 0.25 | - / 1.5 |" in lp
    assert "spread" not in np_


def markdown_links(text):
    """The relative targets of a markdown text's links [text](target), anchors dropped."""
    targets = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", text)
    return [t for t in targets if not re.match(r"[a-z]+:", t)]


def test_every_relative_link_of_the_documentation_resolves():
    """A link is relative to the page that holds it: docs/choices.md links results/ as ../results/."""
    assert markdown_links("[a](../results/x.md#b) [c](https://x.org) [d](y.png)") == ["../results/x.md", "y.png"]
    listed = subprocess.run(["git", "-C", REPO, "ls-files", "*.md"], capture_output=True, text=True).stdout.split()
    pages = listed or [os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "**", "*.md"), recursive=True)]
    assert "README.md" in pages
    broken = [f"{page}: {target}" for page in pages
              for target in markdown_links(open(os.path.join(REPO, page), encoding="utf-8").read())
              if not os.path.exists(os.path.join(REPO, os.path.dirname(page), target))]
    assert not broken, broken


# -----------------------------------------------------------------------------
# tools/longer.py: the same runs trained longer


def test_the_readme_demo_writes_where_git_does_not_look():
    """The demo's folder (weights, logs) never shows in git status."""
    out_dir = re.search(r"^ +PROFILE=demo .*OUT_DIR=(\S+) bash run_all.sh", open(os.path.join(REPO, "README.md")).read(),
                        re.M).group(1)
    if subprocess.run(["git", "-C", REPO, "rev-parse"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    for path in [f"{out_dir}/byol-mlp-s0.json", f"{out_dir}/logs/byol-mlp-s0.log", f"{out_dir}/demo.png"]:
        assert subprocess.run(["git", "-C", REPO, "check-ignore", "-q", path]).returncode == 0, path


def test_longer_checks_the_first_epochs_number_by_number_and_leaves_out_the_clock():
    import longer
    short = fake_result(0, 30.0)
    long = json.loads(json.dumps(short))
    long["history"] += [dict(epoch=4, loss=0.05, align=1e-3, uniform=-1.0)]
    for row in short["history"]:
        row["seconds"] = 1.0
    for row in long["history"]:
        row["seconds"] = 99.0  # the clock differs: not a difference
    assert longer.first_epochs(short, long) == (12, 0, 0.0, "", None)  # 3 epochs x (epoch, loss, align, uniform)
    long["history"][1]["align"] += 0.25
    assert longer.first_epochs(short, long) == (12, 1, pytest.approx(0.25), "align, epoch 2", 2)


def test_longer_judges_each_claim_at_both_lengths_with_the_shorter_folders_rand_baseline(tmp_path):
    import longer
    short_dir, long_dir = tmp_path / "short", tmp_path / "long"
    short_dir.mkdir(), long_dir.mkdir()
    for seed in (0, 1):
        rand = fake_result(seed, 22.0 + seed, epochs=0)
        (short_dir / f"rand-s{seed}.json").write_text(json.dumps(rand))
        for name, acc_short, acc_long in [("byol-np", 31.0, 20.0), ("byol-mlp", 35.0, 40.0)]:
            (short_dir / f"{name}-s{seed}.json").write_text(json.dumps(fake_result(seed, acc_short + seed, epochs=3)))
            long = fake_result(seed, acc_long + seed, epochs=12)
            for row in long["history"]:
                row["spread"] = 0.01 if name == "byol-np" else 0.5  # logged by the longer files only
            (long_dir / f"{name}-s{seed}.json").write_text(json.dumps(long))
    # a seed the shorter folder lacks, which would make 1a undecided: the verdicts compare the seeds both folders hold
    (long_dir / "byol-np-s2.json").write_text(json.dumps(fake_result(2, 45.0, epochs=12)))
    text, e_short = longer.longer_markdown(str(short_dir), str(long_dir))
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert e_short == 3 and "# 3 and 12 epochs" in text
    assert "**not shown** | 20 / 21 | < 22 / 23 | **shown** | **not shown → shown** |" in rows["1b"]  # rand from short
    assert rows["1a"].endswith("**shown** |  |")  # shown at both lengths: not moved
    assert rows["20a"].endswith("| **shown** | not counted: the 3-epoch files do not log `spread` |")
    assert text.rstrip().endswith("Verdicts that moved: 1.")


# tools/gpu_check.sh: first contact with a GPU machine, here on the CPU


def gpu_check(env, *argv, stdout=subprocess.PIPE):
    env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    return subprocess.run(["bash", os.path.join(TOOLS, "gpu_check.sh"), *argv], env=env, cwd="/", stdout=stdout,
                          stderr=subprocess.PIPE, text=True)


def test_gpu_check_counts_missing_data_as_a_failure_finds_python3_and_records_the_commit(tmp_path):
    """With python3 alone on PATH (a stand-in: no torch), no .git answer but COMMIT, and no CIFAR-10: the first run
    that needs the data fails and says so, the others are skipped, the last line names it first, exit 1."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text("""#!/usr/bin/env bash
if [ "$1" = raft.py ]; then echo "raft.py: error: no CIFAR-10 in 'nowhere' and the download failed" >&2; exit 1; fi
case "$*" in *"import sys, torch, torchvision"*) printf '0 cpu\\npython 3 (stand-in)\\n';; *) echo "python3: $*";; esac
""")
    (bin_dir / "python3").chmod(0o755)
    assert not any(os.path.exists(os.path.join(d, "python")) for d in ("/usr/bin", "/bin"))
    env = dict(PATH=f"{bin_dir}:/usr/bin:/bin", PYTHON=None, COMMIT="abc123", DATA_DIR=str(tmp_path / "nowhere"))
    res = gpu_check(env, str(tmp_path / "check"))
    assert res.returncode == 1, res.stdout + res.stderr
    summary = (tmp_path / "check" / "summary.txt").read_text()
    assert re.search(r"^no-amp +1 +\d+  failed \(no data\): raft.py: error: no CIFAR-10 in", summary, re.M), summary
    assert re.search(r"^quick +- +-  skipped: no CIFAR-10 \(see no-amp\)", summary, re.M), summary
    assert summary.strip().splitlines()[-1].startswith(f"no CIFAR-10 in {tmp_path / 'nowhere'} (logs/no-amp.log)")
    assert "python3: tools/bench.py" in (tmp_path / "check" / "logs" / "bench.log").read_text()  # python3 found
    assert "commit: abc123" in (tmp_path / "check" / "environment.txt").read_text()
    again = gpu_check(env, str(tmp_path / "check"))  # a folder with results: nothing overwritten
    assert again.returncode == 2 and "already holds files" in again.stderr


def test_gpu_check_dry_run_parses_every_command_and_names_what_it_skips(folder, tmp_path):
    """DRY_RUN=1 on the CPU: every command line parsed by raft.py's parser and shown on the terminal, the graph check
    listed for each flag set that changes what the graph records (skipped without CUDA), exit 0, and nothing written
    under results/; without CIFAR-10 in DATA_DIR, a failure (exit 1) as in a real run."""
    before = sorted(glob.glob(os.path.join(REPO, "results", "*")))
    with open(tmp_path / "terminal.txt", "w") as terminal:  # the terminal, or a file as `> log` makes it
        res = gpu_check(dict(DRY_RUN="1", PYTHON=sys.executable, TMPDIR=str(tmp_path), OUT=None, DATA_DIR=folder),
                        stdout=terminal)
    assert res.returncode == 0, res.stderr
    assert sorted(glob.glob(os.path.join(REPO, "results", "*"))) == before
    (summary,) = glob.glob(str(tmp_path / "gpu_check-cpu.*" / "summary.txt"))
    text = open(summary).read()
    assert (tmp_path / "terminal.txt").read_text() == text and "tools/bench.py" in text  # every step's command line
    nothing = gpu_check(dict(DRY_RUN="1", PYTHON=sys.executable, OUT=None, DATA_DIR=str(tmp_path / "nowhere")),
                        str(tmp_path / "no-data"))
    assert nothing.returncode == 1, nothing.stdout + nothing.stderr
    assert re.search(r"^data +- +-  failed \(no data\): no CIFAR-10 in ", nothing.stdout, re.M), nothing.stdout
    assert nothing.stdout.strip().splitlines()[-1].startswith(f"no CIFAR-10 in {tmp_path / 'nowhere'}: carry it")
    assert re.search(r"^flags +0 +\d+  ok", text, re.M), text
    for flags in ["--loss supervised", "--blur 0.5", "--solarize 0.5", "--bn-views joint", "--tangent"]:
        assert re.search(rf"^check-\S+ +- +-  skipped: needs a CUDA device\n +\S+ tools/bench.py .*{flags}.* "
                         rf"--graph-check$", text, re.M), flags
    assert not re.search(r"^tests", text, re.M)  # the CPU suite is not run on the device


def test_a_claim_with_a_norm_stays_in_its_table_cell():
    claim = ("t", "||W - I||_F falls", "w_identity_gap", ("lp", tables.LAST), "<", ("lp", 1))
    row = next(line for line in tables.claims_markdown({}, [claim]).splitlines() if line.startswith("| t |"))
    assert len(re.findall(r"(?<!\\)\|", row)) == 10  # the 9 columns' borders only


# -----------------------------------------------------------------------------
# The conclusion (tables.conclusion): the README's status, computed from the largest scale's files

def conclusion_folder(tmp_path, accs):
    """A results folder with the conclusion's runs: {run: [each seed's probe accuracy]}."""
    for name, values in accs.items():
        for seed, acc in enumerate(values):
            result = fake_result(seed, acc, epochs=28)
            result["config"].update(train_subset=2560, image_size=32)
            for row in result["history"]:
                row["spread"] = 0.01 if name == "byol-np" else 0.5
            (tmp_path / f"{name}-s{seed}.json").write_text(json.dumps(result))
    return str(tmp_path)


@pytest.mark.parametrize("raft_accs,says", [
    ([37.0, 38.0, 37.5], ("the seed ranges of RAFT and BYOL′ overlap, as the mirror predicts", "RAFT above BYOL: "
                          "*not shown*", "every seed of BYOL is above every seed of RAFT")),
    ([42.0, 43.0, 44.0], ("every seed of RAFT is above every seed of BYOL′: a finding against the mirror, unexplained",
                          "RAFT above BYOL: *shown*", "every seed of RAFT is above every seed of BYOL,")),
    ([39.0, 41.0, 40.5], ("the seed ranges of BYOL and RAFT overlap", "RAFT above BYOL: *cannot be decided*"))])
def test_the_conclusion_says_what_the_seeds_show(tmp_path, raft_accs, says):
    folder = conclusion_folder(tmp_path, {"byol-mlp": [40.0, 41.0, 40.5], "byolp-mlp": [37.2, 38.2, 37.9],
                                          "raft-mlp": raft_accs, "byol-np": [27.0, 26.0]})
    text = tables.conclusion(folder)
    for phrase in says:
        assert phrase in text, phrase
    assert "spread of f_θ of 0.010 / 0.010 (collapsed: below 0.1)" in text and "probes at 27.00 / 26.00 %" in text
    assert "3 seeds of BYOL, BYOL′ and RAFT, 2 without a predictor" in text
    assert "71.31 % against BYOL′ 69.21 %" in text  # the paper's numbers, named as the paper's


def test_the_readme_states_the_conclusion_of_the_largest_scale_as_computed():
    """The README's status is tables.conclusion of results/cpu-long, word for word: a number retyped by hand, or
    left behind when the files change, fails here."""
    readme = open(os.path.join(REPO, "README.md")).read()
    assert tables.conclusion(os.path.join(REPO, "results", "cpu-long")) in readme
