"""What the control plane keeps live in Redis rather than the database: the live stream facts of
cameras, and the wake-up of requests waiting for an operation to end (``?wait=``).

Live stream facts.

A streaming camera's ``fps``, ``last_frame_at``, ``updated_at`` and packet counters change at every heartbeat: written
to its row they would cost one database write per camera per beat (50,000 writes every 5 s for a
fleet of 50,000 cameras). The heartbeat path writes the stream facts of every camera of a host to
one Redis hash in one round trip, and the database only when the rest of a camera's observation
changed (``services._heartbeat_changes``). Readers (the camera record, the lists, the dashboard)
show whichever of the two is newer: the database's ``stream`` as of the camera's ``observed_at``,
or the Redis value as of the beat that wrote it.

Key: ``edgeproxy:live:streams``, a hash of camera name to ``{"at": ms, "stream": {...}}``. It lives
in the broker's Redis (the control plane needs it anyway). When that Redis cannot be reached, the
heartbeat writes the live facts to the database as before and readers show the database's.

Operation ends. A request that waits for its operation (``POST /process?wait=``) subscribes to
``edgeproxy:op-ended:<id>``, which ``announce_end`` publishes to once the operation's end is
committed (every end is announced: ``events.services.operation_finished``), instead of polling the
database; it looks at the database again only every ``END_LOOK_SECONDS`` in case an announcement
was lost, and every 50 ms when Redis cannot be reached.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator

import orjson
import redis

from edgeproxy.contracts.heartbeats import LIVE_KEYS as LIVE_KEYS
from edgeproxy.contracts.heartbeats import RECORDING_COUNTERS as RECORDING_COUNTERS
from edgeproxy.contracts.heartbeats import stable_part as stable_part
from edgeproxy.contracts.times import ms

logger = logging.getLogger("edgeproxy.processes")

KEY = "edgeproxy:live:streams"
_clients: dict[str, redis.Redis] = {}


def _client() -> redis.Redis:
    from edgeproxy.celery import app as celery_app

    url = celery_app.conf.broker_url
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=0.5)
    return client


def compact(value) -> str:
    """``value`` as the API's JSON renderer writes it (no spaces, UTF-8 as is): spliced into lists as is."""
    return _compact_encoder.encode(value)


_compact_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def write(streams: dict[str, dict | None], at) -> bool:
    """Store the stream facts of these cameras (None: none reported, the entry goes), as seen at
    ``at``. One round trip. False when Redis could not take them (the caller writes the database).

    An entry is ``<at ms> <rtmp flags> <stream as compact JSON>``: the flags (``rtmp_streaming``,
    then ``storing``: 1, 0, or - when absent) let the full list splice the JSON without parsing it."""
    at_ms = ms(at)
    present, absent = {}, []
    for name, stream in streams.items():
        text = _entry_json(stream) if stream else None
        if text is None:
            absent.append(name)
            continue
        assert stream  # (text is None without one)
        storing = "-" if "storing" not in stream else "1" if stream["storing"] else "0"
        present[name] = f"{at_ms} {'1' if stream.get('rtmp_streaming') else '0'}{storing} {text}"
    try:
        client = _client()
        if present and absent:
            client.pipeline(transaction=False).hset(KEY, mapping=present).hdel(KEY, *absent).execute()
        elif present:  # (no pipeline for one command: making one costs more than the command)
            client.hset(KEY, mapping=present)
        elif absent:
            client.hdel(KEY, *absent)
    except redis.RedisError as exc:
        logger.warning("live stream facts not stored in Redis (%s); written to the database", exc)
        return False
    return True


def _entry_json(stream: dict) -> str | None:
    """``compact(stream)`` for a live entry, by orjson (every camera of every beat passes here: json's
    encoder was a third of a quiet beat's cost). A NaN or an infinity is written as null (answerable
    JSON); None for what orjson cannot write and the API could not answer."""
    try:
        return orjson.dumps(stream).decode()
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits, a key not a string
        try:
            return compact(stream)
        except ValueError:
            return None


def forget(name: str) -> None:
    """A deleted camera's entry (a new camera of the same name must not show it)."""
    with contextlib.suppress(redis.RedisError):  # entries older than a camera are never shown anyway
        _client().hdel(KEY, name)


def read_raw(names: Iterable[str] | None = None) -> dict[str, tuple[int, str, str]]:
    """``{name: (at_ms, rtmp flags, stream as compact JSON)}`` of these cameras (every camera for
    None); {} without Redis."""
    try:
        if names is None:
            return _read_all()
        names = list(names)
        if not names:
            return {}
        raw = dict(zip(names, _client().hmget(KEY, names), strict=True))
    except redis.RedisError:
        return {}
    found = {}
    for name, value in raw.items():
        if value:
            at, flags, text = value.decode().split(" ", 2)
            found[name.decode() if isinstance(name, bytes) else name] = (int(at), flags, text)
    return found


# Every entry as one reply: HGETALL's two replies an entry, parsed in Python, were most of the full
# list's time with thousands of cameras. Names and entries hold no newline (a camera name's rule;
# compact JSON escapes it).
_JOINED_ENTRIES = "return table.concat(redis.call('HGETALL', KEYS[1]), '\\n')"


def _read_all() -> dict[str, tuple[int, str, str]]:
    client = _client()
    try:
        parts = client.eval(_JOINED_ENTRIES, 1, KEY).decode().split("\n")
        pairs = zip(parts[::2], parts[1::2], strict=False)
    except redis.ResponseError:  # scripts not allowed on this Redis
        pairs = ((name.decode(), value.decode()) for name, value in client.hgetall(KEY).items())
    found = {}
    for name, value in pairs:
        if value:
            at, flags, text = value.split(" ", 2)
            found[name] = (int(at), flags, text)
    return found


def read(names: Iterable[str] | None = None) -> dict[str, tuple[int, dict]]:
    """``{name: (at_ms, stream)}`` of these cameras (every camera for None); {} without Redis."""
    return {name: (at, json.loads(text)) for name, (at, _flags, text) in read_raw(names).items()}


def is_newer(at_ms: int, observed_at, created) -> bool:
    """A live entry written at ``at_ms`` is at least as new as the row's observation (and newer than
    the camera itself, so a re-created name never shows its predecessor's)."""
    since = observed_at or created
    return since is None or at_ms >= ms(since)


def newest(stored: dict | None, observed_at, created, entry: tuple[int, dict] | None) -> dict | None:
    """The stream to show: the live entry when it is newer (``is_newer``), else the row's."""
    if entry is None:
        return stored
    at, stream = entry
    return stream if is_newer(at, observed_at, created) else stored


def overlay(cameras: Iterable) -> None:
    """Give these Camera objects their newest stream facts (one Redis round trip)."""
    cameras = [camera for camera in cameras if not getattr(camera, "_live_applied", False)]
    if not cameras:
        return
    entries = read(camera.name for camera in cameras)
    for camera in cameras:
        camera.stream = newest(camera.stream, camera.observed_at, camera.created, entries.get(camera.name))
        camera._live_applied = True


def never_observed(camera) -> None:
    """A camera just created: ``overlay`` skips it (no host can have reported its stream yet)."""
    camera._live_applied = True


# --- operation ends ----------------------------------------------------------------------------

ENDED_CHANNEL = "edgeproxy:op-ended:"


# How often a waiter looks at the database although no end was announced (one lost in Redis).
END_LOOK_SECONDS = 5.0


# An announcement that carries no answer: the waiter looks at the database.
ENDED = b"1"


def announce_end(operation_id, answer: Callable[[], bytes | None] | None = None) -> None:
    """Wake whoever waits for this operation (call once its end is committed). ``answer`` gives
    the camera record as committed (compact JSON), which a waiting camera request answers as it is:
    made only when someone waits (one who starts waiting meanwhile gets ``ENDED`` and looks)."""
    channel = f"{ENDED_CHANNEL}{operation_id}"
    with contextlib.suppress(redis.RedisError):  # waiters look at the database every second anyway
        client = _client()
        data = answer() if answer is not None and client.pubsub_numsub(channel)[0][1] else None
        client.publish(channel, data or ENDED)


@contextlib.contextmanager
def end_waiter(operation_id) -> Iterator[Callable[[float], bytes | None]]:
    """A function that blocks for up to its argument in seconds, returning early, with the
    announcement (``ENDED`` or an answer), when the operation's end is announced; None when the
    time ran out. Subscribed on entry: an end announced before the caller's look at the database
    still wakes it."""
    pubsub = None
    try:
        pubsub = _client().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(f"{ENDED_CHANNEL}{operation_id}")
    except redis.RedisError:
        pubsub = None

    def wait(seconds: float) -> bytes | None:
        nonlocal pubsub
        if pubsub is not None:
            try:
                # (The subscription's own confirmation comes first, read as None: not a reason to look.)
                until = time.monotonic() + seconds
                while (message := pubsub.get_message(timeout=max(0.0, until - time.monotonic()))) is None:
                    if time.monotonic() >= until:
                        return None
                return message["data"]
            except redis.RedisError:
                pubsub = None
        time.sleep(min(seconds, 0.05))
        return None

    try:
        yield wait
    finally:
        if pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                pubsub.close()
