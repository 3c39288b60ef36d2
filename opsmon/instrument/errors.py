"""The application's error hierarchy: each error has a category, a severity and a message fit for a user."""

from __future__ import annotations

import enum
import uuid


class Severity(enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class OpsmonError(Exception):
    """Base of every error the app raises on purpose.

    `str(err)` is for operators (what broke, with details); `err.user_message` is for the person
    using the app (what happened, what to do), and carries a reference that finds the log line.
    """

    category = "system"
    severity = Severity.MEDIUM
    # "client": the caller's mistake (a 404, a validation error), which the error SLO does not count.
    kind = "server"
    default_user_message = "Something went wrong on our side. Please try again in a moment."

    def __init__(self, message: str, *, user_message: str | None = None, severity: Severity | None = None,
                 reference: str | None = None, **context):
        super().__init__(message)
        if severity is not None:
            self.severity = severity
        self.context = context
        # `reference` lets an error stand for another one already logged (reference_of(that error)).
        self.reference = reference or new_reference()
        self._user_message = user_message or self.default_user_message

    @property
    def user_message(self) -> str:
        return f"{self._user_message} (reference {self.reference})"

    def to_dict(self) -> dict:
        """What an API answers: never the internal message, always the reference."""
        return {"error": self.category, "severity": self.severity.value, "message": self.user_message,
                "reference": self.reference}


class ValidationError(OpsmonError):
    """The caller's mistake: bad input, or something asked for that does not exist (a 404)."""

    category = "validation"
    severity = Severity.LOW
    kind = "client"
    default_user_message = "Some of the information given is not valid. Please check it and try again."


class DataIntegrityError(OpsmonError):
    category = "data_integrity"
    severity = Severity.HIGH
    default_user_message = "The data did not pass a consistency check, so nothing was changed."


class ExternalServiceError(OpsmonError):
    category = "external_service"
    severity = Severity.MEDIUM
    default_user_message = "A service we depend on is not answering. Please try again in a few minutes."


class ResourceExhaustedError(OpsmonError):
    category = "resource"
    severity = Severity.CRITICAL
    default_user_message = "The system is out of capacity right now. Please try again later."


class BackupError(OpsmonError):
    category = "backup"
    severity = Severity.HIGH
    default_user_message = "A backup or restore did not complete; the data was left as it was."


class ConfigError(OpsmonError):
    category = "config"
    severity = Severity.CRITICAL
    default_user_message = "The service is misconfigured. An operator has to fix its settings."


def new_reference() -> str:
    return uuid.uuid4().hex[:12]


def reference_of(error: BaseException) -> str:
    """The reference that finds this error's log line: an OpsmonError's own, else one given to the
    exception the first time it is asked for (track() logs unhandled errors with it)."""
    if isinstance(error, OpsmonError):
        return error.reference
    reference = getattr(error, "_opsmon_reference", None)
    if reference is None:
        reference = new_reference()
        try:
            error._opsmon_reference = reference
        except AttributeError:
            pass  # an exception type with __slots__: each call gives a new reference
    return reference


def classify(error: BaseException) -> tuple[str, Severity]:
    """Category and severity of any exception: ours say theirs, anything else is an unhandled bug."""
    if isinstance(error, OpsmonError):
        return error.category, error.severity
    return "unhandled", Severity.HIGH


def kind_of(error: BaseException) -> str:
    """"client" for the caller's mistakes, "server" for everything else, unhandled bugs included."""
    return error.kind if isinstance(error, OpsmonError) else "server"


def known_kinds() -> list[tuple[str, Severity]]:
    """(category, severity) of every error class defined so far, and of unhandled errors."""
    kinds = {("unhandled", Severity.HIGH)}
    classes = [OpsmonError]
    while classes:
        cls = classes.pop()
        kinds.add((cls.category, cls.severity))
        classes.extend(cls.__subclasses__())
    return sorted(kinds, key=lambda kind: (kind[0], kind[1].value))
