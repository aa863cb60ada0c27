"""Build the container image (docs/deploy/Containerfile) with no registry: the Debian base made
with debootstrap and `podman import` (kept as a podman image, one per suite and mirror), the
Python packages as a wheelhouse made on this machine, then `podman build --isolation chroot`.

    python -m lrcn.tools.evidence.build_image                       # lrcn-stream:latest from this checkout
    python -m lrcn.tools.evidence.build_image --context DIR --tag lrcn-stream:test

It must run as root (debootstrap, and podman's storage the tests mount). On a machine that can
pull images, `podman build -f docs/deploy/Containerfile .` does the same from debian:bookworm-slim.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lrcn.stream.errors import LrcnError
from lrcn.tools.evidence.checkout import checkout_or_here

ROOT = checkout_or_here()
CONTAINERFILE = Path("docs/deploy/Containerfile")
WHEELHOUSE = Path("build/wheelhouse")
# Where the wheelhouse sits inside the build stage (the context is copied to /src).
PIP_OPTIONS = f"--no-index --find-links /src/{WHEELHOUSE}"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


@dataclass(frozen=True)
class Build:
    context: Path
    tag: str
    suite: str
    mirror: str
    extras: str = ""


def host_mirror(sources: tuple[Path, ...] = SOURCES) -> str:
    """The Debian mirror this machine's apt uses (deb822 `URIs:` or a one-line `deb URI ...`)."""
    for path in sources:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and len(words) > 2 and "security" not in line:
                return next(word for word in words[1:] if "://" in word)
    return DEFAULT_MIRROR


def base_tag(suite: str, mirror: str) -> str:
    """The cached base's name: a different suite or mirror is a different base."""
    return f"localhost/lrcn-base:{suite}-{hashlib.sha256(mirror.encode()).hexdigest()[:12]}"


def build_command(build: Build) -> list[str]:
    """`podman build` of the Containerfile, offline: the imported base, pip from the wheelhouse.
    Docker format: OCI images have no HEALTHCHECK."""
    return [
        "podman",
        "build",
        "--isolation",
        "chroot",
        "--format",
        "docker",
        "--pull=never",
        "-f",
        str(build.context / CONTAINERFILE),
        "-t",
        build.tag,
        "--build-arg",
        f"BASE={base_tag(build.suite, build.mirror)}",
        "--build-arg",
        f"PIP_OPTIONS={PIP_OPTIONS}",
        "--build-arg",
        f"EXTRAS={build.extras}",
        str(build.context),
    ]


def _run(command: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LrcnError(f"{what} failed (exit {done.returncode}): {tail[0]}")
    return done


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name]).returncode == 0


def make_base(suite: str, mirror: str) -> bool:
    """The debootstrap base as a podman image, made once per suite and mirror: True if made now."""
    tag = base_tag(suite, mirror)
    if image_exists(tag):
        return False
    with tempfile.TemporaryDirectory(prefix="lrcn-base-") as scratch:
        root = Path(scratch) / "root"
        _run(["debootstrap", "--variant=minbase", suite, str(root), mirror], "debootstrap")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        _run(["podman", "import", "-", tag], "podman import", stdin=tar.stdout)
        if tar.wait() != 0:
            raise LrcnError(f"tar of the debootstrap root failed (exit {tar.returncode})")
    return True


def make_wheelhouse(context: Path, extras: str = "") -> Path:
    """Wheels of the project and every runtime dependency, for this machine's Python (the image's
    Debian has the same 3.11), and the build backend pip needs to build the project in the image."""
    wheelhouse = context / WHEELHOUSE
    shutil.rmtree(wheelhouse, ignore_errors=True)  # build/ is ours: a stale wheel must not be picked
    wheelhouse.mkdir(parents=True)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--wheel-dir",
            str(wheelhouse),
            f"{context}{extras}",
            "setuptools>=68",
            "wheel",
        ],
        "pip wheel",
    )
    return wheelhouse


def image_size(tag: str) -> int:
    """The image's size in bytes, as `podman images` counts it (all layers, uncompressed)."""
    done = _run(["podman", "image", "inspect", "--format", "{{.Size}}", tag], "podman image inspect")
    return int(done.stdout.strip())


def build_image(build: Build) -> dict:
    """Base, wheelhouse, image: what each step took, and the image's size."""
    if shutil.which("podman") is None or shutil.which("debootstrap") is None:
        raise LrcnError("podman and debootstrap are needed (apt-get install podman debootstrap)")
    if not (build.context / CONTAINERFILE).is_file():
        raise LrcnError(f"{build.context / CONTAINERFILE} not found: --context is a checkout of lrcn-stream")
    began = time.perf_counter()
    made = make_base(build.suite, build.mirror)
    based = time.perf_counter()
    wheelhouse = make_wheelhouse(build.context, build.extras)
    wheeled = time.perf_counter()
    _run(build_command(build), "podman build")
    built = time.perf_counter()
    wheels = sorted(wheelhouse.glob("*.whl"))
    return {
        "tag": build.tag,
        "base": base_tag(build.suite, build.mirror),
        "base_made": made,
        "base_s": round(based - began, 1),
        "wheelhouse_s": round(wheeled - based, 1),
        "build_s": round(built - wheeled, 1),
        "wheels": len(wheels),
        "wheelhouse_mb": round(sum(w.stat().st_size for w in wheels) / 1e6, 1),
        "image_bytes": image_size(build.tag),
    }


def report(result: dict) -> str:
    base = "made" if result["base_made"] else "cached"
    return (
        f"{result['tag']}: {result['image_bytes'] / 1e6:.0f} MB; base {base} in {result['base_s']} s, "
        f"wheelhouse ({result['wheels']} wheels, {result['wheelhouse_mb']} MB) in {result['wheelhouse_s']} s, "
        f"podman build in {result['build_s']} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lrcn.tools.evidence.build_image", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--context",
        type=Path,
        default=ROOT,
        help="a checkout of lrcn-stream (default: the one holding the current directory)",
    )
    parser.add_argument("--tag", default="localhost/lrcn-stream:latest")
    parser.add_argument(
        "--suite",
        default="bookworm",
        help="the Debian suite of the base (its python3 must be this machine's minor version)",
    )
    parser.add_argument("--mirror", default=None, help="Debian mirror (default: the one this machine's apt uses)")
    parser.add_argument("--extras", default="", help='e.g. "[tensorrt]"')
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    build = Build(args.context.resolve(), args.tag, args.suite, args.mirror or host_mirror(), args.extras)
    try:
        result = build_image(build)
    except LrcnError as err:
        print(f"build_image: error: {err}", file=sys.stderr)
        return 2
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
