"""Tests of the Annotated RAFT (docs/annotated_raft.py, built into docs/annotated_raft.ipynb by
tools/build_notebook.py): the committed notebook holds the script's cells, executed, and names only what raft.py has.
Cheap (no execution: CI executes the notebook in a step of its own, .ci/run)."""

import json
import os
import re
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import raft  # noqa: E402

SCRIPT = os.path.join(REPO, "docs", "annotated_raft.py")
NOTEBOOK = os.path.join(REPO, "docs", "annotated_raft.ipynb")


def percent_cells(text):
    """(cell type, source) of each cell of a jupytext percent script: the YAML header skipped, markdown lines
    uncommented, blank lines around a cell dropped."""
    lines = text.splitlines()
    if lines and lines[0] == "# ---":
        lines = lines[lines.index("# ---", 1) + 1:]
    cells = []
    for line in lines:
        marker = re.match(r"# %%(.*)$", line)
        if marker:
            cells.append(("markdown" if "[markdown]" in marker.group(1) else "code", []))
        elif cells:
            cells[-1][1].append(line)
    uncomment = lambda line: line[2:] if line.startswith("# ") else line[1:] if line.startswith("#") else line
    return [(kind, "\n".join(uncomment(x) if kind == "markdown" else x for x in body).strip("\n"))
            for kind, body in cells]


def notebook():
    with open(NOTEBOOK) as f:
        return json.load(f)


def notebook_cells(nb):
    source = lambda cell: "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    return [(cell["cell_type"], source(cell)) for cell in nb["cells"]]


def test_percent_parser():
    text = "# ---\n# jupyter:\n# ---\n\n# %% [markdown]\n# # Title\n#\n# $x$\n\n# %%\nx = 1\n\n\ndef f():\n    pass\n\n\n"
    assert percent_cells(text) == [("markdown", "# Title\n\n$x$"), ("code", "x = 1\n\n\ndef f():\n    pass")]


def test_notebook_cells_are_the_scripts():
    """The committed notebook is the script built (outputs aside): the two never drift apart."""
    with open(SCRIPT) as f:
        script = percent_cells(f.read())
    built = notebook_cells(notebook())
    assert len(built) == len(script), f"{len(built)} cells in the notebook, {len(script)} in the script: rebuild"
    for i, (a, b) in enumerate(zip(built, script)):
        assert a == b, f"cell {i} differs from the script: rebuild with tools/build_notebook.py"
    try:  # the parser above reads the script as jupytext does (where jupytext is installed: requirements-docs.txt)
        import jupytext
    except ImportError:
        return
    assert notebook_cells(jupytext.read(SCRIPT)) == script


def test_notebook_is_executed_without_errors_or_local_paths():
    code = [cell for cell in notebook()["cells"] if cell["cell_type"] == "code"]
    assert all(isinstance(cell.get("execution_count"), int) for cell in code), "a cell was not executed"
    assert all(output["output_type"] != "error" for cell in code for output in cell["outputs"])
    text = json.dumps([[output.get("text"), {k: v for k, v in output.get("data", {}).items() if k.startswith("text/")}]
                       for cell in code for output in cell["outputs"]])  # the text, not the base64 of images
    for root in ["/work/", "/tmp/", "/root/", "/home/"]:
        assert root not in text, f"an output names {root}"


def test_every_name_the_script_takes_from_raft_exists():
    """Renaming a function of raft.py fails here, not only when the notebook is built again."""
    with open(SCRIPT) as f:
        code = "\n".join(source for kind, source in percent_cells(f.read()) if kind == "code")
    names = set(re.findall(r"\braft\.(?!py\b)(\w+)", code))  # raft.X, not the file's name
    assert {"train_step", "objective", "mirror_predictor"} <= names
    assert sorted(n for n in names if not hasattr(raft, n)) == []


def test_every_check_has_a_control_and_the_page_lists_them():
    """The notebook's last table lists every live check with its control's value: a check whose control passes too
    stops the build (the script asserts it), so each row here is a check that could fail."""
    with open(SCRIPT) as f:
        script = f.read()
    calls = len(re.findall(r"^\s*check\(", script, flags=re.M))
    assert calls >= 15 and "assert abs(control - expected) > margin" in script
    tables = [output["data"]["text/markdown"] for cell in notebook()["cells"] if cell["cell_type"] == "code"
              for output in cell["outputs"] if "text/markdown" in output.get("data", {})]
    last = [t for t in tables if (t if isinstance(t, str) else "".join(t)).startswith("| ✓ check |")][-1]
    rows = (last if isinstance(last, str) else "".join(last)).splitlines()[2:]
    assert len(rows) >= calls and all(row.count(" | ") >= 4 for row in rows)


def test_markdown_cells_are_short():
    """Prose beside the code, not instead of it: no markdown cell over 130 words (display formulas aside)."""
    with open(SCRIPT) as f:
        cells = percent_cells(f.read())
    words = [len(re.sub(r"\$\$.*?\$\$", " ", source, flags=re.S).split())
             for kind, source in cells if kind == "markdown"]
    assert max(words) <= 130, words
