"""``python -m hardstop bench``: every known way to stop a Python thread, measured side by side.

Modules: ``workloads`` (what the thread is doing), ``methods`` and ``peers``
(the ways to stop it), ``measure`` (the cells, measured in this process),
``children`` (the daemon-thread and multiprocessing cells, in other
processes), ``report`` and ``plot`` (the results), ``cli`` (the command).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark command with these arguments (``sys.argv[1:]`` by default)."""
    from hardstop.bench.cli import main as run  # not at import: children.py runs as __main__ too

    return run(argv)
