"""Settings for jobqueue: every knob comes from the environment, each with a safe default."""

import os
import re
import secrets
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("JOBQUEUE_VAR_DIR", BASE_DIR / "var"))
# What `make run` leaves for commands run in another shell (`manage.py jobs ...`): DEBUG=1 and
# the address of the Redis it started. Read in development only (see _read_dev_env).
DEV_ENV_FILE = VAR_DIR / "dev.env"
DEV_ENV_APPLIED: set[str] = set()  # the names taken from it


def _read_dev_env(path: Path) -> None:
    """Fill the variables the environment leaves unset from `path` (KEY=VALUE lines, written by
    run_dev). Ignored when SECRET_KEY is set, as in any configured deployment, or JOBQUEUE_DEV_ENV=0."""
    if os.environ.get("SECRET_KEY") or os.environ.get("JOBQUEUE_DEV_ENV", "1") == "0":
        return
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return
    for line in lines:
        name, sep, value = line.partition("=")
        name = name.strip()
        if sep and name and not name.startswith("#") and name not in os.environ:
            os.environ[name] = value.strip()
            DEV_ENV_APPLIED.add(name)


_read_dev_env(DEV_ENV_FILE)


def env_str(name: str, default: str = "") -> str:
    """The variable's value; unset and empty both mean the default."""
    return os.environ.get(name) or default


def _env(name: str, default, parse, kind: str):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except (ValueError, KeyError):
        raise ImproperlyConfigured(f"{name}={raw!r} is not {kind}") from None


BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def env_bool(name: str, default: bool) -> bool:
    return _env(name, default, lambda raw: BOOLEANS[raw.lower()], "a boolean (use 1/0, true/false)")


def env_int(name: str, default: int) -> int:
    return _env(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _env(name, default, float, "a number")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)


# Values of SECRET_KEY that templates and tutorials ship: refused when DEBUG is off, however long.
PLACEHOLDER_KEY = re.compile(r"change.?me|replace|placeholder|example|your.?secret|^django-insecure-", re.IGNORECASE)


def _key_problem(key: str) -> str | None:
    """Why `key` may not sign a deployment's sessions and tokens (Django's own bar for a strong key,
    which `check --deploy` only warns about, and no template's placeholder); None if it may."""
    if PLACEHOLDER_KEY.search(key):
        return "a placeholder"
    if len(key) < 50 or len(set(key)) < 5:
        return "too weak"
    return None


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key and not DEBUG and (problem := _key_problem(key)):
        raise ImproperlyConfigured(
            f"SECRET_KEY is {problem}: with DEBUG off it must be a random string of 50 or more characters, "
            'e.g. python -c "import secrets; print(secrets.token_urlsafe(50))"'
        )
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment "
            "(a random dev key is only generated when DEBUG=1)."
        )
    # Dev only: a random key kept under var/ so sessions survive restarts.
    path = VAR_DIR / "dev-secret-key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


def _allowed_hosts() -> list[str]:
    hosts = env_list("ALLOWED_HOSTS")
    if hosts:
        return hosts
    if not DEBUG:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS is not set. Set ALLOWED_HOSTS to the host names this service answers to, "
            "comma-separated (it defaults to localhost only when DEBUG=1)."
        )
    return ["localhost", "127.0.0.1", "[::1]"]


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = _allowed_hosts()

# HTTPS behind a proxy: secure cookies by default when DEBUG is off; redirect, HSTS and the
# forwarded-protocol header are opt-in because they depend on how TLS is terminated.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Probes and scrapers talk plain HTTP inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("USE_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env_bool("USE_X_FORWARDED_HOST", False)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy on every response (django-csp): scripts, styles, images and requests
# only from this origin, nothing embedded, no frames. The admin, its overview chart and Swagger
# UI (drf-spectacular's split view: its start-up script is a file, not inline) run under it.
# Inline style attributes are allowed (the admin's status colours and progress bars, Swagger
# UI's); inline scripts, eval and other origins are not.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

INSTALLED_APPS = [
    # First, so its admin templates (dashboard, overview) override the admin's own.
    "jobs.apps.JobsConfig",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "tasks.apps.TasksConfig",
]

MIDDLEWARE = [
    # Request metrics for /metrics, first so it counts and times every request.
    "jobs.api.metrics_view.request_metrics",
    # A view that fails because PostgreSQL or Redis is unreachable answers 503 JSON (jobs/api/outages.py).
    "jobs.api.outages.ServiceUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # Serves STATIC_ROOT (the admin's CSS and JavaScript, after collectstatic) under gunicorn too.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Error reports (DEBUG's 500 page, mails to ADMINS) with every setting, header and variable
# redacted: Django alone shows a password inside a URL (REDIS_URL...).
DEFAULT_EXCEPTION_REPORTER_FILTER = "jobqueue_site.error_reports.RedactingFilter"
DEFAULT_EXCEPTION_REPORTER = "jobqueue_site.error_reports.RedactingReporter"

ROOT_URLCONF = "jobqueue_site.urls"
WSGI_APPLICATION = "jobqueue_site.wsgi.application"

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


def _database() -> dict:
    url = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'jobqueue.sqlite3'}"
    config = dj_database_url.parse(url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        # Web, worker and mover write concurrently: WAL, immediate write locks, a patient timeout.
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        config["CONN_MAX_AGE"] = 0
    elif config["ENGINE"] == "django.db.backends.postgresql":
        # A database that does not answer fails a connection attempt within this many seconds,
        # and TCP keepalives find a connection whose server vanished (failover, cut network),
        # so no process waits forever on a dead peer; a statement sent into a network that drops
        # everything (a partition) fails once unacknowledged for DATABASE_TCP_USER_TIMEOUT_MS.
        config["OPTIONS"] = {
            "connect_timeout": env_int("DATABASE_CONNECT_TIMEOUT", 3),
            "tcp_user_timeout": env_int("DATABASE_TCP_USER_TIMEOUT_MS", 10000),
            "keepalives": 1,
            "keepalives_idle": env_int("DATABASE_KEEPALIVES_IDLE", 30),
            "keepalives_interval": 10,
            "keepalives_count": 3,
            **config.get("OPTIONS", {}),
        }
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# Dates and times as the admin shows them: ISO-like, to the second (jobqueue_site/formats/).
FORMAT_MODULE_PATH = ["jobqueue_site.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"

# Shared by every web process (the rate limits count in this Redis, jobs/api/throttling.py), in the
# broker's Redis under its own prefix.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL") or env_str("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "KEY_PREFIX": "jobqueue-cache",
        "TIMEOUT": 300,
        # The rate limits fail open when this Redis does not answer (jobs/api/throttling.py): soon.
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}

# Request bodies above this are refused with 413 before any parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("JOB_MAX_REQUEST_BYTES", 1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "jobs.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["jobs.api.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["jobs.api.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "jobs.api.errors.exception_handler",
    # Per token (user) and, for requests without one, per client address.
    "DEFAULT_THROTTLE_CLASSES": [
        "jobs.api.throttling.UserRateThrottle",
        "jobs.api.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_str("JOB_THROTTLE_USER", "200/second"),
        "anon": env_str("JOB_THROTTLE_ANON", "30/minute"),
    },
    # The client address of the anonymous rate limit: X-Forwarded-For is read only through this
    # many trusted proxies in front of the app; with 0 it is ignored (any client can forge it).
    "NUM_PROXIES": env_int("JOB_TRUSTED_PROXIES", 0),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "jobqueue API",
    "DESCRIPTION": (
        "Submit background jobs and follow them (`/submit-job`, `/job-status/{id}`), and manage them "
        "as staff under `/api/`. Authenticate with `Authorization: Token <key>`."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from our own static files (drf-spectacular-sidecar), not from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Email: SMTP when EMAIL_HOST is set, the console otherwise.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "jobqueue@localhost")


def _senders(raw: str) -> dict[str, frozenset[str]]:
    senders: dict[str, set[str]] = {}
    for item in (part.strip() for part in raw.split(",") if part.strip()):
        user, sep, address = (text.strip() for text in item.partition("="))
        if not (sep and user and "@" in address):
            raise ValueError(item)
        senders.setdefault(user, set()).add(address.lower())
    return {user: frozenset(addresses) for user, addresses in senders.items()}


# A client's mail always comes from DEFAULT_FROM_EMAIL, unless this lists the `from_email`
# addresses its user may set: user=address pairs, comma-separated (jobs.rules.input_limits.sender_problem).
JOB_EMAIL_SENDERS = _env("JOB_EMAIL_SENDERS", {}, _senders, "a list of user=address pairs")
# How many mail jobs (email, email_welcome) one client may submit in an hour; 0: no limit.
JOB_EMAIL_HOURLY_PER_OWNER = env_int("JOB_EMAIL_HOURLY_PER_OWNER", 1000)

# Jobs.
JOB_HANDLER_MODULES = env_list("JOB_HANDLER_MODULES")
# The demonstration types of tasks/demo.py (demo.flaky, demo.slow): on in development only.
JOB_DEMO_TYPES = env_bool("JOB_DEMO_TYPES", DEBUG)
# Where the development stack's SMTP sink keeps mail (the admin's Mail page reads it in DEBUG).
JOB_DEV_MAILDIR = Path(env_str("JOB_DEV_MAILDIR", str(VAR_DIR / "mail")))
JOB_MAX_PAYLOAD_BYTES = env_int("JOB_MAX_PAYLOAD_BYTES", 64 * 1024)
# How deeply request bodies and payloads may nest, and how large a handler's result may be.
JOB_MAX_JSON_DEPTH = env_int("JOB_MAX_JSON_DEPTH", 32)
JOB_MAX_RESULT_BYTES = env_int("JOB_MAX_RESULT_BYTES", 256 * 1024)
# The largest file a job may keep for its owner to download (a report's CSV), kept in the database.
JOB_MAX_ARTIFACT_BYTES = env_int("JOB_MAX_ARTIFACT_BYTES", 10 * 1024 * 1024)
JOB_MAX_DELAY_SECONDS = env_int("JOB_MAX_DELAY_SECONDS", 365 * 24 * 3600)
JOB_DEFAULT_MAX_RETRIES = env_int("JOB_DEFAULT_MAX_RETRIES", 3)
# Django's task API (@task, enqueue, get_result; django.tasks, or the django-tasks backport on
# Django 5.2): tasks become jobs of the `django_task` type (jobs/tasks_backend.py), retried like
# any job; 0 retries gives the one attempt of Django's own backends.
TASKS = {"default": {"BACKEND": "jobs.tasks_backend.JobQueueBackend"}}
JOB_TASKS_MAX_RETRIES = env_int("JOB_TASKS_MAX_RETRIES", JOB_DEFAULT_MAX_RETRIES)
JOB_MAX_RETRIES_LIMIT = env_int("JOB_MAX_RETRIES_LIMIT", 100)
# The longest window a unique job's key may stay taken after the job finished (unique_for).
JOB_UNIQUE_MAX_SECONDS = env_int("JOB_UNIQUE_MAX_SECONDS", 30 * 24 * 3600)
# Most jobs one POST /submit-jobs may carry (the request body limit applies too).
JOB_BULK_MAX = env_int("JOB_BULK_MAX", 1000)
JOB_DEFAULT_TIMEOUT = env_int("JOB_DEFAULT_TIMEOUT", 600)
JOB_RETRY_BACKOFF_BASE = env_float("JOB_RETRY_BACKOFF_BASE", 2.0)
JOB_RETRY_BACKOFF_MAX = env_float("JOB_RETRY_BACKOFF_MAX", 3600.0)
# A running job whose lease its worker has not renewed for this long is taken as lost and retried.
# (JOB_HEARTBEAT_SECONDS is the renewal's older name.)
JOB_LEASE_SECONDS = env_int("JOB_LEASE_SECONDS", 30)
JOB_LEASE_RENEW_SECONDS = env_float("JOB_LEASE_RENEW_SECONDS", env_float("JOB_HEARTBEAT_SECONDS", 10.0))
# On SIGTERM a worker lets running jobs finish for this long, then requeues the rest.
JOB_SHUTDOWN_GRACE = env_float("JOB_SHUTDOWN_GRACE", 30.0)
# A running attempt that lost its job (its lease ran out, another node took the job over) is told
# to stop at once (ctx.check() raises) and its pool process is killed after this many seconds: two
# runs of a job overlap by at most about this long (docs/explanation/delivery-guarantees.md).
JOB_FENCE_GRACE = env_float("JOB_FENCE_GRACE", 10.0)
# The same for a running job that is cancelled.
JOB_CANCEL_GRACE = env_float("JOB_CANCEL_GRACE", 10.0)
# Seconds between a worker node's checks that its running attempts still hold their jobs (not
# cancelled, not taken over): one query per node while it runs jobs.
JOB_FENCE_CHECK_SECONDS = env_float("JOB_FENCE_CHECK_SECONDS", 1.0)
# Seconds a worker process gathers successes before recording them in one statement: a job
# shows as succeeded up to this much after its handler returned (finished_at is exact).
JOB_FINISH_WINDOW = env_float("JOB_FINISH_WINDOW", 0.02)
# The mover: how often it looks for due jobs (it also wakes exactly when the next one is due).
JOB_MOVER_INTERVAL = env_float("JOB_MOVER_INTERVAL", 0.5)
JOB_MOVER_BATCH = env_int("JOB_MOVER_BATCH", 500)
# Recurring jobs: a tick fired more than this late is missed (every mover was down) and its
# schedule's missed-run policy decides; a mover locks this many due schedules per transaction;
# at most this many missed ticks of one schedule are recorded per round (the rest only counted).
JOB_SCHEDULE_GRACE_SECONDS = env_float("JOB_SCHEDULE_GRACE_SECONDS", 30.0)
JOB_SCHEDULE_BATCH = env_int("JOB_SCHEDULE_BATCH", 100)
JOB_SCHEDULE_MAX_MISSED_ROWS = env_int("JOB_SCHEDULE_MAX_MISSED_ROWS", 100)
JOB_LOST_CHECK_SECONDS = env_float("JOB_LOST_CHECK_SECONDS", 5.0)
# Queued jobs missing from the broker (Redis lost data) are sent again after this long.
JOB_REDISPATCH_AFTER = env_float("JOB_REDISPATCH_AFTER", 30.0)
JOB_REDISPATCH_CHECK_SECONDS = env_float("JOB_REDISPATCH_CHECK_SECONDS", 10.0)
# How long a process trusts its cached list of paused queues; a pause is never missed by the claim.
JOB_PAUSE_CACHE_SECONDS = env_float("JOB_PAUSE_CACHE_SECONDS", 1.0)
# Limits: how long a process trusts its cached run-time overrides of the types' limits, and how
# often the mover wakes waiting jobs whose limit has room (the safety net of the wake on finish).
JOB_LIMIT_CACHE_SECONDS = env_float("JOB_LIMIT_CACHE_SECONDS", 2.0)
JOB_LIMIT_SWEEP_SECONDS = env_float("JOB_LIMIT_SWEEP_SECONDS", 2.0)
# After a publish to Redis failed, a process sends its next publishes straight to the pending
# table for this long instead of waiting on Redis again; the mover publishes pending jobs every
# JOB_PENDING_DISPATCH_SECONDS once Redis answers.
JOB_BROKER_BACKOFF_SECONDS = env_float("JOB_BROKER_BACKOFF_SECONDS", 2.0)
JOB_PENDING_DISPATCH_SECONDS = env_float("JOB_PENDING_DISPATCH_SECONDS", 1.0)
# The mover samples each queue's depth and latency this often for the admin's charts, and keeps
# the samples this long (the charts show the last hour).
JOB_QUEUE_SAMPLE_SECONDS = env_float("JOB_QUEUE_SAMPLE_SECONDS", 15.0)
JOB_QUEUE_SAMPLE_KEEP_SECONDS = env_int("JOB_QUEUE_SAMPLE_KEEP_SECONDS", 2 * 3600)
# How often the admin's overview refreshes itself (seconds; the page can change it, 0 turns it off).
JOB_ADMIN_REFRESH_SECONDS = env_float("JOB_ADMIN_REFRESH_SECONDS", 5.0)
# A worker whose claim finds the database unreachable waits for it (backing off up to 2 s between
# tries) this long at most, then puts the message back in its queue.
JOB_DATABASE_WAIT_SECONDS = env_float("JOB_DATABASE_WAIT_SECONDS", 30.0)
# Failed admin logins from one address before it is locked out, and for how long (seconds).
JOB_LOGIN_MAX_FAILURES = env_int("JOB_LOGIN_MAX_FAILURES", 10)
JOB_LOGIN_LOCKOUT_SECONDS = env_int("JOB_LOGIN_LOCKOUT_SECONDS", 900)
# `manage.py jobs`: the user it acts as when no --as is given, and whether a change needs one.
JOB_CLI_USER = env_str("JOB_CLI_USER", "")
JOB_CLI_REQUIRE_ACTOR = env_bool("JOB_CLI_REQUIRE_ACTOR", False)
# The Retry-After (seconds) of a 503 answered while the database or Redis is unavailable.
API_RETRY_AFTER_SECONDS = env_int("API_RETRY_AFTER_SECONDS", 5)

# Operator links shown in the admin dashboard.
FLOWER_URL = env_str("FLOWER_URL", "http://127.0.0.1:5555")
# The admin links to Grafana only when this is set (docker compose sets it).
GRAFANA_URL = env_str("GRAFANA_URL")

# Celery on Redis.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Where the layers below the site find the Celery app (jobs.adapters.dispatch.celery_app).
JOB_CELERY_APP = "jobqueue_site.celery.app"
CELERY_BROKER_URL = REDIS_URL
# The transport is ours (jobs/adapters/transport.py), registered for redis:// in jobqueue_site/celery.py.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # BRPOP the queues in the order the worker lists them (-Q high,medium,low): strict priority.
    "queue_order_strategy": "priority",
    # A message unacked this long is handed to another worker. Above the default job timeout so
    # ordinary jobs are never delivered twice; correctness does not depend on it (see README).
    "visibility_timeout": env_int("JOB_VISIBILITY_TIMEOUT", 3600),
    "socket_timeout": env_float("REDIS_SOCKET_TIMEOUT", 2.0),
    # How often an idle connection is checked, and how late a worker's BRPOP reply may be before
    # the connection is taken as dead (half-open after a failover) and replaced: kombu's default
    # of 25 s left a worker idle for 35 s.
    "health_check_interval": env_int("REDIS_HEALTH_CHECK_INTERVAL", 5),
    "socket_connect_timeout": env_float("REDIS_CONNECT_TIMEOUT", 2.0),
}
# A publisher gives up connecting to Redis after this many seconds (kombu would retry for 4).
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("REDIS_CONNECT_TIMEOUT", 2.0)
CELERY_TASK_ACKS_LATE = True
# Celery's Django fixup closes the database connection around every task unless this is set,
# which costs a new PostgreSQL connection per job; reuse it (Django's CONN_MAX_AGE still applies).
CELERY_DB_REUSE_MAX = 1000
# A pool process that dies mid-job: its message is acked and the worker's main process puts
# the job back at once (tasks/outcomes.py), rather than kombu requeueing a message whose job is
# still `running` in the database.
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_DISABLE_PREFETCH = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "medium"
CELERY_WORKER_SEND_TASK_EVENTS = env_bool("CELERY_WORKER_SEND_TASK_EVENTS", True)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Metrics and health. Scrape endpoints of worker nodes and the mover (port 0: none); the web
# app serves /metrics itself. Multiprocess metric files go under JOB_METRICS_DIR (read there by
# jobs.adapters.multiproc, which runs before settings in gunicorn's master).
JOB_WORKER_METRICS_PORT = env_int("JOB_WORKER_METRICS_PORT", 9808)
JOB_WORKER_METRICS_ADDR = env_str("JOB_WORKER_METRICS_ADDR", "127.0.0.1")
JOB_MOVER_METRICS_PORT = env_int("JOB_MOVER_METRICS_PORT", 9809)
JOB_MOVER_METRICS_ADDR = env_str("JOB_MOVER_METRICS_ADDR", "127.0.0.1")
# A worker node announces itself in Redis this often (workers_online, /healthz?workers=1) ...
JOB_WORKER_HEARTBEAT_SECONDS = env_float("JOB_WORKER_HEARTBEAT_SECONDS", 5.0)
# A worker whose event loop (or a mover whose loop) has not turned for this long is stuck: its
# /healthz answers 503 and a worker stops announcing itself.
JOB_LIVENESS_SECONDS = env_float("JOB_LIVENESS_SECONDS", 60.0)
# Seconds each /healthz check may take.
HEALTHZ_TIMEOUT = env_float("HEALTHZ_TIMEOUT", 2.0)

LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} must be plain or json")
# GET /metrics of the web app: "open", or "token" (Authorization: Bearer METRICS_TOKEN).
METRICS_ACCESS = env_str("METRICS_ACCESS", "open")
METRICS_TOKEN = env_str("METRICS_TOKEN")
if METRICS_ACCESS not in {"open", "token"}:
    raise ImproperlyConfigured(f"METRICS_ACCESS={METRICS_ACCESS!r} must be open or token")
if METRICS_ACCESS == "token" and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_ACCESS=token needs METRICS_TOKEN of at least 16 characters")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"()": "jobqueue_site.logging.PlainFormatter"},
        "json": {"()": "jobqueue_site.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Celery's own lines per message (received; succeeded in) name only its message id: the job
    # event lines (jobqueue.jobs) say the same with the job's id, type, queue and attempt.
    # Celery's warnings and errors still come through. The mail sink logs one line per message
    # (jobqueue.mail) rather than aiosmtpd's lines per session. Flower warns whenever no worker
    # answers its inspection within a second (at its start, before the workers are up): its
    # workers page says so anyway; its errors still come through.
    "loggers": {
        **{name: {"level": "WARNING"} for name in ("celery.worker.strategy", "celery.app.trace", "mail.log")},
        "flower.inspector": {"level": "ERROR"},
    },
}
