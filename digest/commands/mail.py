"""`digest` commands for the mail area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
