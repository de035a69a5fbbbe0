"""Categorizer speed: headlines per second on one core, against lower-casing and splitting."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from digest.understand.categorizer import Categorizer

ROOT = Path(__file__).resolve().parent.parent
TARGET = 20_000  # headlines per second, from the issue


def headlines() -> list[str]:
    """The labelled dev set's and the seed's headlines: varied languages, lengths, names."""
    texts: list[str] = []
    for path in sorted((ROOT / "tests" / "data").glob("headlines_*.tsv")):
        for line in path.read_text("utf-8").splitlines()[1:]:
            if line.strip():
                texts.append(line.split("\t", 1)[0])
    for path in sorted((ROOT / "seeds").glob("*.txt")):
        first = path.read_text("utf-8").split("\n", 1)[0]
        texts.extend(part.strip() for part in first.split("\u00a0") if part.strip())
    return texts


def _rate(work: Callable[[list[str]], object], texts: list[str], seconds: float = 1.5) -> float:
    """Headlines per second of ``work`` over ``texts``, repeated for about ``seconds``."""
    work(texts)  # warm-up: lexicons, caches
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        work(texts)
        done += len(texts)
    return done / (time.perf_counter() - start)


def run() -> list[str]:
    """Measure the baseline and the categorizer on the same headlines."""
    texts = headlines()
    categorizer = Categorizer()

    def baseline(batch: list[str]) -> object:
        return [text.lower().split() for text in batch]

    def categorize(batch: list[str]) -> object:
        return [categorizer.classify(text) for text in batch]

    base = _rate(baseline, texts)
    ours = _rate(categorize, texts)
    verdict = "ok" if ours >= TARGET else "BELOW TARGET"
    return [
        f"{len(texts)} distinct headlines (dev set + seed), language detected each time",
        f"baseline lower+split: {base:,.0f} headlines/s",
        f"classify:             {ours:,.0f} headlines/s  (target {TARGET:,}: {verdict})",
        f"ratio classify/baseline: {ours / base:.4f}  (baseline is {base / ours:.1f}x faster)",
    ]
