"""The `elt` parser (one module per sub-command) and `main`, which maps every project error to one line on
stderr and an exit code: 2 for a problem in the input, 1 for a run that could not go on, 130 when interrupted."""
from __future__ import annotations

import sys
import warnings

from ..errors import EltError, EltWarning
from . import anytime, bench, data, eval, plan, sample, train
from .args import Parser


def build_parser() -> Parser:
    p = Parser(prog="elt", description="Elastic Looped Transformers: train once, sample at any loop count.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in (data, train, sample, anytime, eval, plan, bench):
        command.add_parser(sub)
    from ..tokenizers.cli import add_tokenizer_parser

    add_tokenizer_parser(sub)  # `elt tokenizer train CONFIG --out TOK_DIR`, `elt tokenizer eval TOK_DIR`
    return p


def _one_line_warnings(default):
    """A `warnings.showwarning` that prints the project's own warnings as one line, `elt: warning: …`, and any
    other warning through `default`."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, EltWarning):
            print(f"elt: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)
    return show


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # `key=value` overrides may also follow the options of `elt train` / `elt tokenizer train`
        takes_overrides = args.command == "train" or (
            args.command == "tokenizer" and getattr(args, "tokenizer_command", None) == "train")
        if not takes_overrides or any(x.startswith("-") or "=" not in x for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            args.func(args)
    except EltError as e:
        print(f"elt: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a path the command could not read or write
        where = f": {e.filename}" if e.filename else ""
        print(f"elt: error: {e.strerror or e}{where}; check the path and its permissions", file=sys.stderr)
        return 2
    except MemoryError:
        print("elt: error: out of memory: lower model.dim, model.blocks, train.loops or the batch size",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("elt: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        if "alloc" in str(e) or "out of memory" in str(e):
            print(f"elt: error: out of memory ({str(e).splitlines()[0][:120]}): lower model.dim, model.blocks, "
                  f"train.loops or the batch size", file=sys.stderr)
            return 1
        raise
    return 0
