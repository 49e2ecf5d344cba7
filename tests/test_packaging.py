"""The package layout that makes `mouse.conf` (the Hydra config root) survive installation."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = set()
    for init in (ROOT / "src" / "mouse").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT / "src")
        found.add(".".join(rel.parts))
    for init in (ROOT / "conf").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT / "conf")
        found.add(".".join(("mouse", "conf", *rel.parts)))
    assert found - listed == set(), "add these packages to [tool.setuptools] packages and package-dir"
    assert listed - found == set(), "these listed packages have no __init__.py"


def test_every_conf_group_is_mapped_into_the_package():
    package_dir = _pyproject()["tool"]["setuptools"]["package-dir"]
    for folder in [ROOT / "conf", *[p for p in (ROOT / "conf").rglob("*") if p.is_dir()]]:
        if folder.name == "__pycache__":
            continue
        rel = folder.relative_to(ROOT)
        name = ".".join(("mouse", *rel.parts))
        assert package_dir.get(name) == rel.as_posix(), f"{name} must map to {rel.as_posix()}"
        assert (folder / "__init__.py").exists(), f"{rel}/__init__.py is missing"


def test_installed_package_ships_the_config_tree():
    from importlib.resources import files

    names = {p.name for p in files("mouse.conf.backbone").iterdir()}
    assert {"llama.yaml", "qwen3.yaml", "none.yaml"} <= names


def test_plain_install_runs_the_console_scripts_from_another_directory(tmp_path):
    """A non-editable install (the wheel) ships the config tree: the apps compose from any folder."""
    import os
    import subprocess
    import sys

    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheel_dir, ROOT], check=True)
    (wheel,) = wheel_dir.glob("mouse-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", target, wheel], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import mouse; print(mouse.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(target)), where.stdout
    for app, extra in (("train", []), ("collect", []), ("eval", ["checkpoint=x"])):
        code = f"import sys; from mouse.cli.{app} import main; sys.argv = ['mouse-{app}', '--cfg', 'job', *{extra!r}]; main()"
        run = subprocess.run(
            [sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, f"mouse-{app}: {run.stderr[-2000:]}"
        assert "defaults" not in run.stdout and run.stdout.strip(), run.stdout
    assert not any(elsewhere.iterdir()), "composing a config must not write into the working directory"
