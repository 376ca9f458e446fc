"""What InfluxDB's answer to one ``POST /write`` means: stored, bad data (give up exactly
the refused lines), too large (split), or trouble that is not the data's (retry).

Pure: no I/O. The words matched are InfluxDB 1.x's; 2.x and 3.x keep them in their v1 API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

AnswerKind = Literal["stored", "bad_data", "too_large", "missing_database", "auth", "server",
                     "unreachable", "disk", "internal"]

# What only data can cause (InfluxDB 1.x wording; 2.x and 3.x keep it in their v1 API).
_BAD_DATA_SIGNS = ("unable to parse", "field type conflict", "partial write",
                   "points beyond retention policy")


@dataclass(frozen=True, slots=True)
class Answer:
    """InfluxDB's answer to one ``POST /write``, classified.

    Only ``bad_data`` (a 400 or 422 whose text says the line protocol is unparsable, a
    field's type conflicts, or a partial write refused some points) and ``too_large``
    (413: split and try again) are about the data. Everything else (a missing database,
    refused credentials, a server error, no answer at all) is not the data's fault and
    is retried: nothing is acknowledged and dropped because of it."""

    kind: AnswerKind
    status: int = 0  # HTTP status; 0 when there was no answer
    message: str = ""  # InfluxDB's error text (the JSON ``error`` or ``message``)

    @property
    def detail(self) -> str:
        return f"{self.status}: {self.message}" if self.status else self.message


def error_text(body: str) -> str:
    """The error InfluxDB put in its JSON answer (1.x ``error``, 2.x ``message``)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(data, dict):
        for key in ("error", "message"):
            value = data.get(key)
            if isinstance(value, str):
                return value
    return body.strip()


def classify(status: int, body: str) -> Answer:
    """Sort an HTTP answer to ``POST /write`` into an :class:`Answer` kind."""
    if 200 <= status < 300:
        return Answer("stored", status)
    message = error_text(body)
    if status in (400, 422) and any(sign in message for sign in _BAD_DATA_SIGNS):
        return Answer("bad_data", status, message)
    if status in (401, 403):
        return Answer("auth", status, message)
    if status == 404 and "not found" in message and ("database" in message
                                                     or "bucket" in message):
        return Answer("missing_database", status, message)
    if status == 413:
        return Answer("too_large", status, message or "request entity too large")
    return Answer("server", status, message)
