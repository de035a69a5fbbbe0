"""The subscription service: sign-up, confirmation, preferences, leaving, import and export.

Every function takes the session and ``now`` (or ``today``) explicitly and commits its own
work, so views and commands stay thin. Mail is never sent from here: it is queued in the
delivery ledger, by the statement that stores the request, and the delivery worker renders
it and signs its links (``digest.mail.assembly.notice_context``) when it sends it.

Its parts: ``addresses`` checks and normalises what a form brings; ``signup`` starts and
confirms a subscription and mails a new link; ``preferences`` changes what a reader gets,
and their address; ``leaving`` unsubscribes; ``portability`` exports or erases a reader's
data and imports or exports the list as CSV; ``statements`` is what the services that write
through the database driver share. Callers import the names below from here.
"""

from digest.subscriptions.addresses import (
    BlockedDomain,
    EmailTaken,
    InvalidEmail,
    blocked_domains,
    clean_categories,
    clean_language,
    consent_ip,
    find_by_email,
    normalize_email,
)
from digest.subscriptions.leaving import unsubscribe, unsubscribe_by_link
from digest.subscriptions.portability import (
    CSV_COLUMNS,
    CsvFormatError,
    ImportProblem,
    ImportReport,
    delete_data,
    export_csv,
    export_csv_text,
    export_data,
    import_csv,
)
from digest.subscriptions.preferences import (
    EMAIL_CHANGE_SOURCE,
    apply_email_change,
    pause,
    read_email_change,
    request_email_change,
    resume,
    resume_paused,
    update_preferences,
)
from digest.subscriptions.signup import (
    ConfirmOutcome,
    SignUpOutcome,
    SignUpResult,
    confirm,
    send_new_link,
    sign_up,
)
from digest.subscriptions.statements import CONFIRM_KINDS, CONFIRM_LINKS, MANAGE_LINKS

__all__ = [
    "CONFIRM_KINDS",
    "CONFIRM_LINKS",
    "CSV_COLUMNS",
    "EMAIL_CHANGE_SOURCE",
    "MANAGE_LINKS",
    "BlockedDomain",
    "ConfirmOutcome",
    "CsvFormatError",
    "EmailTaken",
    "ImportProblem",
    "ImportReport",
    "InvalidEmail",
    "SignUpOutcome",
    "SignUpResult",
    "apply_email_change",
    "blocked_domains",
    "clean_categories",
    "clean_language",
    "confirm",
    "consent_ip",
    "delete_data",
    "export_csv",
    "export_csv_text",
    "export_data",
    "find_by_email",
    "import_csv",
    "normalize_email",
    "pause",
    "read_email_change",
    "request_email_change",
    "resume",
    "resume_paused",
    "send_new_link",
    "sign_up",
    "unsubscribe",
    "unsubscribe_by_link",
    "update_preferences",
]
