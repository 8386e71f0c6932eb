"""Edge hosts, the cameras placed on them, and the operations that drive them."""

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from edgeproxy.contracts import statuses


class EdgeHost(models.Model):
    """A machine running an edge worker. Registers itself through heartbeats."""

    name = models.CharField(max_length=63, unique=True)
    queue = models.CharField(max_length=100)
    runtime = models.CharField(max_length=16, blank=True, help_text="docker or local")
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    facts = models.JSONField(default=dict, blank=True, help_text="runtime facts: versions, cpus, memory")
    images = models.JSONField(default=list, blank=True, help_text="local image inventory")
    frames_address = models.CharField(max_length=255, blank=True, help_text="host:port of its frame server")
    public_key = models.CharField(max_length=64, blank=True, help_text="key camera specs are sealed to")
    strays = models.JSONField(default=list, blank=True, help_text="our camera processes it runs that no camera owns")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def online_cutoff():
        """Hosts that beat at or after this time are online (edgeproxy.contracts.statuses)."""
        window = statuses.online_window(settings.EDGEPROXY_HEARTBEAT_SECONDS, settings.EDGEPROXY_OFFLINE_AFTER_BEATS)
        return timezone.now() - window

    @property
    def is_online(self) -> bool:
        return statuses.host_is_online(self.last_heartbeat, self.online_cutoff())


def _choices(name: str, contract) -> Any:
    """Django choices with the names and values of a contract enum (one list of names, there)."""
    return models.TextChoices(name, [(member.name, member.value) for member in contract], module=__name__)


DesiredState = _choices("DesiredState", statuses.DesiredState)


class Camera(models.Model):
    """A camera process (the API's StreamProcess): what should run, and what was last observed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=63, unique=True)
    rtsp_endpoint_encrypted = models.TextField(help_text="the full URL, encrypted at rest")
    rtsp_endpoint_masked = models.CharField(max_length=2100, help_text="the URL with its password masked")
    # The RTMP target holds secrets too (password, stream key): kept like the RTSP URL.
    rtmp_endpoint_encrypted = models.TextField(blank=True, help_text="the full URL, encrypted at rest")
    rtmp_endpoint_masked = models.CharField(max_length=2100, blank=True,
                                            help_text="the URL with its password and stream key masked")
    rtsp_transport = models.CharField(max_length=3, default="tcp", choices=[("tcp", "tcp"), ("udp", "udp")])
    image_tag = models.CharField(max_length=255)
    host = models.ForeignKey(EdgeHost, on_delete=models.PROTECT, related_name="cameras")
    desired_state = models.CharField(max_length=8, choices=DesiredState.choices, default=DesiredState.RUNNING)

    # Observed by the edge worker (operation results and heartbeats).
    status = models.CharField(max_length=16, default=statuses.CameraStatus.PENDING.value)
    container_id = models.CharField(max_length=100, blank=True)
    state = models.JSONField(default=dict, blank=True)
    logs = models.JSONField(default=dict, blank=True)
    stream = models.JSONField(null=True, blank=True)
    observed_at = models.DateTimeField(null=True, blank=True)
    storing = models.BooleanField(default=False)
    # Recording as wanted: {"enabled": bool, "retention_hours": number}; {} = never switched on.
    recording = models.JSONField(default=dict, blank=True)

    last_operation = models.ForeignKey(
        "Operation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["host", "name"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.name


OperationKind = _choices("OperationKind", statuses.OperationKind)
OperationState = _choices("OperationState", statuses.OperationState)


ACTIVE_STATES = (OperationState.PENDING, OperationState.RUNNING)


class Operation(models.Model):
    """One Celery task sent to an edge host: its id is the task id (``GET /tasks/{id}``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=OperationKind.choices)
    camera = models.ForeignKey(Camera, null=True, blank=True, on_delete=models.SET_NULL, related_name="operations")
    camera_name = models.CharField(max_length=63, blank=True, help_text="kept after the camera is deleted")
    app = models.ForeignKey("AppProcess", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="operations", help_text="the app process it drives (issue 16)")
    host = models.ForeignKey(EdgeHost, null=True, blank=True, on_delete=models.SET_NULL, related_name="operations")
    state = models.CharField(max_length=16, choices=OperationState.choices, default=OperationState.PENDING)
    progress = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            # One operation at a time per camera: the database, not hope, refuses a second one.
            models.UniqueConstraint(
                fields=["camera"],
                condition=Q(state__in=["pending", "running"]),
                name="one_active_operation_per_camera",
            )
        ]
        indexes = [models.Index(fields=["state", "created"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.camera_name} ({self.state})"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES


class Annotation(models.Model):
    """An event an AI program reported through the frame API's ``Annotate`` (original fields in ``data``)."""

    camera_name = models.CharField(max_length=63, db_index=True)
    host = models.CharField(max_length=63, blank=True)
    type = models.CharField(max_length=255)
    start_timestamp = models.BigIntegerField(help_text="ms since epoch")
    end_timestamp = models.BigIntegerField(null=True, blank=True)
    object_type = models.CharField(max_length=255, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="every field of the AnnotateRequest")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-start_timestamp"]
        indexes = [models.Index(fields=["camera_name", "start_timestamp"]),
                   models.Index(fields=["type", "start_timestamp"])]

    def __str__(self) -> str:
        return f"{self.type} on {self.camera_name} at {self.start_timestamp}"


# --- app processes (issue 16): AI programs run next to their cameras (processes/app_*.py) ----------


class AppImageRule(models.Model):
    """An allow-list entry: images of this repository may run as app processes (editable in the admin)."""

    repository = models.CharField(max_length=255, unique=True,
                                  help_text="user/repository as in docker_user/docker_repository, or a prefix "
                                            "ending in /* (every repository of that user)")
    host_network = models.BooleanField(default=False, help_text="its apps may ask for the host's network")
    note = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["repository"]
        verbose_name = "app image rule"

    def __str__(self) -> str:
        return self.repository


class AppProcess(models.Model):
    """An app process (the original's AppProcess): a Docker image run on its cameras' host."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=63, unique=True)
    docker_user = models.CharField(max_length=255, blank=True)
    docker_repository = models.CharField(max_length=255)
    docker_version = models.CharField(max_length=128)
    # [{"name", "value"}] for plain values, [{"name", "secret": true, "value_encrypted"}] for secrets.
    env_vars = models.JSONField(default=list, blank=True)
    arguments = models.JSONField(default=list, blank=True)
    port_mappings = models.JSONField(default=list, blank=True)
    mount = models.JSONField(default=list, blank=True)
    runtime = models.CharField(max_length=16, blank=True)
    host_network = models.BooleanField(default=False)
    cpus = models.FloatField()
    memory_mb = models.PositiveIntegerField()
    cameras = models.JSONField(default=list, blank=True, help_text="names of the cameras it reads")
    host = models.ForeignKey(EdgeHost, on_delete=models.PROTECT, related_name="apps")
    desired_state = models.CharField(max_length=8, choices=DesiredState.choices, default=DesiredState.RUNNING)

    status = models.CharField(max_length=16, default=statuses.CameraStatus.PENDING.value)
    container_id = models.CharField(max_length=100, blank=True)
    state = models.JSONField(default=dict, blank=True)
    logs = models.JSONField(default=dict, blank=True)
    observed_at = models.DateTimeField(null=True, blank=True)
    last_operation = models.ForeignKey(Operation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def image(self) -> str:
        repository = f"{self.docker_user}/{self.docker_repository}" if self.docker_user else self.docker_repository
        return f"{repository}:{self.docker_version}"


# --- events out (issue 17): the outbox, webhooks and their deliveries ------------------------------
# The events themselves are defined in edgeproxy.contracts.events; processes.events writes these rows.


class Event(models.Model):
    """One event (the outbox): written in the transaction of the change it tells of, so none is lost;
    webhook deliveries and MQTT messages are made from it afterwards (``processes.events.relay``)."""

    id = models.BigAutoField(primary_key=True)
    type = models.CharField(max_length=32)
    time = models.DateTimeField()
    camera = models.CharField(max_length=63, blank=True)
    host = models.CharField(max_length=63, blank=True)
    data = models.JSONField(default=dict)
    fanned_out = models.BooleanField(default=False, help_text="webhook deliveries made")
    mqtt_sent = models.BooleanField(default=False, help_text="published to the MQTT broker (or given up)")

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["time"]),
                   models.Index(fields=["id"], condition=Q(fanned_out=False), name="event_not_fanned_out"),
                   models.Index(fields=["id"], condition=Q(mqtt_sent=False), name="event_not_mqtt_sent")]

    def __str__(self) -> str:
        return f"{self.type} #{self.id}"


class Webhook(models.Model):
    """A receiver of events over HTTP(S). Its secret signs deliveries; stored encrypted, never shown."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.CharField(max_length=2048)
    event_types = models.JSONField(default=list, help_text="event types wanted; empty = all")
    secret_encrypted = models.TextField()
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created"]

    def __str__(self) -> str:
        return self.url


class Delivery(models.Model):
    """One event for one webhook: pending until the receiver answers 2xx, sent in event order."""

    PENDING, DELIVERED, EXPIRED = "pending", "delivered", "expired"

    id = models.BigAutoField(primary_key=True)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=16, default=PENDING)
    attempts = models.IntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    last_status_code = models.IntegerField(null=True, blank=True)
    next_attempt = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    delivered = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["event_id"]
        constraints = [models.UniqueConstraint(fields=["webhook", "event"], name="one_delivery_per_event")]
        indexes = [models.Index(fields=["webhook", "state", "event"])]


class HostPresence(models.Model):
    """Whether events last said a host was online (a host goes offline by falling silent: noticed
    by the relay's periodic look, which compares with this)."""

    host = models.OneToOneField(EdgeHost, on_delete=models.CASCADE, primary_key=True, related_name="+")
    online = models.BooleanField()


class UpgradeNotice(models.Model):
    """The newer image version an ``upgrade.available`` event last announced for a camera."""

    camera = models.OneToOneField(Camera, on_delete=models.CASCADE, primary_key=True, related_name="+")
    version = models.CharField(max_length=128)
