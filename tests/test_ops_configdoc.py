"""The README's configuration reference stays generated from config.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import config
from digest.configdoc import README, collect_settings, main, render_reference, updated_readme
from tests.conftest import PROJECT_ROOT


def test_the_readme_reference_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--check"])
    assert status == 0, capsys.readouterr().err


def test_every_setting_has_a_description() -> None:
    undocumented = [s.name for s in collect_settings() if not s.description]
    assert undocumented == [], "add a comment above these settings in config.py"


def test_the_reference_lists_every_setting_with_its_default() -> None:
    readme = README.read_text(encoding="utf-8")
    names = [name for name in vars(config.Config) if name.isupper()]
    assert len(names) > 20
    for name in names:
        variable = "DIGEST_ENV" if name == "ENV_NAME" else f"DIGEST_{name}"
        assert f"| `{variable}` |" in readme
    assert "| `DIGEST_SEND_AT` | `07:00` | same |" in readme
    assert '| `DIGEST_LANGUAGES` | `["fr", "en", "es"]` | same |' in readme
    assert "| `DIGEST_SESSION_COOKIE_SECURE` | Flask's default | `true` |" in readme
    # Angle brackets in prose are escaped, or Markdown would hide "<address>".
    assert '"Name &lt;address&gt;"' in readme


def test_settings_written_together_share_their_comment() -> None:
    by_name = {s.name: s for s in collect_settings()}
    for name in by_name:
        assert by_name[name].description, name
    first = by_name.get("DKIM_SELECTOR")
    second = by_name.get("DKIM_KEY_FILE")
    if first is None or second is None:
        pytest.skip("no pair of settings under one comment in config.py")
    assert first.description == second.description


def test_a_stale_readme_is_reported_then_fixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "README.md"
    stale.write_text(
        "# digest\n\n<!-- config:start -->\n| old | table |\n<!-- config:end -->\n\nAfter.\n",
        encoding="utf-8",
    )
    assert main(["--check", "--readme", str(stale)]) == 1
    assert "python -m digest.configdoc" in capsys.readouterr().err
    assert main(["--readme", str(stale)]) == 0
    fixed = stale.read_text(encoding="utf-8")
    assert "| old | table |" not in fixed
    assert fixed.startswith("# digest\n\n<!-- config:start -->")
    assert fixed.endswith("<!-- config:end -->\n\nAfter.\n")
    assert main(["--check", "--readme", str(stale)]) == 0


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all",
        "<!-- config:end --> then <!-- config:start -->",
        "<!-- config:start --><!-- config:end --><!-- config:start --><!-- config:end -->",
    ],
)
def test_a_readme_without_one_marker_pair_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        updated_readme(text, render_reference([]))


def test_it_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "digest.configdoc", "--check"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
