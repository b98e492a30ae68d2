"""What the README, the docs and hardstop's own messages tell a user to type: the
install lines name the distribution on PyPI, and the example code runs as written.

These read the source tree, so they skip where the suite runs without it (.ci/package
runs it against the installed wheel, with only tests/ and pyproject.toml)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

needs_source_tree = pytest.mark.skipif(
    not (ROOT / "README.md").is_file() or not (ROOT / "docs").is_dir(),
    reason=f"not run from a source tree: no README.md and docs/ in {ROOT}",
)

# Where a user reads an install line: the README, the docs, hardstop's messages, the
# workflows (publishing), the packaging files, the benchmarks' and tools' own
# instructions, and the CI scripts (extensionless: every file of .ci is read).
TEXT_SUFFIXES = {".md", ".py", ".pyi", ".pyx", ".pxd", ".h", ".yml", ".yaml", ".toml", ".txt", ".cfg", ".in"}
SCANNED = [
    "README.md",
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "mkdocs.yml",
    "docs",
    "src",
    "ext",
    ".github",
    "benchmarks",
    "tools",
    ".ci",
]

# `hardstop` on PyPI is somebody else's placeholder; ours is `hardstop-threads`.
# (pip's options may come first: `pip install -U hardstop`; and uv's spellings.)
WRONG_NAME = re.compile(
    r"(?:pip install|uv pip install|uv add)(?:\s+--?[\w-]+)*\s+['\"]?hardstop(?![\w-])|['\"]hardstop\["
)


def scanned_files() -> list[str]:
    files: list[Path] = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [
                found
                for found in sorted(path.rglob("*"))
                if found.is_file()
                and (found.suffix in TEXT_SUFFIXES or name == ".ci")
                and "egg-info" not in str(found)
                and "__pycache__" not in found.parts
            ]
    return [str(path.relative_to(ROOT)) for path in files]


@needs_source_tree
@pytest.mark.parametrize("name", scanned_files())
def test_install_lines_name_the_distribution_hardstop_threads(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    wrong = [
        f"{name}:{text.count(chr(10), 0, found.start()) + 1}: {found.group()}" for found in WRONG_NAME.finditer(text)
    ]
    assert wrong == [], "install hardstop-threads (the import name stays hardstop)"


@needs_source_tree
def test_the_scan_covers_the_places_users_read() -> None:
    names = scanned_files()
    for expected in (
        "README.md",
        "pyproject.toml",
        "docs/dask.md",
        "src/hardstop/dask.py",
        ".github/workflows/wheels.yml",
        "benchmarks/celery_stop.py",
        ".ci/run",
    ):
        assert expected in names


def python_blocks(name: str) -> list[str]:
    """The ```python blocks of a Markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```$", (ROOT / name).read_text(encoding="utf-8"), re.S | re.M)


def run_example(code: str, folder: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Save ``code`` as a script and run it as a user would."""
    script = folder / "example.py"
    script.write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, *options, str(script)], capture_output=True, text=True, cwd=folder, timeout=120
    )


@needs_source_tree
@pytest.mark.parametrize("name", ["README.md", "docs/index.md"])
def test_the_front_pages_example_runs_as_written(name: str, tmp_path: Path) -> None:
    (example,) = python_blocks(name)  # one example, highlighted as Python
    result = run_example(example, tmp_path, "-W", "error")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    # The worker stopped twice (interrupt, then kill), the deadline passed once, kill() succeeded.
    lines = result.stdout.splitlines()
    assert lines[0] == lines[2] == "stopped cleanly", result.stdout
    assert re.fullmatch(r"The deadline of 0\.2 s set at .*example\.py:\d+ has passed\.", lines[1]), result.stdout
    assert len(lines) == 3, result.stdout


@needs_source_tree
def test_the_front_pages_show_the_install_commands_and_the_limits() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    front = (ROOT / "docs/index.md").read_text(encoding="utf-8")
    commands = re.findall(r"^    (python -m pip install .*)$", readme, re.M)
    assert len(commands) == 2
    for command in commands:
        assert f"    {command}\n" in front
    # The limits come before the example: a newcomer reads them first.
    assert front.index("## What cannot be interrupted") < front.index("## Example")
    for limit in ("`Lock.acquire`", "3.15", "Windows", "back-edge"):
        assert limit in front.split("## Example")[0], limit


@needs_source_tree
def test_the_dask_worked_example_runs_as_written(tmp_path: Path) -> None:
    """Saved as a file and run: its worker processes import that file, hence its
    ``if __name__ == "__main__":`` (without it: "Nanny failed to start")."""
    pytest.importorskip(
        "distributed",
        reason=f"distributed is not installed for CPython {sys.version_info.major}.{sys.version_info.minor} "
        "(pip install 'hardstop-threads[test]' installs it)",
    )
    (example,) = [block for block in python_blocks("docs/dask.md") if "LocalCluster" in block]
    result = run_example(example, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback (most recent call last)" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "next", result.stdout  # the cancelled task freed the worker's only thread
    assert re.fullmatch(r"The deadline of 0\.5 s set for the Dask task 'crunch-[-0-9a-f]+' has passed\.", lines[1])
    assert len(lines) == 2, result.stdout
