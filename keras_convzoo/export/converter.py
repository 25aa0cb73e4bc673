"""Keeping converters' logs off the terminal and finding the line that explains a failure."""

import contextlib
import io
import os
import sys
import tempfile


def first_error_line(text):
    """The most telling line of a converter's error message.

    Prefers the first line that contains ``error:`` (MLIR and tf2onnx style),
    cut to what follows it; else the first non-empty line. Long lines are
    shortened to 500 characters.
    """
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    chosen = lines[0]
    for line in lines:
        if "error:" in line:
            chosen = line.rsplit("error:", 1)[1].strip() or line
            break
    if len(chosen) > 500:
        chosen = chosen[:497] + "..."
    return chosen


@contextlib.contextmanager
def converter_logs(verbose=False):
    """Keeps what converters print (C++ and Python logs on the process's stdout/stderr) off the terminal.

    The TFLite converter and tf2onnx print dozens of lines per model from
    C++, which Python cannot silence otherwise. Unless ``verbose``, file
    descriptors 1 and 2 point to a temporary file inside the context;
    ``sys.stdout`` / ``sys.stderr`` keep writing to the terminal (progress
    bars, the caller's prints). Errors still carry the converter's first
    error line (``ExportError``).

    Args:
        verbose: show the converter's output (no redirection).

    Yields:
        None.

    Example:
    >>> with converter_logs(verbose=False):
    ...     content = converter.convert()
    """
    if verbose:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    streams = {}
    with tempfile.TemporaryFile() as sink:
        try:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            for name, fd in (("stdout", 1), ("stderr", 2)):
                current = getattr(sys, name)
                if _writes_to_fd(current, fd):  # a terminal stream: keep it on the terminal
                    streams[name] = current
                    setattr(sys, name, io.TextIOWrapper(os.fdopen(os.dup(saved[fd]), "wb"), write_through=True))
            yield
        finally:
            for name, original in streams.items():
                replacement = getattr(sys, name)
                setattr(sys, name, original)
                # A converter may set up logging inside (TensorFlow's converter calls logging.basicConfig), whose
                # handler then writes to the replacement: it goes on writing where the caller's stream does.
                _repoint_log_handlers(replacement, original)
                replacement.close()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


def _repoint_log_handlers(old, new):
    """Points every ``logging`` handler that writes to the stream ``old`` (absl's too) at ``new``."""
    import logging

    loggers = [logging.getLogger(), *(value for value in list(logging.Logger.manager.loggerDict.values())
                                      if isinstance(value, logging.Logger))]
    for logger in loggers:
        for handler in list(logger.handlers):
            for candidate in (handler, getattr(handler, "python_handler", None)):  # absl wraps a StreamHandler
                if isinstance(candidate, logging.StreamHandler) and candidate.stream is old:
                    candidate.setStream(new)


def _writes_to_fd(stream, fd):
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False
