"""Forms of the subscriber pages (Flask-WTF, so each carries a CSRF token).

The sign-up is the busiest form (every newcomer, and bots in bulk), so its rules live in a
plain function, ``read_sign_up``, and ``SignUpForm`` only draws the page. The other forms
validate themselves the WTForms way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.i18n import translations as wtforms_translations
from werkzeug.datastructures import MultiDict
from wtforms import (
    EmailField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, NumberRange, Optional, StopValidation
from wtforms.widgets import CheckboxInput, ListWidget

from digest.models import CATEGORIES, LANGUAGES

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


EMAIL_MAX_LENGTH = 320
NAME_MAX_LENGTH = 200
CHOOSE_A_SECTION = _l("Choose at least one section.")
ENTER_YOUR_EMAIL = _l("Enter your email address.")


def _at_least_one(form: FlaskForm, field: SelectMultipleField) -> None:
    # A plain function rather than DataRequired: that would mark every checkbox "required".
    if not field.data:
        raise StopValidation(str(CHOOSE_A_SECTION))


def _category_field(*validators: Any) -> CheckboxesField:
    return CheckboxesField(
        _l("Sections you want"),
        choices=[SelectChoice(c, CATEGORY_LABELS[c]) for c in CATEGORIES],
        default=list(CATEGORIES),
        validators=list(validators),
    )


def _language_field() -> SelectField:
    return SelectField(
        _l("Language of the digest"),
        choices=[SelectChoice(code, LANGUAGE_LABELS[code]) for code in LANGUAGES],
    )


class SignUpForm(FlaskForm):
    """Draws the home page sign-up (email, optional name, sections, language, honeypot).

    It has no validators: ``read_sign_up`` checks what it posts, and the view places that
    function's messages beside these fields when the page comes back with errors.
    """

    email = EmailField(_l("Email address"), render_kw={"maxlength": EMAIL_MAX_LENGTH})
    name = StringField(_l("Name (optional)"), render_kw={"maxlength": NAME_MAX_LENGTH})
    categories = _category_field()
    language = _language_field()
    # Hidden from people by CSS and from assistive technology by aria-hidden; bots fill it.
    website = StringField(_l("Leave this field empty"))
    # No SubmitField: home.html writes its button itself.


@dataclass
class SignUpSubmission:
    """A posted sign-up: the values as typed, and the messages of the fields that are wrong."""

    email: str
    name: str | None
    categories: list[str]
    language: str | None
    honeypot: str | None
    errors: dict[str, list[str]]


# The sign-up's wording when WTForms checked it, in WTForms' own catalogue. Bound to other
# names so that pybabel leaves these messages out of ours.
_wtforms_gettext = wtforms_translations.gettext
_wtforms_ngettext = wtforms_translations.ngettext


def _too_long(limit: int) -> str:
    return _wtforms_ngettext(
        "Field cannot be longer than %(max)d character.",
        "Field cannot be longer than %(max)d characters.",
        limit,
    ) % {"max": limit}


def _unknown_choices(values: list[str]) -> str:
    return _wtforms_ngettext(
        "'%(value)s' is not a valid choice for this field.",
        "'%(value)s' are not valid choices for this field.",
        len(values),
    ) % {"value": "', '".join(values)}


def read_sign_up(formdata: MultiDict[str, str]) -> SignUpSubmission:
    """Check a posted sign-up form field by field, as the page states its rules.

    Whether the address can take mail is ``subscriptions.sign_up``'s question, asked once
    these rules pass. Plain code rather than a WTForms form, whose building and validating
    cost some 80 µs of CPU per sign-up (issue 6: the sign-up's rate under load).
    """
    email = formdata.get("email", "")
    name = formdata.get("name")
    categories = formdata.getlist("categories")
    language = formdata.get("language")
    errors: dict[str, list[str]] = {}
    if not email:
        errors["email"] = [str(ENTER_YOUR_EMAIL)]
    elif len(email) > EMAIL_MAX_LENGTH:
        errors["email"] = [_too_long(EMAIL_MAX_LENGTH)]
    # A name of blanks is no name, not an error.
    if name and name.strip() and len(name) > NAME_MAX_LENGTH:
        errors["name"] = [_too_long(NAME_MAX_LENGTH)]
    unknown = [value for value in dict.fromkeys(categories) if value not in CATEGORIES]
    if unknown:
        errors["categories"] = [_unknown_choices(unknown)]
    elif not categories:
        errors["categories"] = [str(CHOOSE_A_SECTION)]
    if language not in LANGUAGES:
        errors["language"] = [_wtforms_gettext("Not a valid choice.")]
    return SignUpSubmission(email, name, categories, language, formdata.get("website"), errors)


class NewLinkForm(FlaskForm):
    """Ask for a fresh confirmation or preferences link by email."""

    email = EmailField(
        _l("Email address"),
        validators=[InputRequired(message=ENTER_YOUR_EMAIL), Length(max=EMAIL_MAX_LENGTH)],
    )
    website = StringField(_l("Leave this field empty"))
    submit = SubmitField(_l("Send me a new link"))


class PreferencesForm(FlaskForm):
    """What the reader receives, in which language."""

    name = StringField(_l("Name (optional)"), validators=[Optional(), Length(max=NAME_MAX_LENGTH)])
    categories = _category_field(_at_least_one)
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
        validators=[InputRequired(message=ENTER_YOUR_EMAIL), Length(max=EMAIL_MAX_LENGTH)],
    )
    submit = SubmitField(_l("Change my address"))


class ButtonForm(FlaskForm):
    """A single confirmation button (confirm, unsubscribe, resume, download, delete)."""

    submit = SubmitField()
