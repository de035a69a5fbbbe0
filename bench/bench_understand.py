"""Categorizer speed: headlines per second on one core, against lower-casing and splitting."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from digest.understand.categorizer import Categorizer
from digest.understand.evaluation import read_labelled_path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 20_000  # headlines per second, from the issue
ROUNDS = 5
ROUND_SECONDS = 0.4


def headlines() -> list[str]:
    """The labelled files' and the seed's headlines: varied languages, lengths, names."""
    texts: list[str] = []
    for path in sorted((ROOT / "tests" / "data").glob("headlines_*.tsv")):
        texts.extend(row.text for row in read_labelled_path(path))
    for path in sorted((ROOT / "seeds").glob("*.txt")):
        first = path.read_text("utf-8").split("\n", 1)[0]
        texts.extend(part.strip() for part in first.split("\u00a0") if part.strip())
    return texts


def _best_rate(
    works: dict[str, Callable[[list[str]], object]], texts: list[str]
) -> dict[str, float]:
    """Headlines per CPU second of each work over ``texts``: best of interleaved rounds.

    CPU time (not wall time) and the best round keep the figure about one core even when
    the machine is shared; interleaving exposes baseline and classify to the same load.
    """
    best = dict.fromkeys(works, 0.0)
    for work in works.values():
        work(texts)  # warm-up: lexicons, caches
    for _ in range(ROUNDS):
        for name, work in works.items():
            done = 0
            start = time.process_time()
            while time.process_time() - start < ROUND_SECONDS:
                work(texts)
                done += len(texts)
            best[name] = max(best[name], done / (time.process_time() - start))
    return best


def run() -> list[str]:
    """Measure the baseline and the categorizer on the same headlines."""
    texts = headlines()
    categorizer = Categorizer()
    lexicons_only = Categorizer(model=None)

    def baseline(batch: list[str]) -> object:
        return [text.lower().split() for text in batch]

    def categorize(batch: list[str]) -> object:
        return [categorizer.classify(text) for text in batch]

    def categorize_without_model(batch: list[str]) -> object:
        return [lexicons_only.classify(text) for text in batch]

    rates = _best_rate(
        {
            "baseline": baseline,
            "classify": categorize,
            "lexicons": categorize_without_model,
        },
        texts,
    )
    base, ours, lexicons = rates["baseline"], rates["classify"], rates["lexicons"]
    verdict = "ok" if ours >= TARGET else "BELOW TARGET"
    return [
        f"{len(texts)} headlines (dev, training, held-out, seed), language detected for each",
        f"(best of {ROUNDS} interleaved rounds, CPU time of one process)",
        f"baseline lower+split: {base:,.0f} headlines/s",
        f"classify:             {ours:,.0f} headlines/s  (target {TARGET:,}: {verdict})",
        f"  lexicons alone:     {lexicons:,.0f} headlines/s  (the model costs "
        f"{lexicons / ours - 1:.0%} more time)",
        f"ratio classify/baseline: {ours / base:.4f}  (baseline is {base / ours:.1f}x faster)",
    ]
