"""export.converter_logs: converters' C++ and Python output kept off the terminal, the caller's streams and logging intact.

Run in a child process whose stderr is a real file descriptor (under pytest's
capture ``sys.stderr`` is not fd 2, and the context leaves such streams alone).
"""

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import logging, os, sys
    from keras_convzoo.export.converter import converter_logs

    with converter_logs():
        os.write(2, b"C++ NOISE\\\\n")             # a converter's C++ log: hidden
        print("progress bar", file=sys.stderr)   # the caller's own stream: shown
        logging.basicConfig()                    # what TensorFlow's converter does inside
    logging.warning("the user's warning")        # after the export: shown, no 'Logging error'
    print("done", file=sys.stderr)
    """
)


def test_logging_set_up_inside_keeps_working_after_the_context():
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if not line.startswith(("W0", "I0", "E0", "WARNING: All"))]
    assert "C++ NOISE" not in result.stderr
    assert "Logging error" not in result.stderr and "closed file" not in result.stderr
    assert lines[-3:] == ["progress bar", "WARNING:root:the user's warning", "done"]
