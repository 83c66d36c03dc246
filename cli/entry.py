"""Running a click command as a console script: the library's errors become one line on stderr and
exit status 2, never a traceback (used by `vqcpc-export` and `vqcpc-daemon`)."""
from __future__ import annotations

import sys

import click

from vqcpc.music.errors import VqcpcError


def io_error(err: OSError) -> str:
    """An OSError (a missing folder, no permission) as one line naming the file."""
    return f"error: {err.filename}: {err.strerror}" if err.filename and err.strerror else f"error: {err}"


def show(err: click.ClickException) -> None:
    """A click error (a bad option value, a missing argument) as one line, with where to look."""
    ctx = getattr(err, "ctx", None)
    hint = f" (see {ctx.command_path} --help)" if isinstance(err, click.UsageError) and ctx is not None else ""
    click.echo(f"error: {err.format_message()}{hint}", err=True)


def run(command: click.Command, args=None, **extra):
    """Run ``command``; errors end it with one line on stderr: 2 for bad input, 130 for Ctrl-C."""
    try:
        code = command.main(args=args, standalone_mode=False, **extra)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        show(err)
        sys.exit(err.exit_code)
    except VqcpcError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    except OSError as err:
        click.echo(io_error(err), err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
