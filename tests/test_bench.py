"""``python -m hardstop bench``: a smoke run writes every method x workload cell (no timing asserted)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

METHODS = [
    "flag",
    "event",
    "settrace",
    "daemon",
    "process",
    "ctypes",
    "ctypes-ulong",
    "stopit",
    "func-timeout",
    "kthread",
    "pythreadkiller",
    "hardstop.interrupt",
    "hardstop.deadline",
    "hardstop.kill",
]
WORKLOADS = ["cpu", "sleep", "event", "queue", "recv", "lock"]
PEERS = {"stopit": "stopit", "func-timeout": "func_timeout", "kthread": "kthread", "pythreadkiller": "PyThreadKiller"}
MEASURED = {"stopped", "partly stopped", "not stopped", "at exit"}


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None  # found, not imported: stopit warns on import


def run_bench(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "hardstop", "bench", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Exception in thread" not in result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """Every method, one trial per cell: the results written and the text printed."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    result = run_bench("--smoke", "--json", str(path))
    assert "Goals" in result.stdout
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data, result.stdout


@pytest.fixture(scope="module")
def smoke(smoke_run: tuple[dict[str, Any], str]) -> dict[str, Any]:
    return smoke_run[0]


def test_every_method_and_workload_cell_has_a_status(smoke: dict[str, Any]) -> None:
    assert [m["key"] for m in smoke["methods"]] == METHODS
    assert [w["key"] for w in smoke["workloads"]] == WORKLOADS
    cells = {(c["method"], c["workload"], c["thread"]): c for c in smoke["cells"]}
    threads = {m["key"]: m["threads"] for m in smoke["methods"]}
    assert len(cells) == len(smoke["cells"]) == len(METHODS) * len(WORKLOADS) * 2
    for method in METHODS:
        missing = method in PEERS and not installed(PEERS[method])
        for workload in WORKLOADS:
            for thread in ("worker", "main"):
                cell = cells[method, workload, thread]
                if missing:
                    assert cell["status"] == "not installed", cell
                elif thread not in threads[method]:
                    assert cell["status"] == "n/a" and cell["note"], cell
                else:
                    assert cell["status"] in MEASURED, cell
                    assert cell["trials"] >= 1
                    assert (cell["latency_ms"] is None) == (cell["stopped"] == 0), cell
    assert smoke["machine"]["python"].endswith(sys.version.split()[0])


def test_costs_are_measured(smoke: dict[str, Any]) -> None:
    methods = {m["key"]: m for m in smoke["methods"]}
    for key in ("flag", "settrace", "hardstop.interrupt", "hardstop.deadline"):
        assert methods[key]["slowdown_pct"] is not None, key
    assert methods["hardstop.interrupt"]["request_us"] > 0
    assert methods["hardstop.deadline"]["guarded_us"] > 0
    assert methods["process"]["guarded_us"] > 0


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_an_installed_peer_is_measured(smoke: dict[str, Any], peer: str) -> None:
    if not installed(PEERS[peer]):
        pytest.skip(f"{peer} is not installed (pip install 'hardstop-threads[bench]')")
    statuses = {c["status"] for c in smoke["cells"] if c["method"] == peer and c["thread"] == "worker"}
    assert statuses <= MEASURED


def test_a_plot_without_matplotlib_says_what_to_install(tmp_path: Path) -> None:
    hide = "import sys; sys.modules['matplotlib'] = None"  # as if not installed
    code = f"{hide}; from hardstop.bench import main; sys.exit(main(sys.argv[1:]))"
    png = tmp_path / "bench.png"
    result = subprocess.run(
        [sys.executable, "-c", code, "--plot", str(png)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "pip install 'hardstop-threads[bench]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not png.exists()


def test_the_plot_is_drawn(smoke: dict[str, Any], tmp_path: Path) -> None:
    if not installed("matplotlib"):
        pytest.skip("matplotlib is not installed (pip install 'hardstop-threads[bench]')")
    results, png = tmp_path / "bench.json", tmp_path / "bench.png"
    results.write_text(json.dumps(smoke))
    code = "import json, sys; from hardstop.bench import plot; plot.draw(json.load(open(sys.argv[1])), sys.argv[2])"
    result = subprocess.run([sys.executable, "-c", code, str(results), str(png)], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--trials", "-1"], "argument --trials: takes a whole number of trials, 1 or more, not '-1'"),
        (["--trials", "0"], "argument --trials: takes a whole number of trials, 1 or more, not '0'"),
        (["--trials", "2.5"], "argument --trials: takes a whole number of trials, 1 or more, not '2.5'"),
        (["--bound", "0"], "argument --bound: takes a finite number of seconds more than 0, not '0'"),
        (["--bound", "-1"], "argument --bound: takes a finite number of seconds more than 0, not '-1'"),
        (["--bound", "nan"], "argument --bound: takes a finite number of seconds more than 0, not 'nan'"),
        (["--bound", "inf"], "argument --bound: takes a finite number of seconds more than 0, not 'inf'"),
        (["--bound", "soon"], "argument --bound: takes a finite number of seconds more than 0, not 'soon'"),
        (["--methods", ""], "argument --methods: unknown methods [''] in ''; known: flag, "),
        (["--methods", "flag,nope"], "argument --methods: unknown methods ['nope'] in 'flag,nope'; known: flag, "),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_a_bad_argument_is_a_usage_error_naming_it(arguments: list[str], message: str) -> None:
    command = [sys.executable, "-m", "hardstop", "bench", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"python -m hardstop bench: error: {message}" in result.stderr
    assert result.stdout == ""  # refused before anything ran


def test_only_the_methods_that_ran_are_in_the_tables() -> None:
    printed = run_bench("--smoke", "--methods", "flag").stdout
    tables = printed.split("\n\n", 1)[1]  # after the progress lines and the machine's header
    assert "flag" in tables
    assert "hardstop." not in tables
    assert "Goals" not in tables
    assert "NOT stopped" not in tables


def test_the_trace_function_note_is_printed_only_where_it_applies(smoke_run: tuple[dict[str, Any], str]) -> None:
    """An ended thread's trace function slows the others from CPython 3.12 on only."""
    data, printed = smoke_run
    settrace = next(method for method in data["methods"] if method["key"] == "settrace")
    applies = sys.version_info >= (3, 12)
    assert ("plain_after_pct" in settrace) == applies
    assert ("a plain thread ran" in printed) == applies
