"""Names that moved from ``keras_convzoo.weights`` up to the applications package, for one release.

``port_timm`` (it finds a model's family by its registry name) and
``convert_timm_weights`` (it builds a model by name) need the registry and
the builder, which sit above this package; ``port_ccnn`` joins the official
CCNN format with CCNN's key map, which lives in the family's module. After
0.1.0 they live in the applications package (``kcz.applications.port_timm``,
module ``applications/porting.py``; ``kcz.applications.port_ccnn``, module
``applications/ccnn.py``). Their old spellings,
``keras_convzoo.weights.port_timm`` and ``keras_convzoo.weights.timm.port_timm``
(same for ``convert_timm_weights``), ``keras_convzoo.weights.port_ccnn`` and
``keras_convzoo.weights.ccnn.port_ccnn``, still work until 0.2 with a
``DeprecationWarning``.

This package imports nothing of the applications package: that package,
which owns the functions, hands them in with
``register_moved`` when it is imported (``import keras_convzoo``, which runs
before any ``keras_convzoo.weights`` import, imports it), and the modules
here answer the old names from this table through a module ``__getattr__``.
"""

import warnings

#: old name -> (new path, object), filled by ``register_moved``.
_MOVED = {}

#: (module, name) pairs already warned about: one warning per old path (``from m import name`` looks twice).
_WARNED = set()

#: The modules of this package that answered these names before.
_OLD_MODULES = ("keras_convzoo.weights", "keras_convzoo.weights.timm", "keras_convzoo.weights.ccnn")


def register_moved(name, new_path, value):
    """Lets the old paths of a moved name answer it until 0.2.

    Args:
        name: the name, e.g. ``"port_timm"``.
        new_path: where it lives now, for the warning.
        value: the object.
    """
    _MOVED[name] = (new_path, value)


def moved_attribute(module, name):
    """A module ``__getattr__``: the moved object under its old name, with a ``DeprecationWarning`` (once).

    Args:
        module: ``__name__`` of the asking module.
        name: the attribute asked for.

    Returns:
        The object registered under ``name``.

    Raises:
        AttributeError: for any other name (as a module without it would).
    """
    if module in _OLD_MODULES and name in _MOVED:
        new_path, value = _MOVED[name]
        if (module, name) in _WARNED:
            return value
        _WARNED.add((module, name))
        warnings.warn(
            f"{module}.{name} moved to {new_path}; the old path is removed in 0.2.",
            DeprecationWarning,
            stacklevel=3,
        )
        return value
    raise AttributeError(f"module {module!r} has no attribute {name!r}")
