"""`digest` commands for the editors area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
