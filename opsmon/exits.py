"""The exit statuses of the kit's commands, and `Failure`, the error that carries one up to a command's `main`."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PROBLEMS, EXIT_BUSY, EXIT_NOT_RESTORED = range(6)
MEANINGS = {
    EXIT_OK: "done (status: all is well)",
    EXIT_FAILED: "the job failed; nothing was lost, and the message says what was kept",
    EXIT_USAGE: "bad arguments or config",
    EXIT_PROBLEMS: "damaged backups, data problems or a failed drill found (status: something is not well)",
    EXIT_BUSY: "another job holds the lock",
    EXIT_NOT_RESTORED: "a restore did not happen: the database is as it was (rolled back, or not confirmed)",
}


class Failure(Exception):
    """What a command could not do, in a message for whoever ran it; `exit_status` tells a script its kind.

    A command's `main` prints the message and returns the status, whichever layer raised it.
    """

    exit_status = EXIT_FAILED
