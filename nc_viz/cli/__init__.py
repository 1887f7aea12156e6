"""The `ncviz` command line: a thin click layer over the library.

Subcommands live in their own modules and are imported only when run or listed, and
none of them imports torch at module level, so `--help` and `--version` stay fast.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import sys
import traceback

import click

from .. import __version__
from ..core.threads import keep_large_allocations, prefer_passive_waits
from ..core.errors import NamesParameters, NcVizError, Param, UsageError, first_line

# command name -> module under nc_viz.cli that defines `command`
COMMANDS = {
    "compare": "compare",
    "neurons": "neurons",
    "batch": "batch",
    "models": "models",
    "classes": "classes",
    "make-data": "make_data",
    "train": "train",
    "evaluate": "evaluate",
    "sweep": "sweep",
    "sanity": "sanity",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._module_exists(name)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not self._module_exists(name):
            return None
        return importlib.import_module(f"{__name__}.{COMMANDS[name]}").command

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple:
        """As click's, but an unknown command suggests the closest ones (`compar` -> `compare`)."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            ctx.fail(f"no such command {name!r}{hint}")
        return super().resolve_command(ctx, args)

    @staticmethod
    def _module_exists(name: str) -> bool:
        return importlib.util.find_spec(f"{__name__}.{COMMANDS[name]}") is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="ncviz")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int) -> None:
    """Class activation maps of a baseline CNN beside the same network with NC blocks."""
    ctx.obj = {"debug": debug}
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_flags_in_logs)


def _flags_in_logs(record: logging.LogRecord) -> bool:
    """A library log message names parameters (`Param` arguments); the user reads their flags."""
    if isinstance(record.args, tuple) and any(isinstance(arg, Param) for arg in record.args):
        from .options import flag_name

        record.args = tuple(flag_name(arg.name) if isinstance(arg, Param) else arg for arg in record.args)
    return True


# click >= 8.2 raises this UsageError for a group run without a command; older click shows the help itself
_NO_ARGS_IS_HELP: type[Exception] | tuple[()] = getattr(click.exceptions, "NoArgsIsHelpError", ())


# Commands whose torch work shares the cores with decode, render or scoring threads: their idle
# OpenMP threads sleep. Training keeps the runtime's default: spinning was 10-25% faster there on
# a quiet 2-core machine (benchmarks/train_speed.py, resnet20 and resnet20_nc).
THREADED_COMMANDS = ("batch", "evaluate", "sanity")


def _command_of(argv: list[str]) -> str | None:
    """The command named in `argv` (its first word that is not an option), if any."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the CLI and turns errors into one line and an exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if _command_of(argv) in THREADED_COMMANDS:  # before the command imports torch: see core.threads
        prefer_passive_waits()
    keep_large_allocations()
    try:
        cli.main(args=argv, prog_name="ncviz", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except _NO_ARGS_IS_HELP as exc:  # `ncviz` alone (click >= 8.2): the help, as click shows it
        exc.show()
        return exc.exit_code
    except click.UsageError as exc:  # click's own checks: one line too, with where to look
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"error: {_one_line(exc.format_message())}{where}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"error: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    except NamesParameters as exc:  # the library names its parameters; the user reads the flags
        from .options import flag_name

        return _fail(exc, debug, 2 if isinstance(exc, UsageError) else 1, text=_one_line(exc.naming(flag_name)))
    except UsageError as exc:
        return _fail(exc, debug, 2)
    except NcVizError as exc:
        return _fail(exc, debug, 1)
    except OSError as exc:  # a file the user named: unwritable folder, full disk, ...
        if exc.filename is None:
            return _fail(exc, debug, 1, internal=True)
        return _fail(exc, debug, 1, text=f"{exc.filename}: {exc.strerror}")
    except Exception as exc:  # a bug: one line, and the traceback with --debug
        return _fail(exc, debug, 1, internal=True)
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(exc: BaseException, debug: bool, code: int, internal: bool = False, text: str | None = None) -> int:
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    if text is None:
        text = first_line(exc)
    if internal:
        text = f"internal error: {type(exc).__name__}: {text}" + ("" if debug else " (rerun with --debug for the traceback)")
    click.echo(f"error: {text}", err=True)
    return code
