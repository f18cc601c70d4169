"""Both notebooks run top to bottom on the session's tiny sweep (so they never rot) and save their figures."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient
from sweep_fixtures import ROOT

NOTEBOOKS = ROOT / "notebooks"


def execute(name: str, env: dict[str, str], monkeypatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()


@pytest.mark.parametrize(("name", "figures"), [
    ("results_analysis.ipynb", ["methods_psnr", "psnr_vs_defocus", "psnr_vs_event_density", "search_curves",
                                "crops", "depth"]),
    ("simulator_tour.ipynb", ["tour_frames", "tour_events", "tour_stack", "tour_depth"]),
])
def test_notebook_runs_on_the_tiny_sweep(tiny_sweep, tmp_path, monkeypatch, name, figures):
    runs = tiny_sweep.root / "evfocus"
    execute(name, {"EVFOCUS_RUNS": str(runs), "EVFOCUS_SWEEP": str(tiny_sweep.folder),
                   "EVFOCUS_RUN": str(runs / "tiny-000"), "EVFOCUS_FIGURES": str(tmp_path / "figures"),
                   "EVFOCUS_MAX_SWEEPS": "1", "WANDB_MODE": "offline"}, monkeypatch)
    assert sorted(p.stem for p in (tmp_path / "figures").glob("*.png")) == sorted(figures)
