"""whatsmeow's sentinel errors, recognized where neonize hands them over.

neonize crosses from Go to Python with `err.Error()` copied into a protobuf string: the
error's identity (`errors.Is(err, whatsmeow.ErrProfilePictureNotSet)`) does not survive
the crossing, only its text does. So the texts of the few sentinels we act on are matched
here, and nowhere else; the texts are whatsmeow's own (`errors.go`), as compiled into
neonize 0.5.2, and a test reads them out of neonize's shared library so that an upgrade
that changes one fails loudly instead of turning a `null` back into an error.
"""

from __future__ import annotations

import re
from typing import Any

# whatsmeow.ErrProfilePictureNotSet and ErrProfilePictureUnauthorized (a hidden picture).
PICTURE_NOT_SET = "that user or group does not have a profile picture"
PICTURE_HIDDEN = "the user has hidden their profile picture from you"
# whatsmeow.ErrMessageTimedOut: the message went out, WhatsApp's answer did not come.
SEND_TIMED_OUT = "timed out waiting for message send response"
# whatsmeow.ErrServerReturnedError, followed by WhatsApp's code ("server returned error 463").
SERVER_RETURNED_ERROR = "server returned error"
_LATER = {"408", "429"}
_SERVER_CODE = re.compile(re.escape(SERVER_RETURNED_ERROR) + r" (\d{3})\b")


def go_text(exc: BaseException) -> str:
    """The Go error's text: neonize raises some errors with the text, others with the
    whole return protobuf (`GetProfilePictureError(model)`), whose `Error` holds it."""
    first: Any = exc.args[0] if exc.args else ""
    return str(getattr(first, "Error", first))


def no_picture(exc: BaseException) -> bool:
    """Whether a failed picture lookup means there is no picture this account may see."""
    from neonize.exc import GetProfilePictureError

    return isinstance(exc, GetProfilePictureError) and go_text(exc) in (
        PICTURE_NOT_SET,
        PICTURE_HIDDEN,
    )


def send_timed_out(exc: BaseException) -> bool:
    """Whether a failed send may still have reached WhatsApp (sent, answer lost)."""
    return SEND_TIMED_OUT in go_text(exc)


def refused_by_server(exc: BaseException) -> bool:
    """Whether WhatsApp refused a send with a 4xx code (463: reaching out to this
    contact is locked for now, 479, 403, ...): sending it again is refused again, and
    WhatsApp penalises an account that keeps trying."""
    found = _SERVER_CODE.search(go_text(exc))
    # 408 and 429 (rate limited) say "later", not "no": they stay retried.
    return found is not None and 400 <= int(found.group(1)) < 500 and found.group(1) not in _LATER
