"""Django settings for edgeproxy, read from the environment (see docs/configuration.md).

The embedded defaults (SQLite under EDGEPROXY_STATE_DIR, Redis on 127.0.0.1:6379) run the whole
system on one machine; production sets DATABASE_URL, REDIS_URL and the secrets.
"""

import socket
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from edgeproxy.contracts import tasks as messages
from edgeproxy.env import envbool, envchoice, envdatabase, envfile, envfloat, envint, envlist, envstr
from edgeproxy.statefiles import make_private

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(envstr("EDGEPROXY_STATE_DIR", str(Path.home() / ".local/state/edgeproxy")))
make_private(STATE_DIR)  # owner-only, and so is everything this process creates

DEBUG = envbool("DEBUG", False)
SECRET_KEY = envstr("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG and envbool("EDGEPROXY_REQUIRE_SECRETS", False):
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set")
    # Embedded mode: a key generated once and kept in the state directory.
    from edgeproxy.statefiles import state_secret

    SECRET_KEY = state_secret(STATE_DIR, "django-secret-key")

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "*")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",  # kept for its migrations: its plain tokens were moved to knox (processes 0004)
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally: /api/docs/ works offline
    "corsheaders",
    "processes",
    "settings_app",
]

MIDDLEWARE = [
    "edgeproxy.api.metrics.RequestMetricsMiddleware",  # outermost: counts and times every answer
    "corsheaders.middleware.CorsMiddleware",  # adds nothing unless EDGEPROXY_CORS_ORIGINS is set
    "edgeproxy.api.errors.BodySizeLimitMiddleware",
    # ETag on every GET answer (a hash of its body) and 304 Not Modified on a matching If-None-Match.
    "django.middleware.http.ConditionalGetMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # admin and Swagger UI assets under gunicorn
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "edgeproxy.urls"
WSGI_APPLICATION = "edgeproxy.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": envdatabase("DATABASE_URL", f"sqlite:///{STATE_DIR / 'edgeproxy.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = envint("DATABASE_CONN_MAX_AGE", 60, minimum=0)
# Celery closes the database connections around every task unless told to reuse them; the control
# worker's tasks follow CONN_MAX_AGE instead, as requests do (edgeproxy/celery.py).
CELERY_DB_REUSE_MAX = 1_000_000_000
# How long a statement waits for a busy database (SQLite's write lock) before it fails.
EDGEPROXY_DATABASE_BUSY_SECONDS = envint("EDGEPROXY_DATABASE_BUSY_SECONDS", 30, minimum=1)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # SQLite is shared by several processes (gunicorn workers and threads, the control worker,
    # beat): writers must queue, not fail. WAL lets readers run beside the one writer; IMMEDIATE
    # takes the write lock when a transaction begins, so a writer waits (up to the busy timeout)
    # instead of failing at once with "database is locked" when a read transaction it started
    # could not be promoted; synchronous=NORMAL is the durable-enough setting meant for WAL.
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": EDGEPROXY_DATABASE_BUSY_SECONDS,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    })
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    # A reused connection the server cut (restart, failover) is replaced before use, not failed on;
    # the check asks the socket first, with no round trip to the server (edgeproxy/postgresql/base.py).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["ENGINE"] = "edgeproxy.postgresql"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = STATE_DIR / "static"
# collectstatic writes through the storage, which applies these modes whatever the umask (Django's
# default is 0644): the state folder is owner-only.
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700

# Dashboard (processes/dashboard, at /): the session login, and where its Flower link points
# (empty: port FLOWER_PORT, default 5555, on the host the dashboard was reached at).
LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:overview"
EDGEPROXY_FLOWER_URL = envstr("EDGEPROXY_FLOWER_URL", "")
EDGEPROXY_FLOWER_PORT = envint("FLOWER_PORT", 5555, minimum=1, maximum=65535)

# Bodies over 64 KiB are refused with 413 (see edgeproxy.api.errors).
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["edgeproxy.api.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "edgeproxy.api.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["edgeproxy.api.permissions.ApiAccess"],
    "EXCEPTION_HANDLER": "edgeproxy.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "edgeproxy.api.schema.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
# API tokens (knox): stored hashed, and valid until deleted (they are API keys, not login sessions).
REST_KNOX = {"TOKEN_TTL": None, "AUTH_HEADER_PREFIX": "Token"}
SPECTACULAR_SETTINGS = {
    "TITLE": "edgeproxy API",
    "DESCRIPTION": "Control plane for video edge-AI fleets (compatible with video-edge-ai-proxy).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and the docs need a token (or an admin session) like every other route.
    "SERVE_PERMISSIONS": ["edgeproxy.api.permissions.ApiAccess"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True, "displayOperationId": False},
    "COMPONENT_SPLIT_REQUEST": True,
    "COMPONENT_SPLIT_PATCH": False,  # PATCH /process/{name} needs {"host"} like POST .../move: no partial body
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "edgeproxy.api.schema.document_rules"],
    "ENUM_NAME_OVERRIDES": {
        "OperationKindEnum": "processes.models.OperationKind",
        "OperationStateEnum": "processes.models.OperationState",
    },
}

# API authentication. On by default; EDGEPROXY_AUTH=false opens the API (trusted networks only).
EDGEPROXY_AUTH = envbool("EDGEPROXY_AUTH", True)

# CORS: off (no Access-Control-* header at all) unless origins are listed, comma separated,
# e.g. EDGEPROXY_CORS_ORIGINS=https://ops.example.com. Tokens travel in headers, not cookies.
CORS_ALLOWED_ORIGINS = envlist("EDGEPROXY_CORS_ORIGINS")
CORS_URLS_REGEX = r"^/(api/|metrics$)"
CORS_ALLOW_CREDENTIALS = False
CORS_PREFLIGHT_MAX_AGE = 600

# Static files (admin, Swagger UI) straight from the installed apps: no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False

# Browser-facing hardening (admin, docs). Behind TLS set EDGEPROXY_SECURE_COOKIES=true.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = envbool("EDGEPROXY_SECURE_COOKIES", False)
CSRF_TRUSTED_ORIGINS = envlist("EDGEPROXY_CSRF_TRUSTED_ORIGINS")

# Prometheus /metrics. It needs an API token (any, read-only is enough) or, when set, the bearer
# token EDGEPROXY_METRICS_TOKEN (_FILE accepted); EDGEPROXY_METRICS_PUBLIC=true opens it (for a
# scraper on a private network).
EDGEPROXY_METRICS_TOKEN = envstr("EDGEPROXY_METRICS_TOKEN", "")
EDGEPROXY_METRICS_PUBLIC = envbool("EDGEPROXY_METRICS_PUBLIC", False)

# --- Redis, Celery -----------------------------------------------------------------------------
REDIS_URL = envstr("REDIS_URL", "redis://127.0.0.1:6379/0")
# The frame bus of an edge host (camera processes, frame server). Local to each edge host.
FRAMES_REDIS_URL = envstr("EDGEPROXY_FRAMES_REDIS_URL", REDIS_URL)

CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = messages.CONTROL_QUEUE
CELERY_TASK_IGNORE_RESULT = True
# Redelivery after a lost worker: tasks are idempotent, and none runs longer than a pull or
# upgrade (minutes), so an hour is safe and still recovers from a worker killed mid-task.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": envint("EDGEPROXY_VISIBILITY_TIMEOUT", 3600, minimum=10),
    # A generous socket timeout: long enough that a loaded consumer's blocking read (1 s) never
    # hits it (a reconnect there could lose a message Redis had already handed over), short enough
    # that nothing waits for ever on a broker that went away. Idle connections are checked first.
    "socket_timeout": 30,
    "socket_connect_timeout": 5,
    "health_check_interval": 10,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# --- Edge host (worker) --------------------------------------------------------------------------
EDGEPROXY_HOST_NAME = envstr("EDGEPROXY_HOST_NAME", socket.gethostname().lower())
EDGEPROXY_RUNTIME = envchoice("EDGEPROXY_RUNTIME", "auto", ("auto", "docker", "local"))
EDGEPROXY_HEARTBEAT_SECONDS = envfloat("EDGEPROXY_HEARTBEAT_SECONDS", 5.0, minimum=0.2)
# The control worker gathers quiet heartbeats (nothing but live stream facts changed) for this long and
# writes them together (processes.services.absorb_heartbeat); 0: each one at once.
EDGEPROXY_HEARTBEAT_BATCH_SECONDS = envfloat("EDGEPROXY_HEARTBEAT_BATCH_SECONDS", 1.0, minimum=0.0)
# A host not heard from for this many heartbeat intervals is offline.
EDGEPROXY_OFFLINE_AFTER_BEATS = envint("EDGEPROXY_OFFLINE_AFTER_BEATS", 3, minimum=1)
EDGEPROXY_CAMERA_IMAGE = envstr("EDGEPROXY_CAMERA_IMAGE", "edgeproxy/camera:0.1.0")
# Docker network mode of camera containers. RTSP over UDP does not survive NAT: host by default.
EDGEPROXY_CAMERA_NETWORK = envstr("EDGEPROXY_CAMERA_NETWORK", "host")
# Extra bind mounts of camera containers, "src:dst[:ro|rw]" comma separated.
EDGEPROXY_CAMERA_VOLUMES = envlist("EDGEPROXY_CAMERA_VOLUMES")
# Edge side, Docker: where each camera's secret URL files are written (a tmpfs path on the Docker
# host), bind-mounted into its container; "off": copied into each container (slower).
EDGEPROXY_CAMERA_SECRETS_DIR = envstr("EDGEPROXY_CAMERA_SECRETS_DIR", "/dev/shm/edgeproxy-secrets")
if EDGEPROXY_CAMERA_SECRETS_DIR.lower() != "off" and not EDGEPROXY_CAMERA_SECRETS_DIR.startswith("/"):
    raise ImproperlyConfigured("EDGEPROXY_CAMERA_SECRETS_DIR must be an absolute path or 'off'; "
                               f"got {EDGEPROXY_CAMERA_SECRETS_DIR!r}")
EDGEPROXY_CAMERA_BUFFER_SECONDS = envint("EDGEPROXY_CAMERA_BUFFER_SECONDS", 10, minimum=0, maximum=600)
# Command of a camera under the local runtime (defaults to this Python running worker.camera).
EDGEPROXY_LOCAL_CAMERA_COMMAND = envstr("EDGEPROXY_LOCAL_CAMERA_COMMAND", "")
EDGEPROXY_GRPC_PORT = envint("EDGEPROXY_GRPC_PORT", 50001, minimum=1, maximum=65535)

# Images and upgrades. The registry asked for remote versions (Docker Registry HTTP API v2, e.g.
# http://127.0.0.1:5000); the fleet settings may override it. Empty: remote versions are null.
EDGEPROXY_REGISTRY_URL = envstr("EDGEPROXY_REGISTRY_URL", "")
EDGEPROXY_REGISTRY_TIMEOUT = envfloat("EDGEPROXY_REGISTRY_TIMEOUT", 2.0, minimum=0.1)
# Hosts (host or host:port) besides the registry's own whose token service a 401 may send us to.
EDGEPROXY_REGISTRY_AUTH_HOSTS = [h.lower() for h in envlist("EDGEPROXY_REGISTRY_AUTH_HOSTS")]
# An upgraded camera must stream again; one whose source was not streaming must instead run
# steadily (not restarting or exited) this long. Past the timeout the old container is restored.
EDGEPROXY_UPGRADE_STEADY_SECONDS = envfloat("EDGEPROXY_UPGRADE_STEADY_SECONDS", 10.0, minimum=0.0)
EDGEPROXY_UPGRADE_TIMEOUT_SECONDS = envfloat("EDGEPROXY_UPGRADE_TIMEOUT_SECONDS", 120.0, minimum=1.0)

# Encryption of secrets at rest (RTSP URLs, edge secret): a Fernet key, or derived in embedded mode.
EDGEPROXY_ENCRYPTION_KEY = envstr("EDGEPROXY_ENCRYPTION_KEY")
if envbool("EDGEPROXY_REQUIRE_SECRETS", False):
    # Production (compose): no secret may be missing or left as the example's placeholder.
    for _name, _value in (("SECRET_KEY", SECRET_KEY), ("EDGEPROXY_ENCRYPTION_KEY", EDGEPROXY_ENCRYPTION_KEY)):
        if not _value or "change-me" in _value:
            raise ImproperlyConfigured(f"{_name} (or {_name}_FILE) must be set to a secret of your own")
    from cryptography.fernet import Fernet

    try:
        Fernet(EDGEPROXY_ENCRYPTION_KEY.encode())
    except ValueError:
        raise ImproperlyConfigured(
            "EDGEPROXY_ENCRYPTION_KEY must be a Fernet key: python3 -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'") from None

# --- Logging -----------------------------------------------------------------------------------
LOG_LEVEL = envchoice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOG_FORMAT = envchoice("LOG_FORMAT", "text", ("text", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "worker.redaction.RedactingFilter"},
        "refusal_without_traceback": {"()": "edgeproxy.request_logging.RefusalWithoutTraceback"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "worker.redaction.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"filters": ["refusal_without_traceback"]},
        "django.server": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}

# Where the control plane reaches this host's frame server (advertised in heartbeats).
EDGEPROXY_FRAMES_ADVERTISE = envstr("EDGEPROXY_FRAMES_ADVERTISE", f"127.0.0.1:{EDGEPROXY_GRPC_PORT}")
# Token the control plane presents to edge frame servers when they require one (EDGEPROXY_GRPC_TOKENS).
EDGEPROXY_FRAMES_TOKEN = envstr("EDGEPROXY_FRAMES_TOKEN", "")
# TLS to edge frame servers that serve it (EDGEPROXY_GRPC_TLS_CERT): a PEM bundle of the CA(s) to
# trust (a path), or EDGEPROXY_FRAMES_TLS=true to trust the system's roots.
_FRAMES_TLS_CA = envfile("EDGEPROXY_FRAMES_TLS_CA")
EDGEPROXY_FRAMES_TLS_CA_PEM = _FRAMES_TLS_CA.encode() if _FRAMES_TLS_CA is not None else None
EDGEPROXY_FRAMES_TLS = envbool("EDGEPROXY_FRAMES_TLS", False) or EDGEPROXY_FRAMES_TLS_CA_PEM is not None

# Reconciliation (Celery beat): how often every online host is driven towards the database.
EDGEPROXY_RECONCILE_SECONDS = envfloat("EDGEPROXY_RECONCILE_SECONDS", 10.0, minimum=1.0)
# Deadlines of operations (docs/api.md, "Operation deadlines"): an operation with no result after
# its deadline ends failed (a delete on an offline host ends with the record deleted). Connect,
# start, stop, delete and reconcile get EDGEPROXY_OPERATION_DEADLINE_SECONDS, a move twice that,
# an upgrade EDGEPROXY_UPGRADE_TIMEOUT_SECONDS more, a pull EDGEPROXY_PULL_DEADLINE_SECONDS. One not
# taken up by its host is sent again every third of its deadline.
EDGEPROXY_OPERATION_DEADLINE_SECONDS = envfloat("EDGEPROXY_OPERATION_DEADLINE_SECONDS", 30.0, minimum=3.0)
EDGEPROXY_PULL_DEADLINE_SECONDS = envfloat("EDGEPROXY_PULL_DEADLINE_SECONDS", 1800.0, minimum=10.0)
# How often beat looks for operations past their deadline or due to be sent again.
EDGEPROXY_DEADLINE_CHECK_SECONDS = min(2.0, EDGEPROXY_OPERATION_DEADLINE_SECONDS / 3)
CELERY_BEAT_SCHEDULE = {
    "reconcile-fleet": {
        "task": messages.ReconcileFleet.task,
        "schedule": EDGEPROXY_RECONCILE_SECONDS,
        "options": {"queue": messages.ReconcileFleet.queue, "expires": EDGEPROXY_RECONCILE_SECONDS},
    },
    "expire-operations": {
        "task": messages.ExpireOperations.task,
        "schedule": EDGEPROXY_DEADLINE_CHECK_SECONDS,
        "options": {"queue": messages.ExpireOperations.queue, "expires": EDGEPROXY_DEADLINE_CHECK_SECONDS},
    },
}

# --- app processes (issue 16, docs/apps.md) ------------------------------------------------------
# Limits an app gets when its request names none (a request may ask for at most the maximum).
EDGEPROXY_APP_CPUS = envfloat("EDGEPROXY_APP_CPUS", 1.0, minimum=0.01)
EDGEPROXY_APP_MEMORY_MB = envint("EDGEPROXY_APP_MEMORY_MB", 512, minimum=16)
EDGEPROXY_APP_MAX_CPUS = envfloat("EDGEPROXY_APP_MAX_CPUS", 4.0, minimum=0.01)
EDGEPROXY_APP_MAX_MEMORY_MB = envint("EDGEPROXY_APP_MAX_MEMORY_MB", 8192, minimum=16)
# Edge side: where each app's data folders are (one folder per app below it; mounts stay inside).
EDGEPROXY_APP_DATA_DIR = envstr("EDGEPROXY_APP_DATA_DIR", str(STATE_DIR / "apps"))
# Edge side: Docker network of app containers unless their allow-list entry permits the host's.
EDGEPROXY_APP_NETWORK = envstr("EDGEPROXY_APP_NETWORK", "bridge")
# Edge side, development only: read-only bind mounts every app container gets ("src:dst[:ro]"), like
# EDGEPROXY_CAMERA_VOLUMES for images built FROM scratch (compose/app-dev/build.sh prints the value).
EDGEPROXY_APP_VOLUMES = envlist("EDGEPROXY_APP_VOLUMES")

# --- Events out: webhooks and MQTT (docs/events.md) -----------------------------------------------
# How often the events relay (manage.py events_relay) reads the outbox, and how long events (and
# their undelivered webhook deliveries) are kept.
EDGEPROXY_EVENTS_POLL_SECONDS = envfloat("EDGEPROXY_EVENTS_POLL_SECONDS", 0.2, minimum=0.05)
EDGEPROXY_EVENTS_RETENTION_HOURS = envfloat("EDGEPROXY_EVENTS_RETENTION_HOURS", 24.0, minimum=0.01)
# Webhooks: timeouts of one delivery, the back-off between tries (doubling up to the max), and the
# networks deliveries may go to besides public addresses (CIDRs, comma separated; e.g. 10.0.0.0/8).
EDGEPROXY_WEBHOOK_TIMEOUT_SECONDS = envfloat("EDGEPROXY_WEBHOOK_TIMEOUT_SECONDS", 5.0, minimum=0.1)
EDGEPROXY_WEBHOOK_RETRY_SECONDS = envfloat("EDGEPROXY_WEBHOOK_RETRY_SECONDS", 1.0, minimum=0.05)
EDGEPROXY_WEBHOOK_RETRY_MAX_SECONDS = envfloat("EDGEPROXY_WEBHOOK_RETRY_MAX_SECONDS", 300.0, minimum=0.05)
EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS = envlist("EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS")
for _network in EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS:
    import ipaddress

    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS: {_network!r} is not a network "
                                   "(CIDR such as 10.0.0.0/8)") from None
# MQTT: off unless a broker URL is set (mqtt://host[:1883] or mqtts://host[:8883]); credentials
# apart (the password may come from EDGEPROXY_MQTT_PASSWORD_FILE), never in the URL.
EDGEPROXY_MQTT_URL = envstr("EDGEPROXY_MQTT_URL", "")
EDGEPROXY_MQTT_USERNAME = envstr("EDGEPROXY_MQTT_USERNAME", "")
EDGEPROXY_MQTT_PASSWORD = envstr("EDGEPROXY_MQTT_PASSWORD", "")
EDGEPROXY_MQTT_TLS_CA = envstr("EDGEPROXY_MQTT_TLS_CA", "")  # a CA bundle path; default: the system's roots
EDGEPROXY_MQTT_TOPIC_PREFIX = envstr("EDGEPROXY_MQTT_TOPIC_PREFIX", "edgeproxy").strip("/")
EDGEPROXY_MQTT_DISCOVERY_PREFIX = envstr("EDGEPROXY_MQTT_DISCOVERY_PREFIX", "homeassistant").strip("/")
# Events kept for a broker that is away: past this many unpublished events the oldest are dropped.
EDGEPROXY_MQTT_BACKLOG = envint("EDGEPROXY_MQTT_BACKLOG", 10000, minimum=1)
if EDGEPROXY_MQTT_URL:
    from urllib.parse import urlsplit as _urlsplit

    _mqtt = _urlsplit(EDGEPROXY_MQTT_URL)
    if _mqtt.scheme not in ("mqtt", "mqtts") or not _mqtt.hostname or _mqtt.username or _mqtt.password:
        raise ImproperlyConfigured("EDGEPROXY_MQTT_URL must be mqtt://host[:port] or mqtts://host[:port], without "
                                   "credentials (use EDGEPROXY_MQTT_USERNAME and EDGEPROXY_MQTT_PASSWORD)")
