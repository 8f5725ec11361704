"""The bundled files (settings defaults, prompts, sample articles) are package data, found with importlib.resources.

So a plain `pip install .` works as well as an editable install: one test reads every bundled file
through importlib.resources, the other installs the project (not editable) into a scratch folder and
uses it from there, away from the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_every_bundled_file_is_found_through_importlib_resources() -> None:
    from config.settings import BUNDLED_ARTICLES, DEFAULTS_FILE
    from prompts import load_prompt

    assert (resources.files("config") / "defaults.toml").read_text(encoding="utf-8") == DEFAULTS_FILE.read_text()
    assert "{question}" in load_prompt("answer.txt") and "{sources}" in load_prompt("answer.txt")
    assert "NOT_FOUND" in load_prompt("answer_system.txt") and "\nAnswer: " in load_prompt("answer_example.txt")
    samples = sorted(p.name for p in (resources.files("retrieval.ingest") / "samples").iterdir() if p.name.endswith(".txt"))
    assert len(samples) == 5 and samples == sorted(p.name for p in BUNDLED_ARTICLES.glob("*.txt"))


CHECK = """
import sys
from pathlib import Path
target = Path(sys.argv[1]).resolve()
import config, prompts, retrieval, newsbot.cli, bot.app
for module in (config, prompts, retrieval, newsbot.cli, bot.app):
    assert target in Path(module.__file__).resolve().parents, module.__file__
from config import load_settings
from config.settings import BUNDLED_ARTICLES
from prompts import load_prompt
from retrieval.ingest.articles import iter_files, load_file
settings = load_settings(data_dir=str(target / "var"))
assert settings.articles_dir == BUNDLED_ARTICLES and target in BUNDLED_ARTICLES.parents
articles = [a for f in iter_files([BUNDLED_ARTICLES]) for a in load_file(f)[0]]
assert len(articles) == 5, articles
assert "{sources}" in load_prompt("answer.txt") and "NOT_FOUND" in load_prompt("answer_system.txt")
assert "\\nAnswer: " in load_prompt("answer_example.txt")
print("ok", len(articles))
"""


@pytest.mark.model  # builds and installs the project: some seconds, not the quick loop
def test_a_plain_install_finds_its_bundled_files(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the working tree
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("bot", "config", "newsbot", "prompts", "retrieval"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    assert not list(target.glob("__editable__*"))
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run(
        [sys.executable, "-c", CHECK, str(target)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok 5"
