"""Forms of the subscriber pages (Flask-WTF, so each carries a CSRF token)."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    EmailField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional, StopValidation
from wtforms.widgets import CheckboxInput, ListWidget

from digest.models import CATEGORIES, LANGUAGES

try:  # WTForms 3.3 deprecates (value, label) tuples in favour of SelectChoice.
    from wtforms.fields.choices import SelectChoice as _Choice
except ImportError:  # pragma: no cover - older WTForms

    def _Choice(value: str, label: Any) -> Any:  # type: ignore[no-redef]
        return (value, label)


CATEGORY_LABELS: dict[str, Any] = {
    "politics": _l("Politics"),
    "economy": _l("Economy"),
    "sport": _l("Sport"),
    "health": _l("Health"),
    "other": _l("Other news"),
}
# Each language is named in itself, so a reader finds theirs whatever the page language.
LANGUAGE_LABELS: dict[str, str] = {"fr": "Français", "en": "English", "es": "Español"}


class CheckboxesField(SelectMultipleField):
    """A list of checkboxes (one per choice) instead of a multi-select box."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _at_least_one(form: FlaskForm, field: SelectMultipleField) -> None:
    # A plain function rather than DataRequired: that would mark every checkbox "required".
    if not field.data:
        raise StopValidation(str(_l("Choose at least one section.")))


def _category_field() -> CheckboxesField:
    return CheckboxesField(
        _l("Sections you want"),
        choices=[_Choice(c, CATEGORY_LABELS[c]) for c in CATEGORIES],
        default=list(CATEGORIES),
        validators=[_at_least_one],
    )


def _language_field() -> SelectField:
    return SelectField(
        _l("Language of the digest"),
        choices=[_Choice(code, LANGUAGE_LABELS[code]) for code in LANGUAGES],
    )


class SignUpForm(FlaskForm):
    """Home page sign-up: email, optional name, sections, language, and a honeypot."""

    email = EmailField(
        _l("Email address"),
        validators=[InputRequired(message=_l("Enter your email address.")), Length(max=320)],
    )
    name = StringField(_l("Name (optional)"), validators=[Optional(), Length(max=200)])
    categories = _category_field()
    language = _language_field()
    # Hidden from people by CSS and from assistive technology by aria-hidden; bots fill it.
    website = StringField(_l("Leave this field empty"))
    # No SubmitField: home.html writes its button itself, and each field of this form is
    # built, filled and validated again on every sign-up.


class NewLinkForm(FlaskForm):
    """Ask for a fresh confirmation or preferences link by email."""

    email = EmailField(
        _l("Email address"),
        validators=[InputRequired(message=_l("Enter your email address.")), Length(max=320)],
    )
    website = StringField(_l("Leave this field empty"))
    submit = SubmitField(_l("Send me a new link"))


class PreferencesForm(FlaskForm):
    """What the reader receives, in which language."""

    name = StringField(_l("Name (optional)"), validators=[Optional(), Length(max=200)])
    categories = _category_field()
    language = _language_field()
    submit = SubmitField(_l("Save my preferences"))


class PauseForm(FlaskForm):
    """Stop the digest for a number of days."""

    days = IntegerField(
        _l("Number of days"),
        default=14,
        validators=[
            InputRequired(message=_l("Enter a number of days.")),
            NumberRange(min=1, max=365, message=_l("Enter a number from 1 to 365.")),
        ],
    )
    submit = SubmitField(_l("Pause the digest"))


class EmailChangeForm(FlaskForm):
    """Move the subscription to another address (confirmed from that address)."""

    new_email = EmailField(
        _l("New email address"),
        validators=[InputRequired(message=_l("Enter your email address.")), Length(max=320)],
    )
    submit = SubmitField(_l("Change my address"))


class ButtonForm(FlaskForm):
    """A single confirmation button (confirm, unsubscribe, resume, download, delete)."""

    submit = SubmitField()
