"""Run the edge worker of this host: ``python -m worker``.

Consumes the queue named after the host (EDGEPROXY_HOST_NAME) with a thread pool (the runtime
and its supervised camera processes live in this one process), and beats to the control plane.
Needs only the broker URL and the local Docker socket (or none, with the local runtime).
"""

import logging
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "edgeproxy.settings")


def main(argv: list[str]) -> None:
    import django

    django.setup()
    from django.conf import settings

    from edgeproxy.celery import app
    from edgeproxy.env import envint
    from worker import edge

    agent = edge.current()
    logging.getLogger("edgeproxy.edge").info(
        "edge worker for host %s: runtime %s, queue %s", agent.host, agent.runtime.name, agent.queue
    )
    agent.start_heartbeats()
    concurrency = str(envint("EDGEPROXY_EDGE_CONCURRENCY", 8, minimum=1))
    try:
        app.worker_main(
            ["worker", "--pool", "threads", "--concurrency", concurrency, "--queues", agent.queue,
             "--hostname", f"edge@{agent.host}", "--loglevel", settings.LOG_LEVEL, "--without-mingle",
             "--without-gossip", *argv]
        )
    finally:
        agent.stop_heartbeats()


if __name__ == "__main__":
    main(sys.argv[1:])
