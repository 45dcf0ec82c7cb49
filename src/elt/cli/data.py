"""`elt data NAME`: fetch and cache a built-in data set."""
from __future__ import annotations


def add_parser(sub) -> None:
    d = sub.add_parser("data", help="fetch and cache a built-in data set, or encode an image folder into VAE "
                       "latents: elt data latents ROOT --vae DIR --size 256 --out CACHE")
    d.add_argument("name", choices=["mnist", "digits", "latents"])
    d.add_argument("root", nargs="?", help="latents: an image folder in ImageNet layout (root/<class>/*.JPEG)")
    d.add_argument("--force", action="store_true", help="fetch again even if cached; latents: replace --out")
    v = d.add_argument_group("latents")
    v.add_argument("--vae", help="a local AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors)")
    v.add_argument("--vae-subfolder", help="e.g. vae, for a whole Stable Diffusion folder")
    v.add_argument("--size", type=int, default=256, help="image side after the ADM centre crop (default 256)")
    v.add_argument("--out", help="the code folder to write (e.g. CACHE/train)")
    v.add_argument("--flip", action="store_true", help="also store every image's horizontal mirror")
    v.add_argument("--batch-size", type=int, default=32)
    v.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    d.set_defaults(func=run)


LATENT_FLAGS = ("root", "vae", "vae_subfolder", "out")


def run(args) -> None:
    from ..data import fetch_digits, fetch_mnist, load_dataset
    from ..errors import ConfigError

    if args.name == "latents":
        return latents(args)
    given = [f"--{f.replace('_', '-')}" if f != "root" else "ROOT" for f in LATENT_FLAGS if getattr(args, f)]
    given += ["--flip"] if args.flip else []
    if given:
        raise ConfigError(f"{', '.join(given)} are for `elt data latents`; `elt data {args.name}` takes only "
                          f"--force")

    path = fetch_mnist(force=args.force) if args.name == "mnist" else fetch_digits(force=args.force)
    tr, te = load_dataset(args.name, "train"), load_dataset(args.name, "test")
    print(f"{args.name}: {len(tr)} train / {len(te)} test images of shape {tuple(tr.image_shape)}, "
          f"{tr.num_classes} classes, cached at {path}")


def latents(args) -> None:
    from ..data.latents import extract_latents
    from ..device import resolve_device
    from ..errors import ConfigError
    from ..outputs import output_folder

    missing = [flag for flag, value in (("ROOT", args.root), ("--vae", args.vae), ("--out", args.out)) if not value]
    if missing:
        raise ConfigError(f"elt data latents needs {', '.join(missing)}: elt data latents ROOT --vae DIR --size 256 "
                          f"--out CACHE")
    out = output_folder("--out", args.out)
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise ConfigError(f"--out {out} is not empty: choose a new folder, or pass --force to replace it")
    device = resolve_device(args.device, ConfigError("--device cuda but no CUDA device is visible"))
    extract_latents(args.root, args.vae, args.size, args.out, args.vae_subfolder, args.flip, args.batch_size,
                          device)
    from ..data import CodeDataset

    ds = CodeDataset(out)
    print(f"wrote {len(ds)} latent posteriors {tuple(ds.code_shape)} (mean and std; the model sees "
          f"{tuple(ds.image_shape)}) of {ds.num_classes} classes to {out}")
