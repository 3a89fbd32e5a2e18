"""One look for long work: a rich progress bar on stderr, so reports on stdout stay clean."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)  # progress, status and errors
output = Console()  # reports and tables


def quiet() -> None:
    """No progress or status output from this process (a worker: its parent reports)."""
    console.quiet = True


def progress_bar(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=transient,
        disable=console.quiet,
    )
