"""Running a click command as a console script: the library's errors become one line on stderr and
exit status 2, never a traceback (used by `vqcpc-export` and `vqcpc-daemon`)."""
from __future__ import annotations

import sys

import click

from vqcpc.music.errors import VqcpcError


def run(command: click.Command) -> None:
    try:
        command(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except VqcpcError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
