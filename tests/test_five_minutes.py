"""The README's "Your own data in five minutes", walked as a user would on a public data set no
built-in pipeline uses (French bank reviews from Trustpilot): a declaration of at most 15 lines,
at most three commands, no Python, and a served champion answering over HTTP."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api_process import api_process

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)]
README = Path(__file__).resolve().parents[1] / "README.md"
PASSWORD = "five-minutes"


def readme_section() -> str:
    text = README.read_text()
    start = text.index("## Your own data in five minutes")
    return text[start : text.index("\n## ", start + 1)]


def test_a_csv_becomes_a_served_champion_with_three_commands_and_no_python(
    cli_env: dict[str, str], datasets_dir: Path, tmp_path: Path
) -> None:
    section = readme_section()
    declaration = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert declaration is not None, "the README shows the declaration"
    yaml = declaration[1]
    assert len(yaml.strip().splitlines()) <= 15
    commands = re.search(r"```bash\n(.*?)```", section, re.S)
    assert commands is not None
    steps = [
        line.split("#")[0].strip()
        for line in commands[1].splitlines()
        if line.strip().startswith(("mlfactory", "printf"))
    ]
    assert len([step for step in steps if "mlfactory " in step]) <= 3, steps

    reviews = datasets_dir / "reviews" / "banks_fr_trustpilot" / "reviews.csv"
    (tmp_path / "reviews.csv").symlink_to(reviews)  # the user's file, beside the declaration
    (tmp_path / "mlfactory.yaml").write_text(yaml)  # found in the working directory
    env = {key: value for key, value in cli_env.items() if key != "MLF_PROJECT_FILE"}

    def mlfactory(*args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "mlfactory", *args],
            env=env,
            cwd=tmp_path,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    run = mlfactory("run", "bank_reviews")
    assert "Registered model bank_reviews version 1 (alias champion)" in run
    mlfactory("users", "add", "alice", "--role", "user", stdin=f"{PASSWORD}\n")

    with api_process(env, tmp_path / "serve.log", cwd=tmp_path) as server:
        token = httpx.post(
            f"{server.url}/token", data={"username": "alice", "password": PASSWORD}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        review = {"Company": "Floa Bank", "Experience": "Très bon service, rapide et efficace"}
        answer = httpx.post(
            f"{server.url}/v1/pipelines/bank_reviews/predict",
            json={"records": [review]},
            headers=headers,
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        (prediction,) = answer.json()["predictions"]
        assert prediction["label"] in (1, 2, 3, 4, 5)  # the declared type: an integer
        assert prediction["model_version"] == "1"

        missing = httpx.post(
            f"{server.url}/v1/pipelines/bank_reviews/predict",
            json={"records": [{"Company": "Floa Bank"}]},
            headers=headers,
            timeout=60,
        )
        assert missing.status_code == 422
        assert missing.json()["errors"][0]["field"] == "Experience"
