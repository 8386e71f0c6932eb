"""The events relay: one process (``manage.py events_relay``, bin/run's ``events`` program) that
reads the outbox every EDGEPROXY_EVENTS_POLL_SECONDS.

Each pass: notice hosts that came online or fell silent (and, less often, new image versions),
make webhook deliveries of new events and ask the webhook worker to send them (and again for
those due a retry), publish new events to the MQTT broker when one is configured (in a thread of
its own), and forget events past their retention. A failing step is logged and tried again on
the next pass.
"""

import logging
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections

from processes.events import mqtt, services, tasks, webhooks

logger = logging.getLogger("edgeproxy.events")

KICK_SECONDS = 1.0  # how often webhooks with due deliveries are asked again (a lost or expired task)
UPGRADES_SECONDS = 30.0
RETENTION_SECONDS = 60.0


class Relay:
    def __init__(self, alive_file: str = ""):
        self.publisher = mqtt.Publisher() if mqtt.configured() else None
        self.last: dict[str, float] = {}
        self.alive_file = Path(alive_file) if alive_file else None

    def _due(self, name: str, every: float) -> bool:  # (each name is used by one thread only)
        now = time.monotonic()
        if now - self.last.get(name, 0.0) >= every:
            self.last[name] = now
            return True
        return False

    def _step(self, name: str, fn) -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - the relay goes on; the next pass tries again
            logger.exception("events relay: %s failed (tried again on the next pass)", name)
            close_old_connections()

    def pass_once(self) -> None:
        if self._due("presence", min(1.0, settings.EDGEPROXY_HEARTBEAT_SECONDS / 2)):
            self._step("host presence", services.notice_host_presence)
        if self._due("upgrades", UPGRADES_SECONDS):
            self._step("upgrades", services.notice_upgrades)
        self._step("webhooks", self._webhooks)
        if self._due("retention", RETENTION_SECONDS):
            self._step("retention", webhooks.expire_old)
        if self.alive_file is not None:
            self.alive_file.touch()  # the relay's passes go on (compose's health check)

    def _webhooks(self) -> None:
        fresh = webhooks.fan_out()
        if self._due("kick", KICK_SECONDS):
            fresh |= set(webhooks.due_webhooks())
        tasks.request_delivery(fresh)

    def _mqtt(self) -> None:
        assert self.publisher is not None
        if self._due("mqtt-backlog", 10.0):
            self.publisher.drop_excess()
        self.publisher.publish_pending()

    def _every_poll(self, stop: threading.Event, work) -> None:
        while not stop.is_set():
            started = time.monotonic()
            work()
            stop.wait(max(0.0, settings.EDGEPROXY_EVENTS_POLL_SECONDS - (time.monotonic() - started)))
        close_old_connections()

    def run(self, stop: threading.Event) -> None:
        logger.info("events relay running (MQTT %s)", "on" if self.publisher else "off")
        mqtt_thread = None
        if self.publisher is not None:  # its own thread: a slow broker never holds the webhooks back
            mqtt_thread = threading.Thread(target=self._every_poll, args=(stop, lambda: self._step("mqtt", self._mqtt)),
                                           name="mqtt-publisher", daemon=True)
            mqtt_thread.start()
        self._every_poll(stop, self.pass_once)
        if mqtt_thread is not None and self.publisher is not None:
            mqtt_thread.join(10)
            self.publisher.close()
