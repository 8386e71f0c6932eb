"""In-process tests (``bin/test --fast``): the API through DRF's APIClient, the services, selectors and
serializers, against pytest-django's test database (in-memory SQLite by default, PostgreSQL when
DATABASE_URL names it, as in the full ``bin/test`` run).

No Docker engine, camera or edge worker. What the services publish goes to a real Redis started for
the session on a free port, and the tests read it back from the host's queue: the message is what
the control plane promises an edge host, so it is asserted, never run in-process (no eager tasks).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from nacl.public import PrivateKey, SealedBox
from rest_framework.test import APIClient

from edgeproxy.api.auth import new_api_token
from edgeproxy.api.permissions import READ_ONLY_GROUP
from edgeproxy.celery import app as celery_app
from edgeproxy.celery import host_queue
from processes import services
from processes.models import EdgeHost
from tests.support.services import RedisServer
from worker import sealing


@pytest.fixture(scope="session", autouse=True)
def static_root():
    """The folder whitenoise serves from, so that it has nothing to warn about."""
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


# --- the broker: a real Redis, its messages read back --------------------------------------------


@pytest.fixture(scope="session")
def broker_redis(tmp_path_factory):
    """A throw-away Redis the Celery app publishes to for the whole session."""
    server = RedisServer(tmp_path_factory.mktemp("fast-redis"))
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = server.url
    celery_app.close()  # drop a producer pool made for another broker URL, if any
    yield server
    celery_app.close()
    celery_app.conf.broker_url = previous
    server.stop()


@dataclass
class TaskMessage:
    """One task message as an edge host's worker receives it."""

    task: str
    id: str
    kwargs: dict
    raw: bytes  # the message as stored in Redis (for secret checks)


class Broker:
    """The queues of the session's Redis, emptied before each test."""

    def __init__(self, server: RedisServer):
        self.redis = server.client()

    def messages(self, queue: str) -> list[TaskMessage]:
        """Messages waiting on ``queue``, oldest first (kombu pushes on the left)."""
        found = []
        for raw in reversed(self.redis.lrange(queue, 0, -1)):
            envelope = json.loads(raw)
            headers = envelope["headers"]
            _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
            found.append(TaskMessage(task=headers["task"], id=headers["id"], kwargs=kwargs, raw=raw))
        return found

    def host_messages(self, host_name: str) -> list[TaskMessage]:
        return self.messages(host_queue(host_name))

    def queues(self) -> set[str]:
        """Every queue holding at least one message."""
        return {key.decode() for key in self.redis.keys("*") if self.redis.type(key) == b"list"}


@pytest.fixture
def broker(broker_redis) -> Broker:
    broker_redis.client().flushdb()
    return Broker(broker_redis)


# --- edge hosts, registered as their heartbeats register them -------------------------------------


class EdgeHostKeys:
    """Private keys of the hosts a test registered: the test opens sealed specs as the host would."""

    def __init__(self):
        self.keys: dict[str, PrivateKey] = {}

    def register(self, name: str, *, images: list | None = None, runtime: str = "docker", public_key: bool = True,
                 cameras: list[dict] | None = None, streams: dict | None = None) -> EdgeHost:
        """A heartbeat of host ``name``: what it runs (``cameras``, ``streams``) observed now."""
        key = self.keys.setdefault(name, PrivateKey.generate())
        report = {"queue": host_queue(name), "runtime": runtime, "facts": {"cpus": 2},
                  "frames_address": "127.0.0.1:1", "public_key": sealing.public_key_text(key) if public_key else "",
                  "cameras": cameras or [], "streams": streams or {}, "observed_at": int(time.time() * 1000)}
        if images is not None:
            report["images"] = images
        return services.record_heartbeat(name, report)

    def open(self, host_name: str, sealed: str) -> dict:
        """A sealed camera spec as the host reads it."""
        return json.loads(SealedBox(self.keys[host_name]).decrypt(base64.b64decode(sealed)))


@pytest.fixture
def edge(db, broker_redis) -> EdgeHostKeys:
    return EdgeHostKeys()


@pytest.fixture
def online_host(edge) -> EdgeHost:
    """``edge-a``, online (a fresh heartbeat), with its key reported."""
    return edge.register("edge-a")


def make_offline(host: EdgeHost) -> None:
    """Last heard from an hour ago: past any offline window."""
    from datetime import timedelta

    from django.utils import timezone

    EdgeHost.objects.filter(pk=host.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))


# --- API clients: admin token, read-only token, nobody ---------------------------------------------


def _token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {new_api_token(user)}")
    return client


@pytest.fixture
def api(db) -> APIClient:
    """A client holding a token that may change things."""
    return _token_client(User.objects.create_user("operator"))


@pytest.fixture
def read_only_api(db) -> APIClient:
    """A client holding a token of the read-only group."""
    user = User.objects.create_user("viewer")
    user.groups.add(Group.objects.get_or_create(name=READ_ONLY_GROUP)[0])
    return _token_client(user)


@pytest.fixture
def anonymous_api(db) -> APIClient:
    return APIClient()
