"""What a log record is about: the request or job a tracked block runs for, and the error it reports."""

from __future__ import annotations

import contextvars
import logging

from opsmon.instrument.errors import OpsmonError, Severity, classify, new_reference, reference_of

# The level an error is logged at follows its severity: a user's mistake is not an operator's problem.
LOG_LEVELS = {Severity.LOW: logging.INFO, Severity.MEDIUM: logging.WARNING, Severity.HIGH: logging.ERROR,
              Severity.CRITICAL: logging.CRITICAL}

# Set by the outermost tracked block: {"request_id": ..., "handler": ..., and the fields given to track()}.
_request: contextvars.ContextVar[dict | None] = contextvars.ContextVar("opsmon_request", default=None)


def current_request() -> dict | None:
    return _request.get()


def enter(handler: str, fields: dict) -> contextvars.Token | None:
    """Start a request (or add fields to the one running); returns the token that ends it."""
    outer = _request.get()
    if outer is None:
        return _request.set({"request_id": new_reference(), "handler": handler, **fields})
    return _request.set({**outer, **fields}) if fields else None


def leave(token: contextvars.Token | None) -> None:
    if token is not None:
        _request.reset(token)


def error_fields(error: BaseException) -> dict:
    """reference, category and severity of any exception (see classify)."""
    category, severity = classify(error)
    return {"reference": reference_of(error), "category": category, "severity": severity.value}


def remember_request(error: BaseException) -> None:
    """Keep the request an error escaped from, so a record logged after the block still names it."""
    request = _request.get()
    if request is not None and getattr(error, "_opsmon_request", None) is None:
        _set(error, "_opsmon_request", request)


def was_logged(error: BaseException) -> bool:
    return getattr(error, "_opsmon_logged", False)


def mark_logged(error: BaseException) -> None:
    _set(error, "_opsmon_logged", True)


def _set(error: BaseException, name: str, value) -> None:
    try:
        setattr(error, name, value)
    except AttributeError:
        pass  # an exception type with __slots__: the lesser harm is to log it twice


def _error_of(record: logging.LogRecord) -> BaseException | None:
    """The error a record reports: its exc_info, or an OpsmonError among its message and arguments."""
    if record.exc_info and isinstance(record.exc_info[1], BaseException):
        return record.exc_info[1]
    if isinstance(record.msg, OpsmonError):
        return record.msg
    args = record.args if isinstance(record.args, tuple) else (record.args,) if record.args else ()
    for arg in args:
        if isinstance(arg, OpsmonError):
            return arg
    return None


def annotate(record: logging.LogRecord) -> logging.LogRecord:
    """Add the request and the error's reference, category and severity to a record, in the thread
    that logs it (fields given with `extra=` win). An error logged at its level counts as logged,
    so track() does not log it again."""
    error = _error_of(record)
    request = _request.get()
    if request is None and error is not None:
        request = getattr(error, "_opsmon_request", None)
    for key, value in (request or {}).items():
        if not hasattr(record, key):
            setattr(record, key, value)
    if error is not None:
        for key, value in error_fields(error).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        if record.levelno >= LOG_LEVELS[classify(error)[1]]:
            mark_logged(error)
    return record
