"""`digest` commands for the understand area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
