"""The MQTT publisher: the outbox's events on a broker (paho-mqtt), with retained availability
and Home Assistant discovery. Runs in the events relay, never in a request or a control task: a
broker that is away slows nothing but this publisher, and events wait in the outbox (up to
EDGEPROXY_MQTT_BACKLOG) until it returns. Topic layout: edgeproxy.contracts.events, docs/events.md.

An event counts as published when the broker acknowledged it (QoS 1): at least once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from urllib.parse import urlsplit

from django.conf import settings

from edgeproxy.contracts import events as contract
from processes.models import Camera, EdgeHost, Event
from worker.redaction import register_secret

logger = logging.getLogger("edgeproxy.events")

BATCH = 200
ACK_SECONDS = 5.0


def configured() -> bool:
    return bool(settings.EDGEPROXY_MQTT_URL)


def client_id(prefix: str, host: str | None = None, pid: int | None = None) -> str:
    """``edgeproxy-<prefix>-<host name>-<pid>``: one per relay process. A broker lets one connection
    per client id live (a second one takes the first's place), so relays sharing an id would knock
    each other off in turn; the host name and pid also say in the broker's log which relay it is."""
    host = socket.gethostname() if host is None else host
    return f"edgeproxy-{prefix}-{host}-{os.getpid() if pid is None else pid}"


class Publisher:
    def __init__(self):
        import paho.mqtt.client as mqtt

        url = urlsplit(settings.EDGEPROXY_MQTT_URL)
        self.prefix = settings.EDGEPROXY_MQTT_TOPIC_PREFIX
        self.discovery = settings.EDGEPROXY_MQTT_DISCOVERY_PREFIX
        self.connected = threading.Event()
        self.announced: set[str] = set()  # cameras whose discovery config went out on this connection
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id(self.prefix),
                                  protocol=mqtt.MQTTv311)
        register_secret(settings.EDGEPROXY_MQTT_PASSWORD)  # masked in every log line, should one show it
        if settings.EDGEPROXY_MQTT_USERNAME:
            self.client.username_pw_set(settings.EDGEPROXY_MQTT_USERNAME, settings.EDGEPROXY_MQTT_PASSWORD or None)
        if url.scheme == "mqtts":
            self.client.tls_set(ca_certs=settings.EDGEPROXY_MQTT_TLS_CA or None)
        self.client.will_set(contract.mqtt_bridge_status_topic(self.prefix), "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async(url.hostname, url.port or (8883 if url.scheme == "mqtts" else 1883), keepalive=15)
        self.client.loop_start()
        self._down_since: float | None = time.monotonic()

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            logger.warning("MQTT broker refused the connection: %s", reason_code)
            return
        logger.info("MQTT broker connected")
        self.announced.clear()
        client.publish(contract.mqtt_bridge_status_topic(self.prefix), "online", qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        if self.connected.is_set():
            logger.warning("MQTT broker connection lost (%s); events wait in the outbox", reason_code)
        self.connected.clear()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    # --- publishing -----------------------------------------------------------------------------

    def _discovery(self, camera: str, host: str) -> list[tuple[str, str]]:
        """Home Assistant MQTT discovery: the camera as a device with a status sensor."""
        if not self.discovery:
            return []
        unique = f"edgeproxy_{camera}".replace("-", "_").replace(".", "_")
        config = {
            "name": "Status",
            "unique_id": f"{unique}_status",
            "object_id": f"{unique}_status",
            "state_topic": contract.mqtt_camera_status_topic(self.prefix, host, camera),
            "availability_topic": contract.mqtt_host_status_topic(self.prefix, host),
            "icon": "mdi:cctv",
            "device": {"identifiers": [unique], "name": camera, "manufacturer": "edgeproxy", "model": "camera",
                       "via_device": f"edgeproxy_host_{host}"},
        }
        return [(f"{self.discovery}/sensor/{unique}/status/config", json.dumps(config))]

    def _messages(self, event: Event) -> list[tuple[str, str, bool]]:
        payload = contract.Event(event.type, event.time, event.data, event.camera, event.host).payload(event.id)
        out = [(contract.mqtt_event_topic(self.prefix, event.type, event.host, event.camera),
                json.dumps(payload, separators=(",", ":")), False)]
        if event.type == contract.EventType.CAMERA_STATUS and event.camera and event.host:
            if event.camera not in self.announced:
                out += [(topic, body, True) for topic, body in self._discovery(event.camera, event.host)]
                self.announced.add(event.camera)
            out.append((contract.mqtt_camera_status_topic(self.prefix, event.host, event.camera),
                        event.data.get("status") or "", True))
        elif event.type in (contract.EventType.HOST_ONLINE, contract.EventType.HOST_OFFLINE):
            out.append((contract.mqtt_host_status_topic(self.prefix, event.host),
                        "online" if event.data.get("online") else "offline", True))
        return out

    def _announce_fleet(self) -> None:
        """On (re)connection: discovery and retained status of every camera and host, as they are."""
        from edgeproxy.contracts.statuses import shown_status

        hosts = {h.id: h for h in EdgeHost.objects.all()}
        infos = []
        for host in hosts.values():
            infos.append(self.client.publish(contract.mqtt_host_status_topic(self.prefix, host.name),
                                             "online" if host.is_online else "offline", qos=1, retain=True))
        for camera in Camera.objects.only("name", "host_id", "status", "desired_state", "stream"):
            host = hosts.get(camera.host_id)
            if host is None:
                continue
            status = contract.camera_event_status(shown_status(camera.status, host.is_online), camera.desired_state,
                                                  camera.stream)
            for topic, body in self._discovery(camera.name, host.name):
                infos.append(self.client.publish(topic, body, qos=1, retain=True))
            infos.append(self.client.publish(contract.mqtt_camera_status_topic(self.prefix, host.name, camera.name),
                                             status, qos=1, retain=True))
            self.announced.add(camera.name)
        self._wait(infos)

    def _wait(self, infos) -> bool:
        deadline = time.monotonic() + ACK_SECONDS
        for info in infos:
            while not info.is_published():
                if not self.connected.is_set() or time.monotonic() > deadline:
                    return False
                time.sleep(0.005)
        return True

    def drop_excess(self) -> int:
        """Past EDGEPROXY_MQTT_BACKLOG unpublished events, the oldest are given up (logged)."""
        backlog = settings.EDGEPROXY_MQTT_BACKLOG
        waiting = Event.objects.filter(mqtt_sent=False)
        if waiting.count() <= backlog:
            return 0
        newest_kept = waiting.order_by("-id").values_list("id", flat=True)[backlog - 1]
        dropped = Event.objects.filter(mqtt_sent=False, id__lt=newest_kept).update(mqtt_sent=True)
        logger.warning("MQTT: %d events dropped unpublished (more than EDGEPROXY_MQTT_BACKLOG=%d waited)", dropped,
                       backlog)
        return dropped

    def publish_pending(self) -> int:
        """Publish waiting events in outbox order while the broker is there; the number published."""
        if not self.connected.is_set():
            if self._down_since is None:
                self._down_since = time.monotonic()
            return 0
        if self._down_since is not None:
            self._down_since = None
            self._announce_fleet()
        published = 0
        while self.connected.is_set():
            batch = list(Event.objects.filter(mqtt_sent=False).order_by("id")[:BATCH])
            if not batch:
                break
            infos = []
            for event in batch:
                for topic, body, retain in self._messages(event):
                    infos.append(self.client.publish(topic, body, qos=1, retain=retain))
            if not self._wait(infos):
                self.announced.clear()
                break  # not acknowledged: published again (at least once) when the broker is back
            Event.objects.filter(id__in=[e.id for e in batch]).update(mqtt_sent=True)
            published += len(batch)
        return published
