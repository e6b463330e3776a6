"""What a database failure that is nobody's input means, in a user's words.

psycopg2 raises ``OperationalError`` both for a server it cannot reach (or a connection that broke) and
for a statement the server began and then could not finish: cancelled by a statement timeout or an
administrator, out of disk or memory, a lock not granted in time, a deadlock. The second kind carries the
server's SQLSTATE; the first has none. Both are 503s over HTTP and exit 1 on the command line, but "cannot
reach the database: is it running?" sends whoever reads it after a cancelled statement to look at the
wrong thing.
"""

from __future__ import annotations

# SQLSTATE (PostgreSQL, Appendix A) -> what happened. Every one of these ended the statement and its
# transaction, which PostgreSQL rolled back.
_SENTENCE_OF_SQLSTATE = {
    "57014": "the database cancelled the statement (a statement timeout, or an administrator cancelled it)",
    "57P01": "the database server shut down during the operation",
    "57P02": "the database server shut down during the operation (crash shutdown)",
    "57P03": "the database server is starting up or shutting down; try again in a moment",
    "55P03": "a row or table this needs stayed locked by other work for too long (lock timeout); try again",
    "53100": "the database server's disk is full",
    "53200": "the database server ran out of memory",
    "53300": "the database server has no free connection (too many clients); try again",
    "40001": "the operation collided with a simultaneous change (serialization failure); try again",
    "40P01": "the operation deadlocked with a simultaneous change; try again",
}
ROLLED_BACK = "nothing was changed: its transaction was rolled back"


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE the server sent with ``exc`` (a SQLAlchemy error or psycopg2's own), or None."""
    code = getattr(getattr(exc, "orig", exc), "pgcode", None)
    return code if isinstance(code, str) else None


# libpq's words for a connection that was open and broke (the server sends no SQLSTATE a client sees
# when it ends a session: it closes the socket).
_LOST_CONNECTION_WORDS = (
    "server closed the connection unexpectedly",
    "terminating connection",
    "connection already closed",
    "could not receive data from server",
    "ssl connection has been closed unexpectedly",
)
LOST_CONNECTION = (
    "the database closed the connection during the operation (the server was stopped or restarted, or an"
    " administrator ended the session): whatever it had not committed was rolled back"
)


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is an open connection breaking, not a connection that could not be made."""
    if getattr(exc, "connection_invalidated", False):  # SQLAlchemy saw a disconnect on a live connection
        return True
    words = str(getattr(exc, "orig", None) or exc).lower()
    return any(phrase in words for phrase in _LOST_CONNECTION_WORDS)


def server_failure(exc: BaseException) -> str | None:
    """What went wrong when the server took the statement and could not finish it (ending "...: nothing
    was changed"), or broke the connection while it worked; None when the server could not be reached."""
    code = sqlstate(exc)
    if code is None:
        return LOST_CONNECTION if connection_lost(exc) else None
    sentence = _SENTENCE_OF_SQLSTATE.get(code, f"the database server failed the statement (SQLSTATE {code})")
    return f"{sentence}; {ROLLED_BACK}"
