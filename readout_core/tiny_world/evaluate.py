"""Measure guidance on the tiny world over many seeds and print the table:
``python -m readout_core.tiny_world.evaluate [--seeds 16]``."""

from __future__ import annotations

import argparse
import statistics
import time

from .experiments import TinyWorld

MEASURES = (("spatial", "IoU with the target", "higher"), ("drag", "distance to target (px)", "lower"),
            ("appearance", "colour distance to the reference", "lower"))


def evaluate(seeds: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per experiment: the unguided and guided measures of seeds 0..seeds-1."""
    world = TinyWorld()
    results = {}
    for key, _, _ in MEASURES:
        outcomes = [getattr(world, key)(seed) for seed in range(seeds)]
        results[key] = ([o.measure_unguided for o in outcomes], [o.measure_guided for o in outcomes])
    return results


def table(results: dict[str, tuple[list[float], list[float]]]) -> str:
    """The results as a Markdown table of means (and how many seeds improved)."""
    rows = ["| experiment | measure | unguided (mean) | guided (mean) | seeds better |", "|---|---|---|---|---|"]
    for key, label, better in MEASURES:
        plain, guided = results[key]
        wins = sum((g > p) if better == "higher" else (g < p) for p, g in zip(plain, guided))
        rows.append(f"| {key} | {label} ({better} is better) | {statistics.mean(plain):.3f} | "
                    f"{statistics.mean(guided):.3f} | {wins}/{len(plain)} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=16)
    args = parser.parse_args()
    started = time.time()
    print(table(evaluate(args.seeds)))
    print(f"{args.seeds} seeds, {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
