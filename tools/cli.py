"""`lrcn`: the command line, a thin layer over models/ and stream/.

Every user error ends as one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from typing import TYPE_CHECKING

from lrcn.stream.errors import LrcnError
from lrcn.tools.args import (choose_split, parse_crop, parse_l2, parse_size, positive_float, positive_int, print_result,
                        require_tensorflow)

if TYPE_CHECKING:  # the real imports wait for the commands that need them (TensorFlow)
    from lrcn.models.train import TrainConfig
    from lrcn.stream.bundle import ModelSpec


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group-pattern", help="regex with one group naming the group (actor, subject) of a file, "
                        "or a preset: ucf101, weizmann, ps7 (default: detected)")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--split-lists", nargs=2, metavar=("TRAIN", "TEST"), help="UCF101-style list files")
    split.add_argument("--test-groups", help="comma-separated group ids held out for testing")
    split.add_argument("--cv", action="store_true", help="leave-one-group-out cross-validation")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", choices=("seed", "small", "mobilenet_v2"), default="seed",
                       help="seed: the user's LRCN CNN; small: a light CNN for small inputs; "
                            "mobilenet_v2: ImageNet features")
    model.add_argument("--weights", help="MobileNetV2 weights: a .weights.h5 path or 'imagenet'")
    model.add_argument("--trainable-layers", type=int,
                       help="backbone layers fine-tuned from the top: -1 all, 0 frozen "
                            "(default: all for seed, 0 for mobilenet_v2)")
    model.add_argument("--pooling", choices=("avg", "flatten"), default="avg",
                       help="mobilenet_v2: pool each frame to a vector, or keep its spatial map")
    model.add_argument("--head", choices=("lstm", "single_frame", "pool"), default="lstm",
                       help="pool: mean and max of each feature over the window, then softmax (no LSTM)")
    model.add_argument("--per-timestep", action="store_true", help="a loss at every step, averaged at test time")
    model.add_argument("--size", type=parse_size, default=(112, 112), help="input N or HxW (default 112)")
    model.add_argument("--clip-length", type=int, default=16)
    model.add_argument("--fps", type=float, default=10.0, help="sampling rate the model sees (default 10)")
    model.add_argument("--lstm-units", type=int, default=512)
    model.add_argument("--l2", type=parse_l2, default=(0.0,), metavar="L2[,L2...]",
                       help="L2 penalty on the softmax layer's kernel; several (e.g. 0.001,0.01,0.1) are each "
                            "trained on the validation split of the training groups and the best is kept")
    model.add_argument("--dropout", type=float, nargs=2, default=(0.7, 0.5), metavar=("FEATURES", "LSTM"),
                       help="dropout on the per-frame features and inside the LSTM (default: the seed's 0.7 0.5)")
    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=int, default=30)
    fit.add_argument("--batch-size", type=int, default=8)
    fit.add_argument("--lr", type=float, default=1e-4)
    fit.add_argument("--patience", type=int, default=8, help="early stopping, epochs without a better val loss")
    fit.add_argument("--clips-per-video", type=int, default=8, help="random clips per video per epoch")
    fit.add_argument("--synthetic-clips", type=int, default=0, metavar="N",
                     help="train on N freshly rendered synthetic clips per epoch (classes of `lrcn synth`); "
                          "DATA's videos then only validate and test")
    fit.add_argument("--no-augment", action="store_true")
    fit.add_argument("--no-flip", action="store_true", help="no mirroring (for direction-sensitive classes)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--no-refit", action="store_true",
                     help="keep the model trained without its validation groups instead of retraining on all "
                          "training groups for the chosen number of epochs")
    fit.add_argument("--cache", help="decoded-frame and feature cache (default ~/.cache/lrcn-stream)")
    fit.add_argument("--no-cache", action="store_true")
    fit.add_argument("--quiet", action="store_true", help="no progress bars")


def spec_from_args(args, classes) -> "ModelSpec":
    from lrcn.stream.bundle import ModelSpec

    if args.backbone != "mobilenet_v2" and args.weights:
        raise LrcnError("--weights applies to --backbone mobilenet_v2 only")
    trainable = args.trainable_layers
    if trainable is None:
        trainable = 0 if args.backbone == "mobilenet_v2" else -1
    return ModelSpec(classes=tuple(classes), backbone=args.backbone, input_size=args.size,
                     clip_length=args.clip_length, fps=args.fps, head=args.head, lstm_units=args.lstm_units,
                     per_timestep=args.per_timestep, backbone_weights=args.weights, trainable_layers=trainable,
                     pooling=args.pooling, feature_dropout=args.dropout[0], lstm_dropout=args.dropout[1],
                     l2=args.l2[0])


def config_from_args(args) -> "TrainConfig":
    from lrcn.models.clips import DEFAULT_CACHE
    from lrcn.models.train import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, patience=args.patience,
                       clips_per_video=args.clips_per_video, synthetic_clips=args.synthetic_clips, augment=not args.no_augment, flip=not args.no_flip,
                       seed=args.seed, refit=not args.no_refit, cache_dir=None if args.no_cache else (args.cache or str(DEFAULT_CACHE)),
                       progress=not args.quiet)


def cmd_train(args) -> None:
    require_tensorflow()
    from lrcn.models.data import describe, discover
    from lrcn.models.experiment import cross_validate, train_and_test

    dataset = discover(args.data, args.group_pattern)
    print(f"lrcn: {describe(dataset)}", file=sys.stderr)
    spec, config = spec_from_args(args, dataset.classes), config_from_args(args)
    provenance = {"data": str(Path(args.data).resolve()), "group_pattern": dataset.group_pattern}
    out = Path(args.out)
    if args.cv:
        summary = cross_validate(spec, dataset, out, config, provenance, args.l2)
        print(f"cross-validation: {summary['correct']}/{summary['videos']} videos "
              f"= {summary['pooled_video_accuracy']:.3f} (mean over folds {summary['mean_fold_accuracy']:.3f}); "
              f"{out / 'cv_report.json'}")
        return
    train_videos, test_videos = choose_split(dataset, args)
    result = train_and_test(spec, train_videos, test_videos, out, config, args.resume, provenance, args.l2)
    print(f"bundle written to {out}")
    if result:
        print_result(result)


def cmd_evaluate(args) -> None:
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
    config = TrainConfig(cache_dir=None if args.no_cache else args.cache or TrainConfig.cache_dir,
                         progress=not args.quiet)
    out = Path(args.out) if args.out else Path(args.bundle) / "evaluation"
    result = evaluate_model(model, meta.spec, videos, config, out)
    print_result(result)
    print(f"report: {out / 'report.json'}, confusion matrix: {out / 'confusion.png'}")


def cmd_synth(args) -> None:
    from lrcn.models import synth

    if args.continuous:
        video, labels = synth.write_continuous(Path(args.out), duration_s=args.continuous, size=args.size,
                                               fps=args.fps, seed=args.seed)
        print(f"wrote {video} and {labels}")
        return
    paths = synth.write_dataset(args.out, videos_per_class=args.videos_per_class, n_frames=args.frames,
                                size=args.size, fps=args.fps, seed=args.seed, groups=args.groups)
    print(f"wrote {len(paths)} videos of {len(synth.CLASSES)} classes under {args.out}")


def cmd_demo(args) -> None:
    require_tensorflow()
    from lrcn.tools.demo import run_demo

    run_demo(Path(args.workdir), quick=args.quick)


def cmd_export(args) -> None:
    require_tensorflow()
    from lrcn.models.export import describe, export_from_paths

    report = export_from_paths(args.bundle, args.video, int8=args.int8, calibration=args.calibration,
                               tolerance=args.tolerance)
    print(f"exported {args.bundle}: {describe(report)}")


def cmd_engine_build(args) -> None:
    from lrcn.stream.tensorrt_engine import ensure_engine

    path = ensure_engine(args.bundle, args.precision, args.max_batch, args.calibration, rebuild=args.rebuild)
    print(f"engine: {path}")


def cmd_doctor(args) -> None:
    from lrcn.tools.doctor import doctor_lines

    print("\n".join(doctor_lines()))


def cmd_keys(args) -> None:
    from lrcn.stream.keys import make_keys

    for path in make_keys(args.dir, client=args.client):
        print(path)


def cmd_proxy(args) -> None:
    from lrcn.stream.publisher import run_proxy

    def announce(proxy) -> None:
        print(f"proxy: publishers -> {proxy.xsub_endpoint}, subscribers -> {proxy.xpub_endpoint}", flush=True)

    run_proxy(args.xsub, args.xpub, duration_s=args.duration, ready=announce)


def cmd_watch(args) -> None:
    from lrcn.stream.keys import load_client_keys
    from lrcn.tools.watch import watch

    curve = load_client_keys(args.curve_keys, args.client) if args.curve_keys else None
    watch(args.endpoint, topics=args.topic or [""], count=args.count, duration_s=args.duration, curve=curve)


def cmd_serve(args) -> int:
    from lrcn.tools.serve import serve

    return serve(args)


def cmd_annotate(args) -> None:
    from lrcn.tools.annotate import annotate

    result = annotate(args.bundle, args.video, args.out, mode=args.mode, hop=args.hop, reset_every=args.reset_every,
                      smooth=args.smooth, fps=args.fps, backend=args.backend or "onnxruntime", threads=args.threads)
    print(f"wrote {result['out']}: {result['frames']} frames, {result['predictions']} predictions")


def cmd_stream_accuracy(args) -> None:
    from lrcn.tools.streaming_accuracy import run

    run(args)


def cmd_bench(args) -> None:
    from lrcn.tools.bench import bench

    bench(args)


def cmd_soak(args) -> None:
    from lrcn.tools.soak import run

    run(args)


def cmd_faults(args) -> None:
    from lrcn.tools.faults import run

    run(args)


def add_head_arguments(parser: argparse.ArgumentParser) -> None:
    """How a stream is sampled and windowed, and its label smoothed (serve and annotate)."""
    head = parser.add_argument_group("head")
    head.add_argument("--fps", type=positive_float, help="sampling rate (default: the model's)")
    head.add_argument("--mode", choices=("exact", "continuous"), default="exact",
                      help="exact: every prediction is the model on one T-frame window; continuous: one LSTM "
                           "state, reset at gaps and every --reset-every frames")
    head.add_argument("--hop", type=positive_int, default=1,
                      help="frames between window starts (exact) or between predictions (continuous)")
    head.add_argument("--reset-every", type=positive_int, metavar="N", help="continuous: restart the state every N frames")
    head.add_argument("--smooth", metavar="ema:ALPHA|hysteresis:M[:MARGIN]",
                      help="smooth the published label (the raw probabilities are published unchanged)")
    head.add_argument("--backend", choices=("onnxruntime", "onnxruntime-int8", "tensorrt"),
                      help="encoder backend (default onnxruntime)")
    head.add_argument("--threads", type=positive_int, help="encoder threads (default: one per core)")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """What every command prints besides its results: its log lines, and libraries' noise."""
    from lrcn.stream.logs import FORMATS, LEVELS

    output = parser.add_argument_group("output")
    output.add_argument("--log-level", choices=LEVELS, default="info", help="lowest level logged (default info)")
    output.add_argument("--log-format", choices=FORMATS, default="text",
                        help="text, or json: one object per line, for a log shipper (default text)")
    output.add_argument("--verbose", action="store_true",
                        help="also show TensorFlow's C++ log lines and Python warnings (hidden by default)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lrcn", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="synthesise data, train a small LRCN, evaluate it (no camera, no network)")
    demo.add_argument("--workdir", default="lrcn-demo")
    demo.add_argument("--quick", action="store_true", help="smallest run, for smoke tests")
    demo.set_defaults(run=cmd_demo)

    synth = commands.add_parser("synth", help="write synthetic action videos (motion is the only cue)")
    synth.add_argument("out", help="output folder, or a .avi path with --continuous")
    synth.add_argument("--videos-per-class", type=int, default=24)
    synth.add_argument("--frames", type=int, default=48)
    synth.add_argument("--size", type=int, default=64)
    synth.add_argument("--fps", type=float, default=25.0)
    synth.add_argument("--groups", type=int, default=4)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--continuous", type=float, metavar="SECONDS",
                       help="one long video whose action changes, with a .labels.json sidecar")
    synth.set_defaults(run=cmd_synth)

    train = commands.add_parser("train", help="train an LRCN on DATA/<class>/<video> and write a bundle")
    train.add_argument("data")
    train.add_argument("--out", required=True, help="bundle folder (with --cv: one bundle per fold inside)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.keras")
    add_split_arguments(train)
    add_train_arguments(train)
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("evaluate", help="clip and video accuracy of a bundle on labelled videos")
    evaluate.add_argument("bundle")
    evaluate.add_argument("data")
    group = evaluate.add_mutually_exclusive_group()
    group.add_argument("--split-list", help="a UCF101-style list of the videos to test")
    group.add_argument("--test-groups", help="comma-separated group ids to test")
    evaluate.add_argument("--group-pattern")
    evaluate.add_argument("--out", help="report folder (default BUNDLE/evaluation)")
    evaluate.add_argument("--cache")
    evaluate.add_argument("--no-cache", action="store_true")
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(run=cmd_evaluate)

    export = commands.add_parser("export", help="add encoder.onnx, head.npz and model.onnx to a bundle, checked "
                                                "against Keras on real frames")
    export.add_argument("bundle")
    export.add_argument("--video", help="video file or folder for the check (default: the bundle's training data)")
    export.add_argument("--int8", action="store_true", help="also write encoder.int8.onnx (ONNX Runtime static INT8)")
    export.add_argument("--calibration", help="video file or folder for INT8 calibration (default: --video)")
    export.add_argument("--tolerance", type=float, default=1e-4)
    export.set_defaults(run=cmd_export)

    engine = commands.add_parser("engine", help="TensorRT engines for a bundle (run on the target GPU box)")
    engine_commands = engine.add_subparsers(dest="engine_command", required=True)
    build = engine_commands.add_parser("build", help="build (or find cached) an engine from encoder.onnx")
    build.add_argument("bundle")
    build.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    build.add_argument("--max-batch", type=int, default=16, help="largest batch the engine takes (default 16)")
    build.add_argument("--calibration", help="video file or folder of real frames for INT8 calibration")
    build.add_argument("--rebuild", action="store_true", help="build even when the cache has this engine")
    build.set_defaults(run=cmd_engine_build)

    doctor = commands.add_parser("doctor", help="inference backends on this machine, and why any is missing")
    doctor.set_defaults(run=cmd_doctor)

    keys = commands.add_parser("keys", help="CURVE key pairs: a server pair (if absent) and an authorized client pair")
    keys.add_argument("dir")
    keys.add_argument("--client", default="client", help="name of the client pair (default client)")
    keys.set_defaults(run=cmd_keys)

    proxy = commands.add_parser("proxy", help="ZeroMQ XSUB/XPUB forwarder: many publishers in, many subscribers out")
    proxy.add_argument("--xsub", required=True, help="endpoint publishers connect to, e.g. tcp://127.0.0.1:5557")
    proxy.add_argument("--xpub", required=True, help="endpoint subscribers connect to, e.g. tcp://127.0.0.1:5558")
    proxy.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    proxy.set_defaults(run=cmd_proxy)

    serve = commands.add_parser("serve", help="run a bundle on live sources and publish predictions over ZeroMQ")
    serve.add_argument("bundle")
    serve.add_argument("sources", nargs="*", metavar="SOURCE",
                       help="camera index or /dev/videoN, video file, rtsp/http/tcp/udp/rtmp/srt URL, "
                            "gst:PIPELINE, pattern:[FPS[:SECONDS]], or synth:[SECONDS[:SEED]]")
    serve.add_argument("--name", action="append", help="stream id of the next SOURCE, in order (repeatable)")
    serve.add_argument("--config", metavar="TOML", help="deployment file: [[stream]] tables and settings")
    add_head_arguments(serve)
    publish = serve.add_mutually_exclusive_group()
    publish.add_argument("--endpoint", help="where to bind the publisher (default tcp://127.0.0.1:5556)")
    publish.add_argument("--connect", metavar="ENDPOINT",
                         help="connect the publisher to ENDPOINT instead of binding: an `lrcn proxy` --xsub "
                              "endpoint, so that many recognizers publish into one place")
    serve.add_argument("--mqtt", action="append", metavar="URL",
                       help="also publish to an MQTT broker: mqtt[s]://[USER:PASSWORD@]HOST[:PORT][/PREFIX] "
                            "(topics PREFIX/<stream>/pred|status|event; repeatable; [[sink]] tables set more)")
    serve.add_argument("--jsonl", action="append", metavar="PATH",
                       help="also write every prediction, status and event to PATH, one JSON line each, "
                            "rotated at 100 MB (repeatable)")
    serve.add_argument("--curve-keys", metavar="DIR", help="encrypt with DIR/server.key_secret and admit only the "
                                                           "clients in DIR/authorized_clients (`lrcn keys DIR`)")
    pace = serve.add_mutually_exclusive_group()
    pace.add_argument("--pace", dest="pace", action="store_true", default=True,
                      help="files: deliver frames at the file's rate, like a camera (default)")
    pace.add_argument("--no-pace", dest="pace", action="store_false", help="files: as fast as they decode")
    serve.add_argument("--loop", action="store_true", help="files: start again at the end")
    serve.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    capture = serve.add_argument_group("capture")
    capture.add_argument("--crop", type=parse_crop, metavar="X,Y,W,H",
                         help="the region of each SOURCE the model watches, in source pixels, before scaling")
    capture.add_argument("--decoder", metavar="cpu|auto|NAME",
                         help="video decoder: cpu (default), auto (this platform's hardware decoder, else cpu), "
                              "or a hardware decoder `lrcn doctor` lists (cuda, vaapi, qsv, ...)")
    capture.add_argument("--rtsp-transport", choices=("tcp", "udp"), help="RTSP transport (default tcp)")
    capture.add_argument("--open-timeout", type=positive_float, metavar="S", help="seconds to connect (default 8)")
    capture.add_argument("--read-timeout", type=positive_float, metavar="S",
                         help="seconds without a frame before a live source counts as lost (default 5)")
    capture.add_argument("--backoff-max", type=positive_float, metavar="S",
                         help="longest wait between reconnection attempts (default 10)")
    capture.add_argument("--max-attempts", type=positive_int, metavar="N",
                         help="give up on a live source after N failed connection attempts in a row "
                              "(default: never; a camera is retried until stopped)")
    events = serve.add_argument_group("events", "turn each SOURCE's predictions into event/<stream> messages "
                                                "(any of these flags turns them on)")
    events.add_argument("--min-score", type=float, metavar="S",
                        help="an action counts at this score or more; below it the published label is `unknown`")
    events.add_argument("--min-duration", type=float, metavar="S", help="seconds an action must hold to start an event")
    events.add_argument("--cooldown", type=float, metavar="S", help="seconds before an ended action may start again")
    events.add_argument("--watch-classes", metavar="A,B", help="only these classes start events (default all)")
    events.add_argument("--ignore-classes", metavar="A,B", help="these classes never start events (a background)")
    events.add_argument("--event-updates", type=positive_float, metavar="S", help="an update every S s of an event")
    events.add_argument("--record", metavar="DIR", help="write an MP4 per event to DIR/<stream>/, remuxed from the "
                                                        "camera's own packets (PyAV sources), with 10 GB kept at most")
    events.add_argument("--pre-roll", type=float, default=5.0, metavar="S", help="seconds a clip keeps before its event (default 5)")
    events.add_argument("--post-roll", type=float, default=5.0, metavar="S", help="seconds a clip keeps after its event (default 5)")
    serve.add_argument("--gather-ms", type=float, metavar="MS",
                       help="wait up to MS after a frame for other streams' frames, to batch them (default 0)")
    serve.add_argument("--stats-interval", type=positive_float, metavar="S", help="seconds between stats (default 5)")
    serve.add_argument("--stats-json", metavar="PATH", help="also write the final stats here")
    serve.add_argument("--metrics", metavar="HOST:PORT",
                       help="serve Prometheus /metrics, /healthz, /readyz and a status page at / on this address "
                            "(PORT alone: loopback; default off)")
    serve.set_defaults(run=cmd_serve, top_k=None, max_batch=None)

    annotate = commands.add_parser("annotate", help="write a copy of a video with the prediction drawn on each frame")
    annotate.add_argument("bundle")
    annotate.add_argument("video")
    annotate.add_argument("-o", "--out", required=True, help="output video (.mp4, .avi, .mkv)")
    add_head_arguments(annotate)
    annotate.set_defaults(run=cmd_annotate)

    accuracy = commands.add_parser("stream-accuracy", help="per-frame accuracy and change delay of every head mode on "
                                                           "held-out test videos joined, served by ffmpeg, run through serve")
    from lrcn.tools.streaming_accuracy import add_arguments as add_stream_accuracy_arguments

    add_stream_accuracy_arguments(accuracy)
    accuracy.set_defaults(run=cmd_stream_accuracy)

    from lrcn.tools import bench, faults, soak

    bench_parser = commands.add_parser("bench", help="per-frame cost against the naive window, latency, capacity, "
                                                     "start-up: a table, bench.json and PNGs; `lrcn bench capture`: "
                                                     "capture cost at HD, OpenCV against PyAV",
                                       epilog="lrcn bench capture [--out DIR] [--quick] ...: what capture costs at HD "
                                              "(see lrcn bench capture --help); a bundle folder named capture: ./capture")
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(run=cmd_bench)
    soak_parser = commands.add_parser("soak", help="four ffmpeg-served streams through lrcn serve for a set time: "
                                                   "RSS, threads, drops, latency drift")
    soak.add_arguments(soak_parser)
    soak_parser.set_defaults(run=cmd_soak)
    faults_parser = commands.add_parser("faults", help="kill and restart stream servers, stall a subscriber, feed "
                                                       "a corrupt file, during one serve run; checks recovery")
    faults.add_arguments(faults_parser)
    faults_parser.set_defaults(run=cmd_faults)

    watch = commands.add_parser("watch", help="subscribe and show each stream's label, score, latency and status")
    watch.add_argument("endpoint", help="publisher or proxy endpoint, e.g. tcp://127.0.0.1:5556")
    watch.add_argument("--topic", action="append", help="topic prefix to receive, repeatable (default: all)")
    watch.add_argument("--count", type=positive_int, metavar="N", help="stop after N messages")
    watch.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    watch.add_argument("--curve-keys", metavar="DIR", help="key folder from `lrcn keys` (CURVE publisher)")
    watch.add_argument("--client", default="client", help="client pair in --curve-keys (default client)")
    watch.set_defaults(run=cmd_watch)
    for command in commands.choices.values():
        add_output_arguments(command)
    return parser


def bench_capture_parser() -> argparse.ArgumentParser:
    """`lrcn bench capture` has options of its own, so it parses apart from `lrcn bench [BUNDLE]`."""
    from lrcn.tools import bench_capture

    parser = argparse.ArgumentParser(prog="lrcn bench capture", description=bench_capture.__doc__.splitlines()[0].split(": ", 1)[1])
    bench_capture.add_arguments(parser)
    add_output_arguments(parser)
    parser.set_defaults(run=bench_capture.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["bench", "capture"]:
        args = bench_capture_parser().parse_args(argv[2:])
    else:
        args = build_parser().parse_args(argv)
    from lrcn.stream.logs import configure_logging
    from lrcn.tools.quiet import quiet_libraries

    configure_logging(args.log_level, args.log_format)
    try:
        quiet_libraries(verbose=args.verbose)
        status = args.run(args)
    except (LrcnError, OSError) as err:  # OSError: a path the user gave cannot be read or written
        print(f"lrcn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lrcn: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
