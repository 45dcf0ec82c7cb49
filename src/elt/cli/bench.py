"""`elt bench CONFIG [key=value ...]`: speed of the ELT model vs its iso-compute baseline vs a diffusers DiT."""
from __future__ import annotations


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="speed: the ELT model vs its iso-compute baseline vs a diffusers DiT peer "
                       "(interleaved reps, median, FLOPs, memory)")
    b.add_argument("config", help="YAML config, e.g. configs/mnist_flow.yaml")
    b.add_argument("overrides", nargs="*", help="key=value overrides right after CONFIG, e.g. model.dim=512")
    b.add_argument("--batch", type=int, nargs="+", help="forward (sampling-step) batch sizes (default: 1 8 64)")
    b.add_argument("--train-batch", type=int, help="training-step batch (default: the config's train.batch_size)")
    b.add_argument("--reps", type=int, help="timed repetitions per measurement (default 7); the median is reported")
    b.add_argument("--warmup", type=int, help="untimed warm-up repetitions (default 2)")
    b.add_argument("--precision", choices=["auto", "bf16", "fp32"], help="default: the config's train.precision")
    b.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    b.add_argument("--compile", action="store_true", help="time torch.compile'd models (compile time reported apart)")
    b.add_argument("--threads", type=int, help="torch CPU threads (default: PyTorch's choice)")
    b.add_argument("--no-peer", action="store_true", help="skip the diffusers DiT peer")
    b.add_argument("--latents", type=int, nargs="+", metavar="J",
                   help="also time the ELT model at these latent budgets J (configs with model.latent; J_max is "
                   "always timed), e.g. --latents 1")
    b.add_argument("--versus", metavar="CONFIG", help="also time the ELT model of this config, interleaved "
                   "(e.g. configs/mnist_flow.yaml against configs/mnist_flow_elit.yaml)")
    b.add_argument("--json", help="also write every number and the protocol to this file")
    b.add_argument("--smoke", action="store_true", help="tiny batches and reps: runs in seconds (for tests)")
    b.set_defaults(func=run)


def run(args) -> None:
    from ..bench import BenchOptions, run_bench

    run_bench(BenchOptions(config=args.config, overrides=list(args.overrides), batches=args.batch,
                           train_batch=args.train_batch, reps=args.reps, warmup=args.warmup, precision=args.precision,
                           device=args.device, compile=args.compile, threads=args.threads, peer=not args.no_peer,
                           json_path=args.json, smoke=args.smoke, latents=args.latents, versus=args.versus))
