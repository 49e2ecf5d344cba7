"""The README's Python snippets run as written (the ones that need no dataset on disk)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def _block(marker: str) -> str:
    found = [b for b in BLOCKS if marker in b]
    assert len(found) == 1, f"README has {len(found)} python blocks containing {marker!r}"
    return found[0]


@pytest.mark.parametrize(
    "markers",
    [
        (
            "model = ModelLlama(",
            "with torch.inference_mode():",
        ),  # build, run, save/load, then KV-cache decode
        ("collect_streams(family",),
        ("collect_streams(family", "run_streams("),  # the engine snippet reuses the tasks snippet's names
        ('gymnasium.make("mouse/DarkRoom-v0"',),
        ("MouseDqnLoss(gamma=0.9)",),  # the torchrl training loop (needs the torchrl extra)
    ],
    ids=["model", "tasks", "engine", "gymnasium", "torchrl"],
)
def test_readme_snippet_runs(markers, tmp_path):
    if any("MouseDqnLoss" in m for m in markers):
        pytest.importorskip("torchrl")  # the optional torchrl extra
    code = "\n".join(_block(m) for m in markers)
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]


def test_readme_losses_snippet_runs(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", _block('LOSSES["sp"]')], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "sp_loss" in run.stdout


def test_readme_data_snippet_runs_on_the_readme_collect_command(tmp_path):
    """The Datasets section as typed: its first mouse-collect command, then its Python snippet."""
    collect = next(
        line for line in README.splitlines() if line.startswith("mouse-collect task=darkroom num_tasks=200")
    )
    script = Path(sys.executable).parent / "mouse-collect"
    done = subprocess.run(
        [str(script), *collect.split()[1:], "show_progress=false"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = subprocess.run(
        [sys.executable, "-c", _block('load_dataset("data/darkroom")')],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[:2] == ["5", "200"]  # num_actions, num_streams
