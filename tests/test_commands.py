"""The command registry (tools/cli/commands.py): every built-in command answers --help through the real
entry point, an unknown command is one line and exit 2, and a command registered from outside
the built-in modules is parsed and run like the others."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lrcn.stream.errors import LrcnError
from lrcn.tools.cli.commands import COMMANDS, Commands
from tests.cli import lrcn

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", COMMANDS.names())
def test_every_registered_command_answers_help(name):
    run = lrcn(*name.split(), "--help")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"usage: lrcn {name} "), run.stdout
    assert "--log-level" in run.stdout and "--verbose" in run.stdout, run.stdout  # every command has them


def test_the_top_level_help_lists_the_one_word_commands_with_their_help():
    run = lrcn("--help")
    assert run.returncode == 0, run.stderr
    for name in COMMANDS.names():
        assert (" " in name) == (f"    {name} " not in run.stdout), name  # `bench capture` is bench's business
    assert "serve               run a bundle on live sources" in run.stdout


def test_an_unknown_command_is_one_line_and_exit_2():
    run = lrcn("nosuch", "--flag")
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.startswith("lrcn: error: unknown command 'nosuch' (choose from demo, synth,"), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


@pytest.mark.parametrize(
    "module", ["lrcn.tools.evidence.bench", "lrcn.tools.evidence.soak", "lrcn.tools.evidence.faults"]
)
def test_the_evidence_tools_run_as_modules_through_the_registry(module):
    name = module.rpartition(".")[2]
    run = lrcn("--help", module=module)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"usage: lrcn {name} "), run.stdout


def greeter() -> Commands:
    """A registry of its own, holding one command defined here, as a plug-in module would."""
    commands = Commands(prog="lrcn")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--fail", action="store_true")
        parser.add_argument("--status", type=int, default=0)

    @commands.command("greet", help="say hello to NAME", arguments=add_arguments)
    def greet(args) -> int:
        if args.fail:
            raise LrcnError(f"cannot greet {args.name}")
        print(f"hello, {args.name}")
        return args.status

    @commands.command(
        "greet loudly",
        arguments=lambda parser: parser.add_argument("--times", type=int, default=1),
        description="shout, parsed apart from `greet NAME`",
    )
    def shout(args) -> None:
        print("HELLO! " * args.times)

    return commands


def test_a_new_command_appears_in_the_parser_and_runs(capsys):
    commands = greeter()
    assert commands.names() == ["greet", "greet loudly"]
    assert "say hello to NAME" in commands.parser().format_help()
    assert commands.main(["greet", "world"]) == 0
    assert capsys.readouterr().out == "hello, world\n"
    assert commands.main(["greet", "world", "--status", "3"]) == 3  # an int returned is the exit status
    assert commands.main(["greet", "loudly", "--times", "2"]) == 0  # two words: its own parser
    assert capsys.readouterr().out == "hello, world\nHELLO! HELLO! \n"
    with pytest.raises(SystemExit) as exit:
        commands.main(["greet", "loudly", "--help"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.startswith("usage: lrcn greet loudly [-h] [--times TIMES]")


def test_a_new_command_ends_its_errors_as_one_line(capsys):
    commands = greeter()
    assert commands.main(["greet", "world", "--fail", "--log-format", "json"]) == 2
    assert capsys.readouterr().err == "lrcn: error: cannot greet world\n"
    assert commands.main(["wave"]) == 2
    assert capsys.readouterr().err == "lrcn: error: unknown command 'wave' (choose from greet)\n"


def test_a_name_is_registered_once():
    commands = greeter()
    with pytest.raises(ValueError, match="'greet' is registered twice"):
        commands.command("greet", help="another")(lambda args: None)


LOADED = """
import json, sys
from lrcn.tools.cli.commands import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps([sorted({m.split(".")[0] for m in sys.modules} & {"av", "cv2", "zmq", "prometheus_client", "tensorflow", "keras"}),
                  sorted(m for m in sys.modules if m.startswith("lrcn.tools.") and m.count(".") == 3)]))
"""


@pytest.mark.parametrize(
    ("argv", "tools"),
    [
        (
            ["train", "--help"],
            ["lrcn.tools.cli.args", "lrcn.tools.cli.commands", "lrcn.tools.cli.quiet", "lrcn.tools.cli.train"],
        ),
        (
            ["serve", "--help"],
            [
                "lrcn.tools.cli.args",
                "lrcn.tools.cli.commands",
                "lrcn.tools.cli.hangups",
                "lrcn.tools.cli.quiet",
                "lrcn.tools.cli.serve",
            ],
        ),
        (
            ["bench", "capture", "--help"],
            ["lrcn.tools.cli.commands", "lrcn.tools.cli.quiet", "lrcn.tools.evidence.bench_capture"],
        ),
    ],
)
def test_a_command_imports_its_own_module_only(argv, tools):
    """`lrcn serve` does not pay for the training code's imports nor `lrcn train` for PyAV,
    OpenCV and ZeroMQ: the registry imports the one module that registers the command."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    heavy, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert heavy == [] and loaded == tools, (heavy, loaded)
