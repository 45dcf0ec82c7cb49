"""The parser class with the project's one-line errors, and the flag groups several sub-commands share."""
from __future__ import annotations

import argparse
import sys


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: `elt: error: <command>: <problem> (see --help)`, exit 2.
    Sub-command parsers inherit the class."""

    def error(self, message: str):
        print(f"elt: error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def loops_arg(text: str) -> int | list[int]:
    """`--loops 4` (every step) or `--loops 1,2,4,4` (one loop count per sampling/decoding step)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or comma-separated ints, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def add_uncond_loops_arg(parser: argparse.ArgumentParser) -> None:
    """--uncond-loops Lw: guidance with its unconditional branch at fewer loops (cheap CFG on the loop axis),
    and --guidance: which label that branch sees."""
    parser.add_argument("--uncond-loops", default=None, metavar="LW",
                        help="loop count of guidance's unconditional branch (default: as --loops); fewer loops "
                             "make each guided step cheaper; needs --cfg != 1")
    parser.add_argument("--guidance", default=None, metavar="KIND",
                        help="cfg (default: the guiding branch sees the null label, at --uncond-loops / "
                             "--uncond-latents if given), ccfg (the same, a smaller guiding budget required: "
                             "ELIT's cheap CFG) or autoguidance (the guiding branch keeps the label and runs at "
                             "the smaller budget)")


def add_uncond_latents_arg(parser: argparse.ArgumentParser) -> None:
    """--uncond-latents Jw: guidance with its unconditional branch on fewer latents (ELIT's cheap CFG)."""
    parser.add_argument("--uncond-latents", type=int, default=None, metavar="JW",
                        help="latents per group of guidance's unconditional branch (default: as --latents); "
                             "fewer make each guided step cheaper; needs --cfg != 1")


def latents_arg(text: str) -> int | list[int]:
    """`--latents 4` (every step) or `--latents 1,2,4,4` (one latent count per sampling/decoding step)."""
    return loops_arg(text)


def add_sampling_args(parser: argparse.ArgumentParser, many: bool = False) -> None:
    """RUN_DIR (or RUNS...), --steps, --cfg, --seed, --precision: how a trained run is sampled."""
    parser.add_argument("runs" if many else "run_dir", nargs="+" if many else None)
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the config's)")
    parser.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale; 1 = off")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="network precision (default auto: bf16 where the device has bf16 units, else fp32)")


def add_eval_args(parser: argparse.ArgumentParser, ref_help: str, classifier_help: str,
                  inception_help: str) -> None:
    """--ref, --classifier, --features, --inception: what samples are scored against and in which spaces."""
    parser.add_argument("--ref", help=ref_help)
    parser.add_argument("--classifier", help=classifier_help)
    parser.add_argument("--features", nargs="+", choices=["inception", "classifier", "i3d"],
                        help="feature spaces for the distances (default: inception, plus classifier with "
                             "--classifier; clips: i3d adds FVD to the video classifier's measures)")
    parser.add_argument("--inception", help=inception_help)
