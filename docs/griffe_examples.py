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


class KerasExamples(griffe.Extension):
    """Rewrites ``Example:`` blocks before the docstrings are parsed."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = rewrite(obj.docstring.value)
