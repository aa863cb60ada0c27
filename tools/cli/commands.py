"""The `lrcn` commands: a registry that each command's module adds itself to, and `main`, which runs one.

A new command is one module (close neighbours such as train and evaluate may share one) that
registers its entry function, and a line in BUILT_IN below naming its module:

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("dir")

    @command("keys", help="CURVE key pairs ...", arguments=add_arguments)
    def run(args) -> None:
        ...

`main` parses the command line, configures logging (`--log-level`, `--log-format` and `--verbose`
are added to every command), runs the command, and ends every LrcnError or OSError as one line,
`lrcn: error: ...`, with exit status 2; Ctrl-C is exit status 130. What the entry function returns
is the exit status when it is an int; anything else (None, a result) is 0.

A two-word name (`bench capture`) is a command parsed apart from its first word's command, whose
positional arguments would otherwise take the second word; `lrcn --help` lists one-word names only.

>>> hello = Commands(prog="hello")
>>> @hello.command("greet", help="say hello", arguments=lambda parser: parser.add_argument("name"))
... def greet(args):
...     print(f"hello, {args.name}")
>>> args = hello.parser().parse_args(["greet", "world"])
>>> args.run(args)
hello, world
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from lrcn.stream.credentials import redact
from lrcn.stream.errors import LrcnError
from lrcn.stream.logs import FORMATS, LEVELS, configure_logging
from lrcn.tools.cli.quiet import quiet_libraries

# The module that registers each built-in command, in the order `lrcn --help` lists them. Running
# one command imports its module only (`lrcn --help` imports them all), so PyAV, OpenCV and
# ZeroMQ cost `lrcn train` nothing and the training code costs `lrcn serve` nothing.
BUILT_IN = {
    "demo": "lrcn.tools.cli.demo",
    "synth": "lrcn.tools.cli.synth",
    "train": "lrcn.tools.cli.train",
    "evaluate": "lrcn.tools.cli.train",
    "export": "lrcn.tools.cli.export",
    "engine": "lrcn.tools.cli.export",
    "doctor": "lrcn.tools.cli.doctor",
    "keys": "lrcn.tools.cli.keys",
    "proxy": "lrcn.tools.cli.proxy",
    "serve": "lrcn.tools.cli.serve",
    "annotate": "lrcn.tools.cli.annotate",
    "stream-accuracy": "lrcn.tools.stream_accuracy.streaming_accuracy",
    "bench": "lrcn.tools.evidence.bench",
    "bench capture": "lrcn.tools.evidence.bench_capture",
    "soak": "lrcn.tools.evidence.soak",
    "faults": "lrcn.tools.evidence.faults",
    "watch": "lrcn.tools.cli.watch",
    "novelty": "lrcn.tools.cli.novelty",
}

Run = Callable[[argparse.Namespace], object]
AddArguments = Callable[[argparse.ArgumentParser], object]


@dataclass(frozen=True)
class Command:
    name: str
    run: Run
    arguments: AddArguments | None = None  # adds the command's own arguments to its parser
    help: str | None = None  # its line in `lrcn --help`
    parser_options: dict = field(default_factory=dict)  # ArgumentParser's: description, epilog


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """What every command prints besides its results: its log lines, and libraries' noise."""
    output = parser.add_argument_group("output")
    output.add_argument("--log-level", choices=LEVELS, default="info", help="lowest level logged (default info)")
    output.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="text, or json: one object per line, for a log shipper (default text)",
    )
    output.add_argument(
        "--verbose",
        action="store_true",
        help="also show TensorFlow's C++ log lines and Python warnings (hidden by default)",
    )


class Commands:
    """A command line made of registered commands; `built_in` maps each built-in command to the
    module that registers it."""

    def __init__(
        self, built_in: Mapping[str, str] | None = None, *, prog: str = "lrcn", description: str | None = None
    ):
        self.built_in = dict(built_in or {})
        self.prog = prog
        self.description = description
        self._commands: dict[str, Command] = {}

    def command(
        self, name: str, *, help: str | None = None, arguments: AddArguments | None = None, **parser_options
    ) -> Callable[[Run], Run]:
        """Register the decorated function as `lrcn NAME`; `arguments(parser)` adds its arguments."""

        def register(run: Run) -> Run:
            known = self._commands.get(name)
            if known is not None and not _same_function(known.run, run):
                raise ValueError(f"command {name!r} is registered twice: {known.run.__module__} and {run.__module__}")
            self._commands[name] = Command(name, run, arguments, help, parser_options)
            return run

        return register

    def names(self) -> list[str]:
        """Every command (two-word ones too): the built-in ones in their listed order, then the rest
        as registered; the same order whichever modules happen to be imported first."""
        self._load_built_in()
        return [command.name for command in self._ordered()]

    def _ordered(self) -> list[Command]:
        rank = {name: i for i, name in enumerate(self.built_in)}
        return sorted(self._commands.values(), key=lambda command: rank.get(command.name, len(rank)))

    def parser(self, only: str | None = None) -> argparse.ArgumentParser:
        """`lrcn` with every one-word command as a subparser (or only the one named `only`)."""
        self._load_built_in(only)
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description)
        subparsers = parser.add_subparsers(dest="command", required=True)
        for command in self._ordered():
            if " " not in command.name and only in (None, command.name):
                self._fill(subparsers.add_parser(command.name, help=command.help, **command.parser_options), command)
        return parser

    def own_parser(self, name: str) -> argparse.ArgumentParser:
        """The parser of a two-word command, `lrcn bench capture`, which parses apart."""
        self._load_built_in(name)
        command = self._commands[name]
        return self._fill(argparse.ArgumentParser(prog=f"{self.prog} {name}", **command.parser_options), command)

    def main(self, argv: Iterable[str] | None = None) -> int:
        """Run the command `argv` names; its exit status."""
        argv = sys.argv[1:] if argv is None else list(argv)
        two_words = " ".join(argv[:2])
        self._load_built_in(two_words if two_words in self.built_in else argv[0] if argv else None)
        if len(argv) >= 2 and two_words in self._commands:
            args = self.own_parser(two_words).parse_args(argv[2:])
        elif argv and not argv[0].startswith("-") and argv[0] not in self._commands:
            self._load_built_in()  # a command registered by no built-in module is still listed
            known = ", ".join(name for name in self._commands if " " not in name)
            print(f"{self.prog}: error: unknown command {argv[0]!r} (choose from {known})", file=sys.stderr)
            return 2
        else:
            args = self.parser(argv[0] if argv and argv[0] in self._commands else None).parse_args(argv)
        configure_logging(args.log_level, args.log_format)
        try:
            quiet_libraries(verbose=args.verbose)
            status = args.run(args)
        except (LrcnError, OSError) as err:  # OSError: a path the user gave cannot be read or written
            print(f"{self.prog}: error: {redact(str(err))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{self.prog}: interrupted", file=sys.stderr)
            return 130
        return status if isinstance(status, int) else 0

    def _fill(self, parser: argparse.ArgumentParser, command: Command) -> argparse.ArgumentParser:
        if command.arguments is not None:
            command.arguments(parser)
        add_output_arguments(parser)
        parser.set_defaults(run=command.run)
        return parser

    def _load_built_in(self, only: str | None = None) -> None:
        """Import the modules of the built-in commands: all of them, or the one of command `only`."""
        for module in [self.built_in[only]] if only in self.built_in else dict.fromkeys(self.built_in.values()):
            importlib.import_module(module)


def _same_function(a: Run, b: Run) -> bool:
    """One function, imported twice: `python -m lrcn.tools.evidence.bench` runs the file as __main__, and the
    registry then imports it again by name."""
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return (
        code_a is not None
        and code_b is not None
        and code_a.co_filename == code_b.co_filename
        and a.__qualname__ == b.__qualname__
    )


COMMANDS = Commands(
    BUILT_IN, prog="lrcn", description="`lrcn`: the command line, a thin layer over models/ and stream/."
)
command = COMMANDS.command
build_parser = COMMANDS.parser
main = COMMANDS.main
