"""Django's PostgreSQL backend, whose check of a reused connection sends nothing to the server.

With ``CONN_HEALTH_CHECKS`` Django checks a reused connection at the start of every request with a
``SELECT 1``: a round trip, and a statement for the server to run, on every request (about a tenth
of the database work of a connect). A connection the server ended (a restart, a failover, an
administrator's ``pg_terminate_backend``) has sent its last message and closed its end, so its
socket turns readable; an idle healthy connection has nothing to read. So the check first asks the
socket without waiting: nothing to read, the connection is used as it is; something to read (the
server's goodbye, or a notice or parameter change a healthy server may send), the ``SELECT 1`` then
decides, as before. The same idea as pgx's ``CheckConn`` and libpq clients that poll before use.

A connection whose server vanished without a word (a host powered off, a cut cable) looks healthy
to both checks until TCP gives up; keepalives and timeouts bound that, not the check.
"""

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self):
        connection = self.connection
        if connection is None or connection.closed:
            return False
        try:
            poller = select.poll()
            poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
            pending = poller.poll(0)
        except (OSError, ValueError):  # no socket any more
            return False
        return not pending or super().is_usable()
