"""A plain-text progress bar for long operations (calibration, benchmarks, porting, export matrix)."""

import sys


class ProgressBar:
    """Draws ``label [######........] 37/100`` on one line of a stream (stderr by default).

    Call it with ``(done, total)`` as work advances; it ends the line when
    ``done == total``. It is the ``progress`` callback that
    ``export.to_tflite``, ``profile.benchmark`` and ``applications.port_timm``
    accept.

    Args:
        label: text before the bar.
        stream: a text stream (default ``sys.stderr``; when that is not a
            terminal, e.g. a log file, only the finished bar is written).
        width: number of bar characters.

    Example:
    >>> bar = ProgressBar("calibration")
    >>> for i in range(100):
    ...     bar(i + 1, 100)
    """

    def __init__(self, label, stream=None, width=30):
        if not isinstance(label, str):
            raise TypeError(f"`label` must be a str. Received: label={label!r}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"`width` must be a positive int. Received: width={width!r}")
        self.label = label
        self.stream = stream
        self.width = width

    def __call__(self, done, total):
        done = min(done, total)
        filled = int(self.width * done / max(total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        stream = self.stream or sys.stderr  # looked up now: export.converter_logs may have moved it
        if self.stream is None and not _is_terminal(stream):  # a log file: one line at the end, no redraws
            if done >= total:
                stream.write(f"{self.label} [{bar}] {done}/{total}\n")
                stream.flush()
            return
        stream.write(f"\r{self.label} [{bar}] {done}/{total}")
        if done >= total:
            stream.write("\n")
        stream.flush()


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def check_progress(progress):
    """Returns ``progress`` if it is None or callable, else raises ``ValueError``."""
    if progress is not None and not callable(progress):
        raise ValueError(f"`progress` must be callable (done, total) or None. Received: progress={progress!r}")
    return progress
