"""The `vqcpc` command group. Each command lives beside the code it drives and is added here."""
from __future__ import annotations

import sys

import click

from vqcpc.music.errors import VqcpcError


class VqcpcGroup(click.Group):
    """Maps the library's errors to one line on stderr and exit status 2 (never a traceback)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        from .entry import run  # click's own usage errors as one line too

        run(super(), args, prog_name=prog_name, complete_var=complete_var, **extra)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VqcpcError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except OSError as err:  # a folder that does not exist, no permission to write there
            from .entry import io_error

            click.echo(io_error(err), err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=VqcpcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vqcpc")
def main():
    """Bach-style four-voice variations that keep a template's VQ-CPC codes."""


def _add_commands() -> None:
    from vqcpc.music.commands import data, inspect

    main.add_command(data)
    main.add_command(inspect)
    from vqcpc.models.commands import codes, evaluate, train, vary

    main.add_command(train)
    main.add_command(evaluate)
    main.add_command(codes)
    main.add_command(vary)
    from vqcpc.daemon.demo import demo_command

    main.add_command(demo_command())


_add_commands()
