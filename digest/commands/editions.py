"""`digest` commands for the editions area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
