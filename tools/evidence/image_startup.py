"""Run `lrcn serve` from a built image's own files, and time its start-up against a venv's.

Containers cannot be run on the machine this was made on, so the image's files are run the way
a container would run them, bar the namespaces: `podman image mount` (read-only), and `chroot`
into it as the image's user with the image's environment, /config and /media bound from host
folders, /proc, /dev and a tmpfs /tmp. Each round starts serve from the image and from the venv,
in turn, on the same bundle and video, and times from the process's start to `/healthz` answering
200 (the inference loop turns) and to its first prediction in a JSONL file.

    python -m lrcn.tools.evidence.image_startup BUNDLE --image localhost/lrcn-stream:latest \\
        --venv .venv --rounds 11 --out docs/results/container_image.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lrcn.stream.errors import LrcnError
from lrcn.tools.evidence.ffmpeg_server import free_port
from lrcn.tools.evidence.harness.script import measure_and_save
from lrcn.tools.evidence.harness.servers import default_video, http_get, terminate


@dataclass(frozen=True)
class Image:
    """What a container runtime would take from the image: its files and its config."""

    tag: str
    root: Path
    user: str
    env: tuple[str, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    size_bytes: int
    healthcheck: tuple[str, ...]


def _inspect(tag: str) -> dict:
    done = subprocess.run(["podman", "image", "inspect", tag], capture_output=True, text=True)
    if done.returncode != 0:
        raise LrcnError(f"no image {tag}: build it with python -m lrcn.tools.evidence.build_image")
    return json.loads(done.stdout)[0]


@contextlib.contextmanager
def mounted(tag: str):
    """The image, its files mounted read-only for as long as the block runs."""
    found = _inspect(tag)
    config = found["Config"]
    done = subprocess.run(["podman", "image", "mount", tag], capture_output=True, text=True)
    if done.returncode != 0:
        raise LrcnError(f"podman image mount {tag} failed: {done.stderr.strip()}")
    try:
        yield Image(
            tag,
            Path(done.stdout.strip()),
            config.get("User", "root"),
            tuple(config.get("Env") or ()),
            tuple(config.get("Entrypoint") or ()),
            tuple(config.get("Cmd") or ()),
            int(found["Size"]),
            tuple((found.get("Healthcheck") or {}).get("Test") or ()),
        )
    finally:
        subprocess.run(["podman", "image", "unmount", tag], capture_output=True)


def passwd_ids(root: Path, user: str) -> tuple[int, int]:
    """(uid, gid) of `user` in the image's own /etc/passwd."""
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user or fields[2] == user:
            return int(fields[2]), int(fields[3])
    raise LrcnError(f"user {user} is not in the image's /etc/passwd")


def chroot_command(image: Image, argv: list[str], config: Path, media: Path, env: tuple[str, ...] = ()) -> list[str]:
    """A command that runs `argv` inside the image's files as its user, with the image's
    environment (and `env`, NAME=VALUE, over it), in a mount namespace of its own (the binds go
    when it ends): /config read-only, /media read-write."""
    uid, gid = passwd_ids(image.root, image.user)
    root = shlex.quote(str(image.root))
    mounts = "; ".join(
        [
            f"mount --bind -o ro {shlex.quote(str(config))} {root}/config",
            f"mount --bind {shlex.quote(str(media))} {root}/media",
            f"mount -t proc proc {root}/proc",
            f"mount --rbind /dev {root}/dev",
            f"mount -t tmpfs -o mode=1777 tmpfs {root}/tmp",
        ]
    )
    inner = ["env", "-i", *image.env, *env, *map(str, argv)]
    chroot = f"cd / && exec chroot --userspec={uid}:{gid} {root} {shlex.join(inner)}"
    return ["unshare", "--mount", "--propagation", "private", "sh", "-ec", f"{mounts}; {chroot}"]


def media_for(image: Image, folder: Path) -> Path:
    """A host folder for /media, owned as the image's /media is (the user must write there)."""
    folder.mkdir(parents=True, exist_ok=True)
    stat = (image.root / "media").stat()
    os.chown(folder, stat.st_uid, stat.st_gid)
    return folder


def has_prediction(jsonl: Path) -> bool:
    if not jsonl.is_file():
        return False
    return any(line.startswith('{"topic":"pred/') for line in jsonl.read_text().splitlines())


def time_start(command: list[str], port: int, jsonl: Path, log: Path, timeout_s: float = 60.0) -> dict:
    """Seconds from starting `command` to /healthz 200 and to the first prediction in `jsonl`."""
    healthy = predicted = None
    began = time.perf_counter()
    with open(log, "w") as err:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        try:
            while (healthy is None or predicted is None) and time.perf_counter() - began < timeout_s:
                if process.poll() is not None:
                    raise LrcnError(f"serve exited with {process.returncode} before it was up: {log}")
                if healthy is None and http_get(f"http://127.0.0.1:{port}/healthz", 1.0)[0] == 200:
                    healthy = time.perf_counter() - began
                if predicted is None and has_prediction(jsonl):
                    predicted = time.perf_counter() - began
                time.sleep(0.01)
        finally:
            terminate(process)
    if healthy is None or predicted is None:
        raise LrcnError(f"serve was not up within {timeout_s:.0f} s: {log}")
    return {"healthz_s": round(healthy, 3), "first_prediction_s": round(predicted, 3)}


def serve_args(bundle: str, video: str, port: int, jsonl: str) -> list[str]:
    return [
        bundle,
        video,
        "--loop",
        "--metrics",
        f"127.0.0.1:{port}",
        "--endpoint",
        f"tcp://127.0.0.1:{free_port()}",
        "--jsonl",
        jsonl,
    ]


def measure(bundle: Path, tag: str, venv: Path, video: Path, rounds: int, scratch: Path) -> dict:
    if not (bundle / "meta.json").is_file():
        raise LrcnError(f"not a bundle: {bundle}")
    host_lrcn = venv / "bin" / "lrcn"
    if not host_lrcn.is_file():
        raise LrcnError(f"no lrcn in {venv}/bin")
    config = scratch / "config"
    shutil.copytree(bundle, config / "bundle")
    shutil.copy(video, config / f"clip{video.suffix}")
    clip = f"clip{video.suffix}"
    runs: dict[str, list[dict]] = {"image": [], "venv": []}
    with mounted(tag) as image:
        for n in range(rounds):
            for where in ("image", "venv") if n % 2 == 0 else ("venv", "image"):
                media = media_for(image, scratch / f"media-{where}-{n}")
                port = free_port()
                if where == "image":
                    command = chroot_command(
                        image,
                        ["lrcn", "serve", *serve_args("/config/bundle", f"/config/{clip}", port, "/media/out.jsonl")],
                        config,
                        media,
                    )
                else:
                    command = [
                        str(host_lrcn),
                        "serve",
                        *serve_args(str(config / "bundle"), str(config / clip), port, str(media / "out.jsonl")),
                    ]
                runs[where].append(time_start(command, port, media / "out.jsonl", scratch / f"{where}-{n}.log"))
        size = image.size_bytes
    return {
        "tool": "lrcn.tools.evidence.image_startup",
        "image": tag,
        "image_bytes": size,
        "image_mb": round(size / 1e6, 1),
        "venv": str(venv),
        "bundle": bundle.name,
        "video": video.name,
        "rounds": rounds,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "median": {
            where: {key: round(statistics.median(r[key] for r in rs), 3) for key in rs[0]} for where, rs in runs.items()
        },
        "runs": runs,
    }


def report(result: dict) -> str:
    lines = [
        f"{result['image']}: {result['image_mb']:.0f} MB; lrcn serve start-up, median of {result['rounds']} "
        f"interleaved rounds ({result['machine']}):"
    ]
    for where, median in result["median"].items():
        lines.append(
            f"  {where:6s} /healthz 200 after {median['healthz_s']:.2f} s, "
            f"first prediction after {median['first_prediction_s']:.2f} s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lrcn.tools.evidence.image_startup", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("bundle", type=Path, help="an exported bundle (e.g. lrcn demo's lrcn-demo/bundle)")
    parser.add_argument("--image", default="localhost/lrcn-stream:latest")
    parser.add_argument("--venv", type=Path, default=Path(sys.prefix), help="default: this Python's")
    parser.add_argument("--video", type=Path, help="default: a 25 fps 320x240 video")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("docs/results/container_image.json"))
    args = parser.parse_args(argv)

    def measured() -> dict:
        with tempfile.TemporaryDirectory(prefix="lrcn-image-") as scratch:
            video = args.video or default_video(Path(scratch))
            return measure(args.bundle.resolve(), args.image, args.venv, video.resolve(), args.rounds, Path(scratch))

    return measure_and_save("image_startup", measured, report, args.out)


if __name__ == "__main__":
    sys.exit(main())
