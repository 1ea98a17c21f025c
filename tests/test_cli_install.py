"""A built wheel carries the configs: ``hfrnn train`` works from an installed package, anywhere.

Slow: it builds a wheel and installs it into a fresh virtual environment that borrows this one's
packages (``--system-site-packages``), so nothing is downloaded.
"""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installs_and_finds_its_configs(tmp_path):
    src = tmp_path / "src"  # build from a copy: the build's scratch never lands in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("hfrnn", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(src)], check=True, capture_output=True, text=True)
    (wheel,) = wheels.glob("hfrnn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.removeprefix("hfrnn/configs/") for n in names if n.startswith("hfrnn/configs/")}
    assert shipped == {str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").rglob("*.yaml")}

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    bindir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    # --system-site-packages reaches the base interpreter's packages, not this venv's: a plain path
    # in a .pth file adds this venv's (torch, hydra, ...) without running its .pth hooks, so this
    # checkout's editable hfrnn stays out of sight.
    site_of = [str(bindir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    new_site = Path(subprocess.run(site_of, check=True, capture_output=True, text=True).stdout.strip())
    (new_site / "_hfrnn_test_parent.pth").write_text(
        "\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    subprocess.run([str(bindir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run([str(bindir / "hfrnn"), "train", "task=xor", "--cfg", "job"], cwd=elsewhere,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "name: xor" in run.stdout
    where = subprocess.run([str(bindir / "python"), "-c", "import hfrnn.cli as c; print(c.CONFIG_DIR)"],
                           cwd=elsewhere, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where  # the wheel's own copy
    helped = subprocess.run([str(bindir / "hfrnn"), "train", "--help"], cwd=elsewhere, capture_output=True, text=True)
    assert helped.returncode == 0 and "hf_nosd" in helped.stdout and "local2" in helped.stdout
    typo = subprocess.run([str(bindir / "hfrnn"), "train", "task=adition"], cwd=elsewhere, capture_output=True,
                          text=True)
    assert typo.returncode == 2 and "did you mean 'addition'?" in typo.stderr
    assert not list(elsewhere.iterdir())  # --cfg job runs nothing and writes nothing
