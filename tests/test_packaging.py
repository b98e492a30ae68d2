"""What is shipped: the files C and Cython consumers need are in the installed
package, and the wheel matrix that cibuildwheel builds is the intended one."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Package data that is not Python code, and so is easy to lose from a wheel.
SHIPPED = ["hardstop.pxd", "include/hardstop.h", "py.typed", "_hardstop.pyi"]


@pytest.mark.parametrize("name", SHIPPED)
def test_installed_package_ships(name: str) -> None:
    path = resources.files("hardstop").joinpath(*name.split("/"))
    assert path.is_file(), f"{path} is missing"


def test_get_include_points_at_the_shipped_header() -> None:
    import hardstop

    assert (Path(hardstop.get_include()) / "hardstop.h").is_file()


# CPython 3.10-3.15 plus free-threaded 3.14t/3.15t; Linux x86_64/aarch64 (manylinux and
# musllinux), macOS x86_64/arm64, Windows AMD64/ARM64; no PyPy (see pyproject.toml).
# In cibuildwheel's own order.
EXPECTED_IDENTIFIERS = {
    "linux": [
        "cp310-manylinux_x86_64",
        "cp311-manylinux_x86_64",
        "cp312-manylinux_x86_64",
        "cp313-manylinux_x86_64",
        "cp314-manylinux_x86_64",
        "cp314t-manylinux_x86_64",
        "cp315-manylinux_x86_64",
        "cp315t-manylinux_x86_64",
        "cp310-manylinux_aarch64",
        "cp311-manylinux_aarch64",
        "cp312-manylinux_aarch64",
        "cp313-manylinux_aarch64",
        "cp314-manylinux_aarch64",
        "cp314t-manylinux_aarch64",
        "cp315-manylinux_aarch64",
        "cp315t-manylinux_aarch64",
        "cp310-musllinux_x86_64",
        "cp311-musllinux_x86_64",
        "cp312-musllinux_x86_64",
        "cp313-musllinux_x86_64",
        "cp314-musllinux_x86_64",
        "cp314t-musllinux_x86_64",
        "cp315-musllinux_x86_64",
        "cp315t-musllinux_x86_64",
        "cp310-musllinux_aarch64",
        "cp311-musllinux_aarch64",
        "cp312-musllinux_aarch64",
        "cp313-musllinux_aarch64",
        "cp314-musllinux_aarch64",
        "cp314t-musllinux_aarch64",
        "cp315-musllinux_aarch64",
        "cp315t-musllinux_aarch64",
    ],
    "macos": [
        "cp310-macosx_x86_64",
        "cp310-macosx_arm64",
        "cp311-macosx_x86_64",
        "cp311-macosx_arm64",
        "cp312-macosx_x86_64",
        "cp312-macosx_arm64",
        "cp313-macosx_x86_64",
        "cp313-macosx_arm64",
        "cp314-macosx_x86_64",
        "cp314-macosx_arm64",
        "cp314t-macosx_x86_64",
        "cp314t-macosx_arm64",
        "cp315-macosx_x86_64",
        "cp315-macosx_arm64",
        "cp315t-macosx_x86_64",
        "cp315t-macosx_arm64",
    ],
    "windows": [
        "cp310-win_amd64",
        "cp311-win_amd64",
        "cp312-win_amd64",
        "cp313-win_amd64",
        "cp314-win_amd64",
        "cp314t-win_amd64",
        "cp315-win_amd64",
        "cp315t-win_amd64",
        "cp310-win_arm64",
        "cp311-win_arm64",
        "cp312-win_arm64",
        "cp313-win_arm64",
        "cp314-win_arm64",
        "cp314t-win_arm64",
        "cp315-win_arm64",
        "cp315t-win_arm64",
    ],
}


@pytest.mark.parametrize("platform", sorted(EXPECTED_IDENTIFIERS))
def test_cibuildwheel_builds_the_intended_wheels(platform: str) -> None:
    """Run by .ci/package, which installs cibuildwheel; skipped elsewhere."""
    cibuildwheel = pytest.importorskip(
        "cibuildwheel",
        reason="cibuildwheel is not installed (.ci/package installs it, runs this)",
    )
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip(f"not run from a source tree: no {ROOT / 'pyproject.toml'}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    command = [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers"]
    result = subprocess.run(
        [*command, "--platform", platform, str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    version = getattr(cibuildwheel, "__version__", "?")
    expected = EXPECTED_IDENTIFIERS[platform]
    assert result.stdout.split() == expected, f"with cibuildwheel {version}"


def test_the_distribution_is_hardstop_threads_and_installs_the_hardstop_package() -> None:
    """On PyPI `hardstop` is an unrelated project: ours is published as hardstop-threads."""
    from importlib import metadata

    import hardstop

    distribution = metadata.distribution("hardstop-threads")
    assert distribution.metadata["Name"] == "hardstop-threads"
    assert distribution.version == hardstop.__version__
    files = [str(path) for path in distribution.files or []]
    assert "hardstop/__init__.py" in files
