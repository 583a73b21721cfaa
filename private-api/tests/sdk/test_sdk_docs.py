"""The documentation runs as written: every ```python and ```bash block of README.md,
docs/sdk_usage.md, docs/fmpy.md and open-sdk/README.md, each on its own, and examples/run_fmu.py, against a real
gateway. They run in a directory laid out like the repository after `make run` (var/dev-api-key,
var/samples/*.fmu), with FMU_GATEWAY_URL pointing at the test gateway. (```sh blocks are for
reading: installs, placeholders.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_process import Gateway

REPO_ROOT = Path(__file__).resolve().parents[3]
DOCUMENTS = [REPO_ROOT / "README.md", REPO_ROOT / "docs" / "sdk_usage.md", REPO_ROOT / "docs" / "fmpy.md",
             REPO_ROOT / "open-sdk" / "README.md"]
EXAMPLE = REPO_ROOT / "open-sdk" / "examples" / "run_fmu.py"
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def code_blocks() -> list[tuple[str, str, str]]:
    """(id, language, code) of every runnable block."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{document.relative_to(REPO_ROOT)}:{line}", match.group(1), match.group(2)))
    return found


BLOCKS = code_blocks()


@pytest.fixture(scope="module")
def repo_like(gateway: Gateway, model_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    (root / "var" / "samples").mkdir(parents=True)
    (root / "var" / "dev-api-key").write_text(gateway.create_user(credits=10_000) + "\n")
    for name in ("VanDerPol", "Feedthrough"):
        shutil.copy(model_files[name], root / "var" / "samples" / f"{name}.fmu")
    return root


def environment(gateway: Gateway) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FMU_GATEWAY_API_KEY"}
    env["FMU_GATEWAY_URL"] = gateway.base_url
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    return env


def test_the_documents_have_runnable_blocks() -> None:
    assert sum(1 for _, lang, _ in BLOCKS if lang == "python") >= 8
    assert any(lang == "bash" for _, lang, _ in BLOCKS)


@pytest.mark.parametrize(("language", "code"), [(lang, code) for _, lang, code in BLOCKS],
                         ids=[block_id for block_id, _, _ in BLOCKS])
def test_block_runs_as_written(gateway: Gateway, repo_like: Path, language: str, code: str) -> None:
    command = [sys.executable, "-c", code] if language == "python" else ["bash", "-euo", "pipefail", "-c", code]
    done = subprocess.run(command, cwd=repo_like, env=environment(gateway), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"


def test_example_uploads_simulates_prints_and_plots(gateway: Gateway, repo_like: Path, tmp_path: Path) -> None:
    plot = tmp_path / "vdp.png"
    env = {**environment(gateway), "FMU_GATEWAY_API_KEY": (repo_like / "var" / "dev-api-key").read_text().strip()}
    done = subprocess.run([sys.executable, str(EXAMPLE), str(repo_like / "var" / "samples" / "VanDerPol.fmu"),
                           "--mu", "3", "--stop-time", "5", "--plot", str(plot)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "parameters: mu=" in done.stdout and "succeeded" in done.stdout
    assert re.search(r"^\s*time\s+x0\s+x1$", done.stdout, re.MULTILINE), done.stdout
    assert plot.read_bytes().startswith(b"\x89PNG") and f"plot saved to {plot}" in done.stdout
