"""`elt data NAME`: fetch and cache a built-in data set."""
from __future__ import annotations


def add_parser(sub) -> None:
    d = sub.add_parser("data", help="fetch and cache a built-in data set")
    d.add_argument("name", choices=["mnist", "digits"])
    d.add_argument("--force", action="store_true", help="fetch again even if cached")
    d.set_defaults(func=run)


def run(args) -> None:
    from ..data import fetch_digits, fetch_mnist, load_dataset

    path = fetch_mnist(force=args.force) if args.name == "mnist" else fetch_digits(force=args.force)
    tr, te = load_dataset(args.name, "train"), load_dataset(args.name, "test")
    print(f"{args.name}: {len(tr)} train / {len(te)} test images of shape {tuple(tr.image_shape)}, "
          f"{tr.num_classes} classes, cached at {path}")
