"""Process logging for the long-running commands: records are formatted where they are made
and written by one background thread, so no log line blocks the event loop.

A log write is a system call; on the event loop thread it also hands the GIL to whichever
thread wants it (the database thread, under load), and the loop waits to get it back. With
:class:`logging.handlers.QueueHandler` the loop only formats the line and queues it; a
:class:`logging.handlers.QueueListener` thread writes it to stderr. uvicorn's own loggers
(``uvicorn.error``, ``uvicorn.access``) propagate to the same root handler when uvicorn is
started with ``log_config=None``. The cost: lines still queued when the process is killed
(SIGKILL) are lost; a normal stop writes them all (:func:`start_logging`'s stop function).
"""

from __future__ import annotations

import logging
import queue
import sys
from collections.abc import Callable
from logging.handlers import QueueHandler, QueueListener
from typing import Final, TextIO

FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


def start_logging(level: str | int, stream: TextIO | None = None) -> Callable[[], None]:
    """Send every record at ``level`` and above through a queue to ``stream`` (stderr);
    returns the function that writes what is still queued and stops the writer thread."""
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    queued = QueueHandler(records)
    queued.setFormatter(logging.Formatter(FORMAT))  # the line is made here, by the caller
    writer = logging.StreamHandler(stream if stream is not None else sys.stderr)
    writer.setFormatter(logging.Formatter("%(message)s"))  # and written as made
    root = logging.getLogger()
    previous = root.handlers[:], root.level
    root.handlers[:] = [queued]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    listener = QueueListener(records, writer)
    listener.start()

    def stop() -> None:
        listener.stop()  # writes everything queued before returning
        root.handlers[:], level_before = previous
        root.setLevel(level_before)
        writer.flush()

    return stop
