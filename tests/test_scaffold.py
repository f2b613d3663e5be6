"""``mlfactory new pipeline``: the package it writes installs, is found through its entry point,
runs, and its own test passes; the commands of its README are the ones that work."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)]


def test_a_new_pipeline_installs_registers_runs_and_passes_its_test(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    def run(*command: str, cwd: Path = tmp_path, env: dict[str, str] = cli_env) -> str:
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    mlfactory = (sys.executable, "-m", "mlfactory")
    run(*mlfactory, "new", "pipeline", "demo")
    package = tmp_path / "demo"
    assert (package / "src" / "demo_pipeline" / "pipeline.py").is_file()
    readme = (package / "README.md").read_text()
    commands = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert commands is not None
    steps = [line.split("#")[0].strip() for line in commands[1].splitlines() if line.strip()]
    assert steps[0] == "pip install -e ."

    # The README's install, into a folder of its own rather than this test's environment.
    site = tmp_path / "site"
    run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
        "--target", str(site), str(package))  # fmt: skip
    env = {**cli_env, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    venv = Path(sys.executable).parent
    env["PATH"] = os.pathsep.join([str(venv), env.get("PATH", "")])
    for step in steps[1:]:  # mlfactory pipelines, mlfactory run demo, pytest tests
        output = run(*step.split(), cwd=package, env=env)
        if step == "mlfactory pipelines":
            assert "demo" in output
        if step.startswith("pytest"):
            assert "1 passed" in output

    listed = json.loads(run(*mlfactory, "pipelines", "--json", env=env))
    demo = next(row for row in listed if row["name"] == "demo")
    assert demo["steps"] == ["read", "keep"] and demo["schedule"] == "@daily"
    runs = json.loads(run(*mlfactory, "runs", "demo", "--json", env=env))
    assert runs[0]["status"] == "success"
