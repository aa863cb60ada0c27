"""docs/deploy/Containerfile and compose.yaml: what they say (every run), and the image itself
(heavy: real debootstrap and podman, as root) built from a clean checkout, its own files serving
a video as its non-root user, which owns /media and none of the code."""

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from lrcn.stream import settings as schema
from lrcn.tools.evidence.build_image import CONTAINERFILE, Build, base_tag, build_command, build_image, host_mirror
from lrcn.tools.cli.commands import build_parser
from lrcn.tools.evidence.ffmpeg_server import free_port
from lrcn.tools.evidence.harness.servers import http_get, terminate
from lrcn.tools.evidence.image_startup import chroot_command, media_for, mounted
from tests.doc_links import broken

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "docs" / "deploy"


def instructions(text: str) -> list[list[tuple[str, str]]]:
    """The Containerfile's stages, each a list of (INSTRUCTION, its arguments), continuations joined."""
    stages: list[list[tuple[str, str]]] = [[]]
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), rest.strip()))
    return stages


def final_stage() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for keyword, rest in instructions((ROOT / CONTAINERFILE).read_text())[-1]:
        found.setdefault(keyword, []).append(rest)
    return found


def test_the_image_runs_serve_as_a_user_with_config_and_media_volumes_and_a_healthcheck():
    stage = final_stage()
    assert stage["USER"] == ["lrcn"] and json.loads(stage["ENTRYPOINT"][0]) == ["lrcn", "serve"]
    assert set(json.loads(stage["VOLUME"][0])) == {"/config", "/media"}
    args = build_parser().parse_args(["serve", *json.loads(stage["CMD"][0])])  # flags serve takes
    assert (args.bundle, args.config) == ("/config/bundle", "/config/lrcn.toml")
    check = stage["HEALTHCHECK"][0]
    assert "CMD" in check and "LRCN_HEALTHZ" in check
    healthz = next(v for env in stage["ENV"] for v in shlex.split(env) if v.startswith("LRCN_HEALTHZ="))
    assert healthz.endswith("127.0.0.1:9108/healthz")
    installs = " ".join(
        rest
        for stage in instructions((ROOT / CONTAINERFILE).read_text())
        for keyword, rest in stage
        if keyword == "RUN" and "pip install" in rest
    )
    assert "pip install" in installs and "train" not in installs  # the runtime: no TensorFlow
    arguments = {
        rest.split("=")[0]
        for stage in instructions((ROOT / CONTAINERFILE).read_text())
        for keyword, rest in stage
        if keyword == "ARG"
    }
    command = build_command(Build(ROOT, "t", "bookworm", "http://deb.example/debian"))
    given = {command[n + 1].split("=")[0] for n, word in enumerate(command) if word == "--build-arg"}
    assert given <= arguments and {"BASE", "PIP_OPTIONS", "EXTRAS", "VENV_OPTIONS", "LRCN_UID"} <= arguments
    assert command[command.index("--format") + 1] == "docker"  # an OCI image would drop the HEALTHCHECK


def test_the_offline_base_is_made_from_the_machines_own_mirror_and_cached_per_mirror(tmp_path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://mirror.lan/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.lan/debian-security\nSuites: bookworm-security\n"
    )
    one_line = tmp_path / "sources.list"
    one_line.write_text(
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "deb [arch=amd64] http://other.lan/debian bookworm main\n"
    )
    assert host_mirror((deb822, one_line)) == "http://mirror.lan/debian"
    assert host_mirror((tmp_path / "absent", one_line)) == "http://other.lan/debian"
    assert host_mirror((tmp_path / "absent",)) == "http://deb.debian.org/debian"
    assert base_tag("bookworm", "http://mirror.lan/debian") != base_tag("bookworm", "http://other.lan/debian")
    assert base_tag("bookworm", "http://mirror.lan/debian") != base_tag("trixie", "http://mirror.lan/debian")


def test_the_container_page_links_resolve():
    assert broken(DEPLOY / "README.md") == []


def test_the_compose_deployment_file_is_one_serve_takes_and_prometheus_scrapes_its_port():
    data = tomllib.loads((DEPLOY / "config" / "lrcn.toml").read_text())
    typed = schema.convert(data, schema.Settings)  # the schema serve checks it with (no folders made)
    assert typed.metrics == "0.0.0.0:9108" and "lrcn" in typed.allowed_hosts
    assert typed.state_dir == "/media" and all(s.record.dir.startswith("/media/") for s in typed.stream if s.record)
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert services["lrcn"]["build"]["dockerfile"] == str(CONTAINERFILE)
    assert (DEPLOY / services["lrcn"]["build"]["context"] / CONTAINERFILE).resolve() == ROOT / CONTAINERFILE
    assert {"./config:/config:ro", "lrcn-media:/media"} <= set(services["lrcn"]["volumes"])
    # A read-only root with /tmp in memory is how the heavy test below runs the image's files.
    assert services["lrcn"]["read_only"] is True and services["lrcn"]["tmpfs"] == ["/tmp"]
    assert services["lrcn"]["cap_drop"] == ["ALL"]
    assert services["mosquitto"]["image"].startswith("docker.io/library/eclipse-mosquitto:")
    assert services["prometheus"]["image"].startswith("docker.io/prom/prometheus:")
    assert all(port.startswith("127.0.0.1:") for service in services.values() for port in service.get("ports", []))
    mounts = dict(volume.split(":")[:2] for volume in services["prometheus"]["volumes"])
    assert mounts["./prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["lrcn:9108"]
    assert prometheus["rule_files"] == [mounts["./alerts.yml"]]
    assert any(sink["url"].startswith("mqtt://mosquitto:1883") for sink in typed.sink)


# -- the image itself ---------------------------------------------------------------------------


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "building and mounting the image needs root (debootstrap, podman image mount)"
    for tool in ("podman", "debootstrap", "unshare", "chroot", "git"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install podman debootstrap)"
    return None


needs_podman = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def clean_checkout(tmp: Path) -> Path:
    """HEAD of this repository, as a fresh clone has it: nothing untracked, nothing built."""
    checkout = tmp / "checkout"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(checkout)], check=True, timeout=120)
    return checkout


def owned_by(root: Path, uid: int) -> list[str]:
    """Every path in the image's files owned by `uid`, as the image sees it (/...)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (folder == str(root) and d in ("proc", "sys", "dev"))]
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if path.lstat().st_uid == uid:
                found.append("/" + str(path.relative_to(root)))
    return found


# Heavy: 88 s on the project's 2-core machine with nothing cached (debootstrap 35 s, podman build
# 40 s, the bundle's export 7 s), 40 s with the base and podman's layers cached; CI's 20 minutes
# are nearly full, and its build would also download the base and every wheel.
@pytest.mark.heavy
@needs_podman
def test_the_image_builds_from_a_clean_checkout_and_its_own_files_serve_a_video_as_its_user(exported_seed, tmp_path):
    bundle, _, video = exported_seed
    tag = "localhost/lrcn-stream:test"
    began = time.perf_counter()
    built = build_image(Build(clean_checkout(tmp_path), tag, "bookworm", host_mirror()))
    print(f"\nbuilt {tag} from a clean checkout in {time.perf_counter() - began:.0f} s: {built}")
    config = tmp_path / "config"
    shutil.copytree(bundle, config / "bundle")
    shutil.copy(video, config / f"clip{video.suffix}")
    port = free_port()
    (config / "lrcn.toml").write_text(f"""metrics = "127.0.0.1:{port}"
endpoint = "tcp://127.0.0.1:{free_port()}"
state_dir = "/media"
[[stream]]
id = "clip"
source = "/config/clip{video.suffix}"
loop = true
events = {{ min_score = 0.0, min_duration_s = 0.0 }}
[[sink]]
type = "jsonl"
path = "/media/messages.jsonl"
""")
    with mounted(tag) as image:
        assert image.user == "lrcn" and image.entrypoint == ("lrcn", "serve")
        uid = int(
            next(row for row in (image.root / "etc/passwd").read_text().splitlines() if row.startswith("lrcn:")).split(
                ":"
            )[2]
        )
        assert uid != 0
        # The user owns /media and nothing else of the image: not a file of the code.
        assert owned_by(image.root, uid) == ["/media"]
        venv = image.root / "opt" / "lrcn" / "venv"
        assert not any(
            (Path(d) / n).lstat().st_mode & 0o002
            for d, ds, fs in os.walk(venv)
            for n in ds + fs
            if not (Path(d) / n).is_symlink()
        )
        assert not list(venv.glob("lib/python3*/site-packages/tensorflow*"))
        media = media_for(image, tmp_path / "media")

        helped = subprocess.run(
            chroot_command(image, ["lrcn", "serve", "--help"], config, media),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert helped.returncode == 0 and "usage: lrcn serve" in helped.stdout, helped.stderr

        # The image's own command line (ENTRYPOINT + CMD), as a container would start it.
        log = tmp_path / "serve.log"
        serve = subprocess.Popen(
            chroot_command(image, [*image.entrypoint, *image.cmd], config, media),
            stdout=subprocess.DEVNULL,
            stderr=open(log, "w"),
        )
        try:
            healthz = f"LRCN_HEALTHZ=http://127.0.0.1:{port}/healthz"
            probe = [*image.healthcheck[1:]]  # ["CMD", ...]: the command itself
            deadline = time.monotonic() + 60
            while http_get(f"http://127.0.0.1:{port}/healthz", 1.0)[0] != 200 and time.monotonic() < deadline:
                assert serve.poll() is None, log.read_text()[-2000:]
                time.sleep(0.1)
            healthy = subprocess.run(chroot_command(image, probe, config, media, env=(healthz,)), timeout=30)
            assert healthy.returncode == 0
            while (
                not (media / "messages.jsonl").is_file()
                or '"topic":"pred/' not in (media / "messages.jsonl").read_text()
            ):
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.1)
            serve.send_signal(signal.SIGTERM)
            assert serve.wait(timeout=15) == 0, log.read_text()[-2000:]
        finally:
            terminate(serve)
        # The same probe says so when nothing answers: it can fail.
        refused = subprocess.run(
            chroot_command(image, probe, config, media, env=(healthz,)), capture_output=True, text=True, timeout=30
        )
        assert refused.returncode == 1 and refused.stderr.startswith("healthz: ") and refused.stderr.count("\n") == 1
    lines = [json.loads(line) for line in (media / "messages.jsonl").read_text().splitlines()]
    assert any(line["topic"] == "pred/clip" for line in lines)
    written = [p for p in media.rglob("*")]
    assert written and all(p.stat().st_uid == uid for p in written), [(p, p.stat().st_uid) for p in written]
    assert (media / "lrcn.sqlite").is_file()
    print(f"whole test: {time.perf_counter() - began:.0f} s")
