"""Cost of a deadline that does not fire, side by side with the peers.

Run: python benchmarks/deadline_cost.py [--quick] [--batches B]

``with hardstop.deadline(60): pass`` per block (creation, entry and exit, loop
included, nothing subtracted), median over interleaved batches, beside
``with stopit.ThreadingTimeout(60): pass`` and ``func_timeout.func_timeout(60,
f)`` of a trivial ``f``, which hardstop's ``@timeout(60)``-decorated ``f`` is
compared with like for like. Goal: under 2 us per block, and at least 50x
cheaper than either peer. A peer that cannot be imported is reported and left
out (``pip install stopit func-timeout``; stopit imports ``pkg_resources``, so
it needs ``setuptools<81`` beside it on recent setups).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import warnings

from _report import check, load, print_header, print_summary, settle_threads

import hardstop

GOAL_BLOCK_US = 2.0
GOAL_RATIO = 50.0


def trivial() -> int:
    return 1


def load_peers() -> dict[str, object]:
    peers: dict[str, object] = {}
    try:
        with warnings.catch_warnings():
            # stopit imports pkg_resources, which warns that it is deprecated.
            warnings.simplefilter("ignore")
            import stopit
        peers["stopit"] = stopit
    except Exception as error:  # noqa: BLE001 - any import failure is reported, not fatal
        print(f"  stopit left out: cannot import it: {type(error).__name__}: {error}")
    try:
        import func_timeout

        peers["func_timeout"] = func_timeout
    except Exception as error:  # noqa: BLE001
        print(f"  func_timeout left out: cannot import it: {type(error).__name__}: {error}")
    return peers


def block_methods(peers: dict[str, object]) -> dict[str, object]:
    deadline = hardstop.deadline

    def hardstop_block(n: int) -> None:
        for _ in range(n):
            with deadline(60):
                pass

    decorated = hardstop.timeout(60)(trivial)

    def hardstop_decorated(n: int) -> None:
        for _ in range(n):
            decorated()

    def plain_call(n: int) -> None:
        f = trivial
        for _ in range(n):
            f()

    methods: dict[str, object] = {
        "hardstop: with deadline(60): pass": hardstop_block,
        "hardstop: @timeout(60) f()": hardstop_decorated,
    }
    if "stopit" in peers:
        threading_timeout = peers["stopit"].ThreadingTimeout

        def stopit_block(n: int) -> None:
            for _ in range(n):
                with threading_timeout(60):
                    pass

        methods["stopit: with ThreadingTimeout(60): pass"] = stopit_block
    if "func_timeout" in peers:
        call = peers["func_timeout"].func_timeout

        def func_timeout_call(n: int) -> None:
            for _ in range(n):
                call(60, trivial)

        methods["func_timeout: func_timeout(60, f)"] = func_timeout_call
    methods["reference: plain call f()"] = plain_call
    return methods


def per_block_us(method, n: int) -> float:
    t0 = time.perf_counter()
    method(n)
    return (time.perf_counter() - t0) / n * 1e6


def measure_cost(batches: int, batch_seconds: float, summary: list) -> None:
    print("\n1. Cost of a deadline that does not fire (60 s deadline around `pass`)")
    print(f"  before: {load()}")
    peers = load_peers()
    methods = block_methods(peers)
    baseline = threading.active_count()
    # Size each method's batch to about batch_seconds, from a short trial run.
    sizes = {}
    for name, method in methods.items():
        method(10)  # warm up (starts hardstop's watchdog, imports lazily loaded parts)
        settle_threads(baseline + 1)
        trial = 500 if name.startswith(("hardstop", "reference")) else 30
        estimate = min(per_block_us(method, trial) for _ in range(3))
        sizes[name] = max(50, int(batch_seconds * 1e6 / max(estimate, 0.01)))
        settle_threads(baseline + 1)
    baseline = threading.active_count()  # now includes hardstop's watchdog
    samples: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for round_index in range(batches):
        # Rotate the order so that drift in the machine hits all alike.
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(per_block_us(methods[name], sizes[name]))
            settle_threads(baseline)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    block = medians["hardstop: with deadline(60): pass"]
    decorated = medians["hardstop: @timeout(60) f()"]
    print(
        f"  {batches} batches of ~{batch_seconds * 1e3:.0f} ms per method, interleaved; "
        "raw cost per block or call (loop included, nothing subtracted)"
    )
    print(f"  {'method':44} {'blocks/batch':>12} {'median us':>10} {'min us':>9} {'max us':>9} {'/ hardstop':>11}")
    for name in names:
        mine = decorated if "func_timeout" in name or "@timeout" in name else block
        ratio = f"{medians[name] / mine:10.1f}x" if not name.startswith("reference") else f"{'-':>11}"
        print(
            f"  {name:44} {sizes[name]:12d} {medians[name]:10.3f} {min(samples[name]):9.3f} "
            f"{max(samples[name]):9.3f} {ratio}"
        )
    print("  (/ hardstop: the block rows against hardstop's block, the call rows against its @timeout call)")
    summary.append(
        (
            "cost of a non-firing deadline block",
            f"{block:.3f} us",
            f"< {GOAL_BLOCK_US:g} us",
            check(block < GOAL_BLOCK_US),
        )
    )
    summary.append(("cost of a @timeout-decorated call", f"{decorated:.3f} us", "(for reference)", "-"))
    stopit_name = "stopit: with ThreadingTimeout(60): pass"
    func_name = "func_timeout: func_timeout(60, f)"
    if stopit_name in medians:
        ratio = medians[stopit_name] / block
        summary.append(
            ("stopit block / hardstop block", f"{ratio:.0f}x", f">= {GOAL_RATIO:g}x", check(ratio >= GOAL_RATIO))
        )
    else:
        summary.append(("stopit block / hardstop block", "not measured", f">= {GOAL_RATIO:g}x", "n/a"))
    if func_name in medians:
        ratio = medians[func_name] / decorated
        summary.append(
            (
                "func_timeout call / hardstop @timeout call",
                f"{ratio:.0f}x",
                f">= {GOAL_RATIO:g}x",
                check(ratio >= GOAL_RATIO),
            )
        )
        ratio = medians[func_name] / block
        summary.append(
            ("func_timeout call / hardstop block", f"{ratio:.0f}x", f">= {GOAL_RATIO:g}x", check(ratio >= GOAL_RATIO))
        )
    else:
        summary.append(("func_timeout call / hardstop call", "not measured", f">= {GOAL_RATIO:g}x", "n/a"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="7 batches of 50 ms instead of 25 of 100 ms")
    parser.add_argument("--batches", type=int, help="batches per method (default 25; quick 7)")
    args = parser.parse_args()
    if args.batches is not None and args.batches < 1:
        parser.error(f"--batches takes a positive count, not {args.batches}")
    began = time.monotonic()
    print_header("hardstop-threads", "stopit", "func-timeout", "setuptools")
    summary: list[tuple[str, str, str, str]] = []
    measure_cost(args.batches or (7 if args.quick else 25), 0.05 if args.quick else 0.1, summary)
    print_summary(summary, began)


if __name__ == "__main__":
    main()
