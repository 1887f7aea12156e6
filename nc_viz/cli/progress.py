"""Progress where no terminal shows a bar: a line on stderr at a fixed interval (30 s; the
environment variable NCVIZ_PROGRESS_SECONDS sets another), from a thread of its own, so a line
comes even while one long batch runs. Used by `evaluate` and `batch` when stderr is a log."""
from __future__ import annotations

import math
import os
import threading
import time
from typing import Any, Callable

import click

INTERVAL_ENV = "NCVIZ_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0


def progress_interval() -> float:
    """Seconds between progress lines: NCVIZ_PROGRESS_SECONDS when it is a positive number, else 30."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value > 0 else DEFAULT_INTERVAL


def duration(seconds: float) -> str:
    """`42 s`, `7.5 min`, `2.3 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class Heartbeat:
    """`start()`, `advance(n)` as work is done, `stop()`: meanwhile one line every `interval` seconds,
    e.g. `evaluate: 120/300 images, 45 s, 2.67 images/s, about 67 s left`."""

    def __init__(self, label: str, total: int, unit: str = "images", interval: float | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.interval = progress_interval() if interval is None else interval
        self.echo = echo or (lambda line: click.echo(line, err=True))
        self.done = 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Heartbeat":
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._beat, name="ncviz-progress", daemon=True)
        self._thread.start()
        return self

    def advance(self, count: int = 1) -> None:
        self.done += count   # one writer (the main thread); the beat only reads it

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        text = f"{self.label}: {self.done}/{self.total} {self.unit}, {duration(elapsed)}"
        if self.done:
            rate = self.done / elapsed if elapsed > 0 else 0.0
            text += f", {rate:.3g} {self.unit}/s"
            if rate > 0 and self.done < self.total:
                text += f", about {duration((self.total - self.done) / rate)} left"
        return text

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self.echo(self.line())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _speed_column() -> Any:
    """A rich column showing images per second (rich's moving estimate)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class SpeedColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-- img/s" if speed is None else f"{speed:.1f} img/s")

    return SpeedColumn()


class ProgressDisplay:
    """What a folder command shows while it runs: a rich bar on stderr (`bar`), or a `Heartbeat`
    line every interval (`beat`), or nothing; `say` prints a line without tearing the bar."""

    def __init__(self) -> None:
        self.progress: Any = None
        self.task: Any = None
        self.heartbeat: Heartbeat | None = None

    def bar(self, label: str, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), _speed_column(),
                                 TimeRemainingColumn(), console=Console(stderr=True))
        self.progress.start()
        self.task = self.progress.add_task(label, total=total)

    def beat(self, label: str, total: int, unit: str = "images") -> None:
        self.heartbeat = Heartbeat(label, total, unit=unit).start()

    def advance(self, count: int = 1) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, count)
        if self.heartbeat is not None:
            self.heartbeat.advance(count)

    def say(self, line: str) -> None:
        if self.progress is not None:
            self.progress.console.print(line, markup=False, highlight=False)
        else:
            click.echo(line, err=True)

    def stop(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
