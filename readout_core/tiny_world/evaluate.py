"""Measure guidance on the tiny world over many seeds and print the table:
``python -m readout_core.tiny_world.evaluate [--seeds 16]``."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Sequence

from ..cpu_threads import configure_torch_threads
from ..progress import ProgressBar
from .experiments import MEASURES, TinyWorld, improved

DESCRIPTION = ("Run the demo's three experiments (spatial control, drag, appearance) on seeds 0 .. N-1 of the tiny "
               "world, without and with guidance from the same noise, and print the mean measures as a Markdown "
               "table. About 8 s per seed and experiment on 2 CPU cores.")

Progress = Callable[[int, int, str], None]
"""Called with (runs done, runs in all, what runs next) before each run and once at the end."""


def evaluate(seeds: int, on_progress: Progress | None = None) -> dict[str, tuple[list[float], list[float]]]:
    """Per experiment: the unguided and guided measures of seeds 0..seeds-1."""
    world = TinyWorld()
    runs = [(key, seed) for key, _, _ in MEASURES for seed in range(seeds)]
    outcomes: dict[str, list] = {key: [] for key, _, _ in MEASURES}
    for done, (key, seed) in enumerate(runs):
        if on_progress:
            on_progress(done, len(runs), f"{key}, seed {seed}")
        outcomes[key].append(getattr(world, key)(seed))
    if on_progress:
        on_progress(len(runs), len(runs), "done")
    return {key: ([o.measure_unguided for o in found], [o.measure_guided for o in found])
            for key, found in outcomes.items()}


def table(results: dict[str, tuple[list[float], list[float]]]) -> str:
    """The results as a Markdown table of means (and how many seeds improved)."""
    rows = ["| experiment | measure | unguided (mean) | guided (mean) | seeds better |", "|---|---|---|---|---|"]
    for key, label, better in MEASURES:
        plain, guided = results[key]
        wins = sum(improved(p, g, better) for p, g in zip(plain, guided))
        rows.append(f"| {key} | {label} ({better} is better) | {statistics.mean(plain):.3f} | "
                    f"{statistics.mean(guided):.3f} | {wins}/{len(plain)} |")
    return "\n".join(rows)


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"needs a whole number of at least 1, not {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments, run the evaluation with a progress bar, print the table."""
    parser = argparse.ArgumentParser(prog="python -m readout_core.tiny_world.evaluate", description=DESCRIPTION,
                                     epilog="Set OMP_NUM_THREADS to choose torch's CPU thread count.")
    parser.add_argument("--seeds", type=positive_int, default=16, metavar="N",
                        help="how many seeds to run, 0 .. N-1 (default 16, as in the README's table)")
    args = parser.parse_args(argv)
    threads = configure_torch_threads()
    started = time.time()
    bar = ProgressBar(args.seeds * len(MEASURES), label="runs ")
    results = evaluate(args.seeds, lambda done, _total, note: bar.update(done, note))
    bar.finish()
    print(table(results))
    print(f"{args.seeds} seeds, {time.time() - started:.0f} s on {threads} CPU thread{'s' * (threads != 1)}")


if __name__ == "__main__":
    main()
