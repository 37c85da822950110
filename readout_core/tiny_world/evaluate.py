"""Measure guidance on the tiny world over many seeds and print the table:
``python -m readout_core.tiny_world.evaluate [--seeds 16]``, or what guiding only every
k-th step costs in efficacy: ``... evaluate --guide-every 1,2,3`` (drag and appearance)."""

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


GUIDE_EVERY_EXPERIMENTS = ("drag", "appearance")
"""The reference processes that `evaluate_guide_every` measures."""


def evaluate_guide_every(seeds: int, every: Sequence[int], on_progress: Progress | None = None) -> dict:
    """Per (experiment, k): (unguided measures, guided measures, guided sampling seconds) of seeds 0..seeds-1."""
    world = TinyWorld()
    runs = [(key, k, seed) for key in GUIDE_EVERY_EXPERIMENTS for k in every for seed in range(seeds)]
    found: dict[tuple[str, int], list] = {}
    for done, (key, k, seed) in enumerate(runs):
        if on_progress:
            on_progress(done, len(runs), f"{key}, guide_every {k}, seed {seed}")
        found.setdefault((key, k), []).append(getattr(world, key)(seed, guide_every=k))
    if on_progress:
        on_progress(len(runs), len(runs), "done")
    return {run: ([o.measure_unguided for o in outcomes], [o.measure_guided for o in outcomes],
                  [o.guided_seconds for o in outcomes]) for run, outcomes in found.items()}


def guide_every_table(results: dict) -> str:
    """Efficacy next to time for each guide_every: efficacy is the share of the first k's
    (normally 1: every step) mean improvement over unguided sampling that is kept."""
    rows = ["| experiment | measure | guide_every | unguided (mean) | guided (mean) | efficacy | "
            "guided sampling s (mean) | time vs guide_every 1 |", "|---|---|---|---|---|---|---|---|"]
    labels = {key: (label, better) for key, label, better in MEASURES}
    for key in GUIDE_EVERY_EXPERIMENTS:
        label, better = labels[key]
        sign = 1 if better == "higher" else -1
        base = next(value for run, value in results.items() if run[0] == key)
        full_gain = sign * (statistics.mean(base[1]) - statistics.mean(base[0]))
        base_time = statistics.mean(base[2])
        for (experiment, k), (plain, guided, seconds) in results.items():
            if experiment != key:
                continue
            gain = sign * (statistics.mean(guided) - statistics.mean(plain))
            rows.append(f"| {key} | {label} ({better} is better) | {k} | {statistics.mean(plain):.3f} | "
                        f"{statistics.mean(guided):.3f} | {gain / full_gain:.0%} | {statistics.mean(seconds):.2f} | "
                        f"{statistics.mean(seconds) / base_time:.2f}× |")
    return "\n".join(rows)


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


def every_list(text: str) -> list[int]:
    """argparse type: comma-separated whole numbers of at least 1 (``1,2,3``)."""
    return [positive_int(part.strip()) for part in text.split(",")]


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments, run the evaluation with a progress bar, print the table."""
    parser = argparse.ArgumentParser(prog="python -m readout_core.tiny_world.evaluate", description=DESCRIPTION,
                                     epilog="Set OMP_NUM_THREADS to choose torch's CPU thread count.")
    parser.add_argument("--seeds", type=positive_int, default=16, metavar="N",
                        help="how many seeds to run, 0 .. N-1 (default 16, as in the README's table)")
    parser.add_argument("--guide-every", type=every_list, default=None, metavar="K,K,...",
                        help="instead: run drag and appearance guiding every k-th step for each k (first k is "
                             "the baseline of the efficacy column), e.g. 1,2,3")
    args = parser.parse_args(argv)
    threads = configure_torch_threads()
    started = time.time()
    experiments = len(GUIDE_EVERY_EXPERIMENTS) * len(args.guide_every) if args.guide_every else len(MEASURES)
    bar = ProgressBar(args.seeds * experiments, label="runs ")
    progress = lambda done, _total, note: bar.update(done, note)  # noqa: E731
    if args.guide_every:
        text = guide_every_table(evaluate_guide_every(args.seeds, args.guide_every, progress))
    else:
        text = table(evaluate(args.seeds, progress))
    bar.finish()
    print(text)
    print(f"{args.seeds} seeds, {time.time() - started:.0f} s on {threads} CPU thread{'s' * (threads != 1)}")


if __name__ == "__main__":
    main()
