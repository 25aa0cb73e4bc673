"""The ``convzoo`` command line: ``convzoo list``, ``convzoo info NAME``.

Errors print one readable line (exit code 2) unless ``--debug`` is given.
"""

import argparse
import os
import sys


def _cmd_list(args):
    from keras_convzoo.applications import get_spec, list_models

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"No registered model matches {args.pattern!r}.")
    width = max(len(n) for n in names)
    print(f"{'name':<{width}}  {'constructor':<14} {'family':<12} {'params (M)':>10}")
    for name in names:
        spec = get_spec(name)
        params = f"{spec.reference_params / 1e6:.2f}" if spec.reference_params else "-"
        print(f"{name:<{width}}  {spec.entrypoint:<14} {spec.family:<12} {params:>10}")
    return 0


def _cmd_info(args):
    from keras_convzoo.applications import create_model, get_spec
    from keras_convzoo.profile import count_params

    spec = get_spec(args.name)
    model = create_model(args.name)
    counts = count_params(model)
    rows = [
        ("name", spec.name),
        ("constructor", f"keras_convzoo.{spec.entrypoint}"),
        ("family", spec.family),
        ("default input", f"{spec.default_size}x{spec.default_size}x{spec.input_channels}"),
        ("min input size", str(spec.min_size)),
        ("trainable params", f"{counts['trainable']:,}"),
        ("non-trainable params", f"{counts['non_trainable']:,}"),
        ("total params", f"{counts['total']:,}"),
        ("reference params", f"{spec.reference_params:,} ({spec.reference})" if spec.reference_params else "-"),
        ("matches reference", str(counts["trainable"] == spec.reference_params)),
        ("layers", str(len(model.layers))),
        ("paper", spec.paper),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def build_parser():
    """Returns the ``convzoo`` argument parser."""
    parser = argparse.ArgumentParser(prog="convzoo", description="keras_convzoo model zoo tools.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list registered models")
    p_list.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'seres*'")
    p_list.set_defaults(func=_cmd_list)
    p_info = sub.add_parser("info", help="parameters and settings of a model")
    p_info.add_argument("name", help="registry name, e.g. resnext50_32x4d")
    p_info.set_defaults(func=_cmd_info)
    return parser


def main(argv=None):
    """Entry point of the ``convzoo`` console script.

    Args:
        argv: argument list (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as error:  # one readable line unless --debug
        if args.debug:
            raise
        print(f"convzoo {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
