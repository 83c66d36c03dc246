"""Option types shared by every command."""
from __future__ import annotations

import math

import click


class Finite(click.FloatRange):
    """A float option in a range that also refuses nan and infinities (every comparison lets nan
    through a plain FloatRange)."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv
