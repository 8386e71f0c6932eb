"""``manage.py events_relay``: run the events relay (processes.events.relay) until TERM or INT."""

import logging
import signal
import threading

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Deliver the outbox's events to webhooks (through the webhook worker) and MQTT, until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--alive-file", default="",
                            help="touched after every pass: a container's health check reads its age")

    def handle(self, *args, **options):
        import edgeproxy.celery  # noqa: F401 - the Celery app the delivery tasks are sent with
        from processes.events.relay import Relay

        logging.getLogger("edgeproxy").setLevel(logging.INFO)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        Relay(alive_file=options["alive_file"]).run(stop)
