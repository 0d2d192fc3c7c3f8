"""The package as a user installs it: a wheel built from this checkout, unpacked into a folder outside the
repository, runs ``kd-gym train`` on TemperatureKD-v0 from its package data alone (the hyperparameter
YAMLs and the shipped teacher). The dependencies are the test environment's; ``make test``'s venv has them."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_install_trains_from_its_package_data(tmp_path):
    build_existed = (ROOT / "build").exists()
    # setuptools builds in the source tree's build/ unless told otherwise: a test running beside this one
    # checks that nothing is written into the tree.
    config = tmp_path / "build.cfg"
    config.write_text(f"[build]\nbuild_base = {tmp_path / 'build'}\n[bdist_wheel]\nbdist_dir = {tmp_path / 'bdist'}\n")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "DIST_EXTRA_CONFIG": str(config)})  # fmt: skip
    assert not (ROOT / "build").exists() or build_existed
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("kd_gym-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "kd-gym = agents.common.cli:main" in entry_points
    assert "agents/hyperparams/ppo.yml" in names
    assert any(n.startswith("kd_envs/tasks/teachers/") and n.endswith(".pt") for n in names)
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                              str(wheel)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert install.returncode == 0, install.stderr
    work = tmp_path / "work"
    work.mkdir()
    # Only the unpacked wheel on the path (not this checkout): what it lacks, the run lacks.
    env = {**os.environ, "PYTHONPATH": str(site), "KD_GYM_CACHE": str(tmp_path / "cache")}
    argv = [sys.executable, "-c", "import sys; from agents.common.cli import main; sys.exit(main())", "train",
            "--algo", "ppo", "--env", "TemperatureKD-v0", "--seed", "0", "--timesteps", "32", "--no-progress",
            "--env-kwargs", json.dumps({"epochs": 1}), "--hyperparams", json.dumps({"n_steps": 32, "batch_size": 32})]
    run = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    config = json.loads((work / "runs/TemperatureKD-v0/ppo/seed_0/config.json").read_text())
    assert config["algo"] == "ppo" and config["total_timesteps"] == 32
    imported = subprocess.run([sys.executable, "-c", "import agents; print(agents.__file__)"], cwd=work, env=env,
                              capture_output=True, text=True)  # fmt: skip
    assert imported.stdout.strip().startswith(str(site))
