"""Griffe extension: the package's Keras-style ``Example:`` blocks as Google ``Examples:`` sections.

The docstrings follow Keras' convention: an ``Example:`` line followed by
doctest lines at the *same* indentation::

    Example:
    >>> model = kcz.ResNeXt50(include_top=False)

Griffe's Google parser knows ``Examples:`` (plural) with indented content; it
would render the lines above as plain text, where Markdown reads ``>>>`` as
nested quotes and ``[...](...)`` as links. This extension rewrites such a block
(up to the next blank line followed by a section header, or the end) as an
indented ``Examples:`` section, so the doctest lines render as code. Only the
text given to the documentation changes; the package is not modified.

Loaded by mkdocstrings (``extensions:`` in ``mkdocs.yml``).
"""

import re
from pathlib import Path

import griffe

_EXAMPLE = re.compile(r"^(?P<indent>\s*)Examples?:\s*$")
_HEADER = re.compile(r"^\s*[A-Z][\w ]*:\s*$")


def rewrite(text):
    """``text`` with every unindented ``Example:`` block indented under ``Examples:``."""
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        match = _EXAMPLE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = match.group("indent")
        body_start = i + 1
        if body_start >= len(lines) or not lines[body_start].startswith(indent + ">>>"):
            out.append(lines[i])  # already indented (or prose): leave it to griffe
            i += 1
            continue
        out.append(f"{indent}Examples:")
        j = body_start
        while j < len(lines):
            line = lines[j]
            if line.strip() and not line.startswith(indent):
                break  # dedented: the block is over
            if line.strip() == "" and j + 1 < len(lines) and _HEADER.match(lines[j + 1]) and \
                    len(lines[j + 1]) - len(lines[j + 1].lstrip()) <= len(indent):
                break  # a blank line, then the next section
            out.append(f"{indent}    {line[len(indent):]}" if line.strip() else "")
            j += 1
        i = j
    return "\n".join(out)


#: Docstrings of the builtin types: what dynamic inspection reports for a module constant (``X = 8``).
_BUILTIN_DOCS = {t.__doc__ for t in (int, float, str, bytes, bool, tuple, list, dict, set, frozenset) if t.__doc__}


def _comment_above(lines, index):
    comment = []
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        comment.insert(0, lines[index].lstrip()[2:].strip())
        index -= 1
    return " ".join(comment) or None


def constant_comment(obj):
    """The ``#:`` comment lines right above a module constant's assignment (the package's way to document them).

    A re-exported constant (``keras_convzoo.export.DEFAULT_NUM_SAMPLES``) is
    looked up in the modules of its package's folder.
    """
    filepath = obj.filepath if isinstance(obj.filepath, Path) else None
    if filepath is None:
        return None
    files = [filepath] + sorted(p for p in filepath.parent.glob("*.py") if p != filepath)
    pattern = re.compile(rf"^{re.escape(obj.name)}\s*(?::[^=]*)?=")
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            if pattern.match(line):
                comment = _comment_above(lines, index - 1)
                if comment:
                    return comment
    return None


class KerasExamples(griffe.Extension):
    """Rewrites ``Example:`` blocks before the docstrings are parsed, and documents constants by their comments."""

    def on_instance(self, *, obj, **kwargs):
        if obj.is_attribute and obj.docstring is not None and obj.docstring.value.strip() in {
                d.strip() for d in _BUILTIN_DOCS}:
            # inspection gave the constant its type's docstring ("int([x]) -> integer ..."): use its "#:" comment
            comment = constant_comment(obj)
            obj.docstring = griffe.Docstring(comment, parent=obj) if comment else None
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = rewrite(obj.docstring.value)
