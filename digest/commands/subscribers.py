"""`digest` commands for the subscribers area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
