"""`lrcn train` and `lrcn evaluate`: an LRCN trained on DATA/<class>/<video> into a bundle, and a
bundle's clip and video accuracy on labelled videos. TensorFlow is imported when they run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lrcn.stream.bundle import HEADS, ModelSpec
from lrcn.stream.errors import LrcnError
from lrcn.tools.cli.args import choose_split, parse_l2, parse_size, print_result, require_tensorflow
from lrcn.tools.cli.commands import command

if TYPE_CHECKING:  # the real import waits for the commands that need it (TensorFlow)
    from lrcn.models.train import TrainConfig


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--group-pattern",
        help="regex with one group naming the group (actor, subject) of a file, "
        "or a preset: ucf101, weizmann, ps7 (default: detected)",
    )
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--split-lists", nargs=2, metavar=("TRAIN", "TEST"), help="UCF101-style list files")
    split.add_argument("--test-groups", help="comma-separated group ids held out for testing")
    split.add_argument("--cv", action="store_true", help="leave-one-group-out cross-validation")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument(
        "--backbone",
        choices=("seed", "small", "mobilenet_v2"),
        default="seed",
        help="seed: the user's LRCN CNN; small: a light CNN for small inputs; mobilenet_v2: ImageNet features",
    )
    model.add_argument("--weights", help="MobileNetV2 weights: a .weights.h5 path or 'imagenet'")
    model.add_argument(
        "--trainable-layers",
        type=int,
        help="backbone layers fine-tuned from the top: -1 all, 0 frozen (default: all for seed, 0 for mobilenet_v2)",
    )
    model.add_argument(
        "--pooling",
        choices=("avg", "flatten"),
        default="avg",
        help="mobilenet_v2: pool each frame to a vector, or keep its spatial map",
    )
    model.add_argument(
        "--head",
        choices=tuple(HEADS),
        default="lstm",
        help="pool: mean and max of each feature over the window, then softmax (no LSTM)",
    )
    model.add_argument("--per-timestep", action="store_true", help="a loss at every step, averaged at test time")
    model.add_argument(
        "--size",
        type=parse_size,
        default=None,
        help="input N or HxW (default: 160 for mobilenet_v2, by validation accuracy against CPU "
        "cost in docs/evidence/results.md#input-size-by-evidence-rgb-stream; 112 for the seed and small CNNs)",
    )
    model.add_argument("--clip-length", type=int, default=16)
    model.add_argument("--fps", type=float, default=10.0, help="sampling rate the model sees (default 10)")
    model.add_argument("--lstm-units", type=int, default=512)
    model.add_argument(
        "--l2",
        type=parse_l2,
        default=(0.0,),
        metavar="L2[,L2...]",
        help="L2 penalty on the softmax layer's kernel; several (e.g. 0.001,0.01,0.1) are each "
        "trained on the validation split of the training groups and the best is kept",
    )
    model.add_argument(
        "--dropout",
        type=float,
        nargs=2,
        default=(0.7, 0.5),
        metavar=("FEATURES", "LSTM"),
        help="dropout on the per-frame features and inside the LSTM (default: the seed's 0.7 0.5)",
    )
    model.add_argument(
        "--modalities",
        type=parse_modalities,
        default=("rgb",),
        metavar="M[,M...]",
        help="what the encoders look at, joined in this order: rgb, flow or rgb,flow (default rgb); "
        "other than rgb alone, the encoders are frozen and only the head trains",
    )
    model.add_argument(
        "--fusion",
        choices=("early", "late", "auto"),
        default="auto",
        help="two modalities: early joins their features into one head, late averages two heads' "
        "probabilities (weight chosen on the validation groups), auto trains both and keeps "
        "the better on the validation groups (default)",
    )
    model.add_argument(
        "--flow-backbone",
        choices=("seed", "small", "mobilenet_v2"),
        help="the flow encoder's CNN (default: --backbone) when frozen, or trained from scratch (seed or small)",
    )
    model.add_argument(
        "--flow-encoder",
        choices=("frozen", "tuned", "scratch", "auto"),
        default="auto",
        help="with flow: frozen uses the flow backbone as it comes, tuned trains ImageNet "
        "MobileNetV2's top layers on flow (needs --weights), scratch trains the small CNN on "
        "flow; auto trains each that applies and keeps the best on the validation groups "
        "(default)",
    )
    model.add_argument(
        "--stills",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add a class 'idle' of still clips (a held training frame, blank frames) "
        "(default: on when flow is among the modalities)",
    )


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=int, default=30)
    fit.add_argument("--batch-size", type=int, default=8)
    fit.add_argument("--lr", type=float, default=1e-4)
    fit.add_argument("--patience", type=int, default=8, help="early stopping, epochs without a better val loss")
    fit.add_argument("--clips-per-video", type=int, default=8, help="random clips per video per epoch")
    fit.add_argument(
        "--synthetic-clips",
        type=int,
        default=0,
        metavar="N",
        help="train on N freshly rendered synthetic clips per epoch (classes of `lrcn synth`); "
        "DATA's videos then only validate and test",
    )
    fit.add_argument("--no-augment", action="store_true")
    fit.add_argument("--no-flip", action="store_true", help="no mirroring (for direction-sensitive classes)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument(
        "--no-refit",
        action="store_true",
        help="keep the model trained without its validation groups instead of retraining on all "
        "training groups for the chosen number of epochs",
    )
    fit.add_argument("--cache", help="decoded-frame and feature cache (default ~/.cache/lrcn-stream)")
    fit.add_argument("--no-cache", action="store_true")
    fit.add_argument("--quiet", action="store_true", help="no progress bars")
    fit.add_argument(
        "--distribute",
        choices=("none", "mirrored", "multiworker"),
        default="none",
        help="tf.distribute: mirrored, every GPU of this machine; multiworker, the machines of "
        "TF_CONFIG (every worker runs the same command, worker 0 writes the bundle). "
        "--batch-size is then per replica",
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data")
    parser.add_argument("--out", required=True, help="bundle folder (with --cv: one bundle per fold inside)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.keras")
    add_split_arguments(parser)
    add_model_arguments(parser)
    add_fit_arguments(parser)
    add_stream_arguments(parser)


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    stream = parser.add_argument_group(
        "stream training",
        "the LSTM trained on training clips joined into long "
        "sequences, a target at every frame (docs/guide/training.md)",
    )
    stream.add_argument(
        "--stream-training",
        action="store_true",
        help="train the LSTM head on joined sequences with truncated backpropagation "
        "(frozen backbone; --batch-size sequences side by side)",
    )
    stream.add_argument("--background", metavar="CLASS", help="a class whose videos come between actions")
    stream.add_argument(
        "--ignore-margin",
        type=float,
        default=0.3,
        metavar="SECONDS",
        help="seconds after each change left out of the loss (default 0.3)",
    )
    stream.add_argument(
        "--segment-seconds",
        type=float,
        nargs=2,
        default=(1.6, 8.0),
        metavar=("MIN", "MAX"),
        help="length of each joined segment (default 1.6 8)",
    )
    stream.add_argument(
        "--sequence-seconds",
        type=float,
        nargs=2,
        default=(25.6, 51.2),
        metavar=("MIN", "MAX"),
        help="length of each sequence, from a zero state (default 25.6 51.2)",
    )
    stream.add_argument(
        "--tbptt-steps",
        type=int,
        default=32,
        metavar="N",
        help="frames per truncated-backpropagation step (default 32)",
    )
    stream.add_argument(
        "--init-from",
        metavar="BUNDLE",
        help="start from this LSTM bundle's head weights (same classes and --lstm-units), "
        "e.g. a window-trained one, and fine-tune it on streams",
    )


def stream_config_from_args(args):
    """The StreamConfig of the stream-training flags; a flag that cannot apply is one error line."""
    from lrcn.models.stream_training import StreamConfig

    if (
        args.cv
        or len(args.l2) > 1
        or args.resume
        or args.synthetic_clips
        or getattr(args, "distribute", "none") != "none"
    ):
        raise LrcnError(
            "--stream-training trains one model on one machine: not with --cv, several --l2, --resume, "
            "--synthetic-clips or --distribute"
        )
    return StreamConfig(
        segment_s=tuple(args.segment_seconds),
        sequence_s=tuple(args.sequence_seconds),
        ignore_margin_s=args.ignore_margin,
        background=args.background,
        chunk=args.tbptt_steps,
        init_from=args.init_from,
    )


def parse_modalities(text: str) -> tuple[str, ...]:
    from lrcn.stream.modalities import modality

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        try:
            modality(name)
        except LrcnError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    if not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct modalities separated by commas, got {text!r}")
    return names


def stills_from_args(args) -> bool:
    return "flow" in args.modalities if args.stills is None else args.stills


def joint_from_args(args) -> bool:
    """Whether this is the joint (frozen encoders per modality) course rather than the RGB LRCN's."""
    return tuple(args.modalities) != ("rgb",) or stills_from_args(args)


def flow_encoders_from_args(args) -> tuple[str, ...]:
    """The flow encoder candidates to train and choose among; () keeps the frozen flow backbone."""
    choice = getattr(args, "flow_encoder", "auto")
    if "flow" not in args.modalities:
        if choice not in ("auto", "frozen"):
            raise LrcnError("--flow-encoder needs the flow modality (--modalities rgb,flow or flow)")
        return ()
    if choice == "frozen":
        return ()
    if choice == "auto":
        return ("frozen", "tuned", "scratch") if args.weights else ("frozen", "scratch")
    return (choice,)


def fusions_from_args(args) -> tuple[str, ...]:
    if len(args.modalities) < 2:
        if args.fusion == "late":
            raise LrcnError("--fusion late needs two modalities (e.g. --modalities rgb,flow)")
        return ("early",)
    return ("early", "late") if args.fusion == "auto" else (args.fusion,)


# docs/evidence/results.md "Input size by evidence": on ucf101_9's validation folds a frozen MobileNetV2
# gained 5.9 points from 112 to 160 px and 1.5 more (within two standard errors) at 224, for
# twice and four times the batched encoder cost; the seed LRCN keeps the size it was written for.
DEFAULT_SIZE = (112, 112)
DEFAULT_SIZES = {"mobilenet_v2": (160, 160)}


def spec_from_args(args, classes) -> ModelSpec:
    flow_backbone = getattr(args, "flow_backbone", None)
    if args.weights and "mobilenet_v2" not in (args.backbone, flow_backbone):
        raise LrcnError("--weights applies to --backbone mobilenet_v2 only")
    trainable = args.trainable_layers
    if trainable is None:
        trainable = 0 if args.backbone == "mobilenet_v2" else -1
    joint = {}
    if joint_from_args(args):
        from lrcn.models.two_stream import with_idle

        classes = with_idle(classes, stills_from_args(args))
        joint = dict(modalities=tuple(args.modalities), fusion=fusions_from_args(args)[0], flow_backbone=flow_backbone)
    elif args.fusion == "late" or flow_backbone:
        raise LrcnError("--fusion late and --flow-backbone need the flow modality (--modalities rgb,flow)")
    size = args.size or DEFAULT_SIZES.get(args.backbone, DEFAULT_SIZE)
    return ModelSpec(
        classes=tuple(classes),
        backbone=args.backbone,
        input_size=size,
        clip_length=args.clip_length,
        fps=args.fps,
        head=args.head,
        lstm_units=args.lstm_units,
        per_timestep=args.per_timestep,
        backbone_weights=args.weights,
        trainable_layers=trainable,
        pooling=args.pooling,
        feature_dropout=args.dropout[0],
        lstm_dropout=args.dropout[1],
        l2=args.l2[0],
        **joint,
    )


def config_from_args(args) -> TrainConfig:
    from lrcn.models.frame_cache import DEFAULT_CACHE
    from lrcn.models.train import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        patience=args.patience,
        clips_per_video=args.clips_per_video,
        synthetic_clips=args.synthetic_clips,
        augment=not args.no_augment,
        flip=not args.no_flip,
        seed=args.seed,
        refit=not args.no_refit,
        cache_dir=None if args.no_cache else (args.cache or str(DEFAULT_CACHE)),
        progress=not args.quiet,
        distribute=getattr(args, "distribute", "none"),
    )


@command("train", help="train an LRCN on DATA/<class>/<video> and write a bundle", arguments=add_train_arguments)
def train(args) -> None:
    require_tensorflow()
    from lrcn.models import distribute
    from lrcn.models.data import describe, discover

    distribution = distribute.start(args.distribute)  # before any other TensorFlow op
    dataset = discover(args.data, args.group_pattern)
    print(f"lrcn: {describe(dataset)}", file=sys.stderr)
    with distribute.output_dir(Path(args.out), distribution) as out:
        train_into(args, dataset, out)


def train_into(args, dataset, out: Path) -> None:
    from lrcn.models.experiment import cross_validate, train_and_test

    spec, config = spec_from_args(args, dataset.classes), config_from_args(args)
    provenance = {"data": str(Path(args.data).resolve()), "group_pattern": dataset.group_pattern}
    if joint_from_args(args):
        train_joint_into(args, spec, config, dataset, out, provenance)
        return
    if args.stream_training:
        from lrcn.models.stream_training import train_stream_and_test

        stream = stream_config_from_args(args)
        result = train_stream_and_test(spec, *choose_split(dataset, args), out, config, stream, provenance)
        print(f"bundle written to {out}")
        if result:
            print_result(result)
        return
    if args.background or args.init_from:
        raise LrcnError("--background and --init-from apply to --stream-training only")
    if args.cv:
        summary = cross_validate(spec, dataset, out, config, provenance, args.l2)
        if summary["videos"]:  # zero on a worker other than the chief: the chief tests
            print(
                f"cross-validation: {summary['correct']}/{summary['videos']} videos "
                f"= {summary['pooled_video_accuracy']:.3f} (mean over folds {summary['mean_fold_accuracy']:.3f}); "
                f"{out / 'cv_report.json'}"
            )
        return
    train_videos, test_videos = choose_split(dataset, args)
    result = train_and_test(spec, train_videos, test_videos, out, config, args.resume, provenance, args.l2)
    print(f"bundle written to {out}")
    if result:
        print_result(result)


def train_joint_into(args, spec, config, dataset, out: Path, provenance: dict) -> None:
    from lrcn.models.two_stream import JointOptions, check_joint_spec, train_joint_and_test

    check_joint_spec(spec)
    if (
        args.cv
        or len(args.l2) > 1
        or args.resume
        or args.synthetic_clips
        or args.stream_training
        or args.distribute != "none"
        or args.background
        or args.init_from
    ):
        raise LrcnError(
            f"training with modalities {','.join(spec.modalities)} (or stills) trains one head on one "
            f"machine: not with --cv, several --l2, --resume, --synthetic-clips, --stream-training or "
            f"--distribute"
        )
    options = JointOptions(
        fusions=fusions_from_args(args), stills=stills_from_args(args), flow_encoders=flow_encoders_from_args(args)
    )
    result = train_joint_and_test(spec, *choose_split(dataset, args), out, config, options, provenance)
    print(f"bundle written to {out}")
    if result:
        print_result(result)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle")
    parser.add_argument("data")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--split-list", help="a UCF101-style list of the videos to test")
    group.add_argument("--test-groups", help="comma-separated group ids to test")
    parser.add_argument("--group-pattern")
    parser.add_argument("--out", help="report folder (default BUNDLE/evaluation)")
    parser.add_argument("--cache")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--quiet", action="store_true")


@command("evaluate", help="clip and video accuracy of a bundle on labelled videos", arguments=add_evaluate_arguments)
def evaluate(args) -> None:
    require_tensorflow()
    from lrcn.models.data import discover, read_split_list
    from lrcn.models.experiment import evaluate_model, load_bundle, relabel
    from lrcn.models.train import TrainConfig

    model, meta = load_bundle(args.bundle)
    dataset = discover(args.data, args.group_pattern)
    if args.split_list:
        videos = read_split_list(dataset, args.split_list)
    else:
        videos = choose_split(dataset, args)[1] if args.test_groups else list(dataset.videos)
    videos = relabel(videos, dataset.classes, meta.spec.classes)
    config = TrainConfig(
        cache_dir=None if args.no_cache else args.cache or TrainConfig.cache_dir, progress=not args.quiet
    )
    out = Path(args.out) if args.out else Path(args.bundle) / "evaluation"
    result = evaluate_model(model, meta.spec, videos, config, out)
    print_result(result)
    print(f"report: {out / 'report.json'}, confusion matrix: {out / 'confusion.png'}")
