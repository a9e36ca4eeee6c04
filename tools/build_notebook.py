"""Build the Annotated RAFT: docs/annotated_raft.py (a jupytext percent script) -> docs/annotated_raft.ipynb,
executed top to bottom, outputs included.

    RAFT_DATA_DIR=data/cifar10 python tools/build_notebook.py      # needs requirements-docs.txt
    python tools/build_notebook.py --out /tmp/check.ipynb           # elsewhere (CI: on a generated image folder)

RAFT_DATA_DIR is raft.py's --data-dir (default data/: torchvision downloads CIFAR-10 there). The notebook runs with
docs/ as its working directory, as in Jupyter; a relative RAFT_DATA_DIR is taken from the repository root. Fails
(exit status 1) if a cell raises, or if an output holds an absolute path of this machine.
"""

import argparse
import os
import sys
import time

import jupytext
import nbformat
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(REPO, "docs", "annotated_raft.py")


def leaked_paths(nb, roots):
    """Outputs that name one of the given absolute paths (this machine's folders have no place in the page)."""
    found = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            text = str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", "")) \
                + str(output.get("data", {}).get("text/markdown", "")) + str(output.get("traceback", ""))
            found += [f"cell {i}: {root}" for root in roots if root in text]
    return found


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(REPO, "docs", "annotated_raft.ipynb"), help="the executed notebook")
    p.add_argument("--timeout", type=int, default=3600, help="seconds one cell may run")
    args = p.parse_args(argv)
    os.environ["RAFT_DATA_DIR"] = os.path.join(REPO, os.environ.get("RAFT_DATA_DIR", "data"))  # absolute stays
    nb = jupytext.read(SOURCE)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=args.timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": os.path.join(REPO, "docs")}}).execute()
    seconds = time.perf_counter() - t0
    for cell in [c for c in nb.cells if c.cell_type == "code"]:  # one block per stream, as Jupyter shows them
        merged = []
        for output in cell.get("outputs", []):
            if merged and output.output_type == "stream" == merged[-1].output_type and output.name == merged[-1].name:
                merged[-1].text += output.text
            else:
                merged.append(output)
        cell.outputs = merged
    leaks = leaked_paths(nb, sorted({REPO, os.environ["RAFT_DATA_DIR"], os.path.expanduser("~"), "/tmp/"}))
    if leaks:
        sys.exit(f"build_notebook.py: error: an output names a path of this machine: {'; '.join(leaks)}")
    nbformat.write(nb, args.out)
    print(f"{os.path.relpath(args.out)}: {len(nb.cells)} cells executed in {seconds:.0f} s "
          f"(load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
