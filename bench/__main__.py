"""Run every ``bench/bench_*.py`` module's ``run()`` and print the lines it returns.

``python -m bench understand delivery`` runs only the named benchmarks.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(names: list[str]) -> int:
    """Discover and run the benchmarks in name order (only ``names`` when given).

    A failing benchmark is reported, not fatal; an unknown name is an error.
    """
    paths = sorted(Path(__file__).resolve().parent.glob("bench_*.py"))
    known = [path.stem.removeprefix("bench_") for path in paths]
    unknown = [name for name in names if name not in known]
    if unknown:
        print(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    failures = 0
    for path in paths:
        if names and path.stem.removeprefix("bench_") not in names:
            continue
        name = f"bench.{path.stem}"
        print(f"== {name}", flush=True)
        try:
            lines = importlib.import_module(name).run()
        except Exception as error:  # a broken benchmark must not hide the others' figures
            failures += 1
            print(f"   FAILED: {type(error).__name__}: {error}", flush=True)
            continue
        for line in lines:
            print(f"   {line}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
