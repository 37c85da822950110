"""A one-line text progress bar on stderr for the command-line programs (training, evaluation)."""

from __future__ import annotations

import sys
import time

WIDTH = 30


class ProgressBar:
    """``[#########            ] step 3/10  note  12s`` redrawn in place on one line."""

    def __init__(self, total: int, label: str = "") -> None:
        self.total, self.label, self.started = total, label, time.time()
        self.shown = 0  # length of the line on screen, to blank what a shorter one leaves

    def update(self, done: int, note: str = "") -> None:
        """Show that ``done`` of ``total`` are done, with an optional note."""
        bar = "#" * int(done / self.total * WIDTH) if self.total else ""
        note = f"  {note}" if note else ""
        line = f"[{bar:<{WIDTH}}] {self.label}{done}/{self.total}{note}  {time.time() - self.started:.0f}s"
        print(f"\r{line:<{self.shown}}", end="", file=sys.stderr, flush=True)
        self.shown = len(line)

    def finish(self) -> None:
        """End the bar's line."""
        print(file=sys.stderr, flush=True)
