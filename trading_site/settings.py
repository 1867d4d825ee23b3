"""Settings for the trading desk, read from the environment.

Every variable is documented in .env.example and in the README's configuration table.
"""

import datetime as dt
from pathlib import Path

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from trading_site.env import (
    database_from_url,
    development_secrets,
    env_bool,
    env_int,
    env_list,
    env_rate,
    env_str,
    env_url,
    fernet_keys,
    load_env_file,
)

BASE_DIR = Path(__file__).resolve().parent.parent
# Local, git-ignored state of a development machine: the SQLite file and generated secrets.
VAR_DIR = BASE_DIR / "var"
# A development checkout's .env (written by `make install` with DEBUG=1 when missing); the real
# environment always wins, and a server without the file must set everything itself.
load_env_file(BASE_DIR / ".env")

# ---------------------------------------------------------------------------
# Core and secrets
# ---------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", default=False)

SECRET_KEY = env_str("SECRET_KEY")
FIELD_ENCRYPTION_KEY = env_str("FIELD_ENCRYPTION_KEY")
if not (SECRET_KEY and FIELD_ENCRYPTION_KEY):
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY and FIELD_ENCRYPTION_KEY must be set when DEBUG is off. "
            "For a development machine set DEBUG=1 and they are generated into var/dev-secrets.json."
        )
    _generated = development_secrets(VAR_DIR / "dev-secrets.json")
    SECRET_KEY = SECRET_KEY or _generated["SECRET_KEY"]
    FIELD_ENCRYPTION_KEY = FIELD_ENCRYPTION_KEY or _generated["FIELD_ENCRYPTION_KEY"]
FIELD_ENCRYPTION_KEYS = fernet_keys(FIELD_ENCRYPTION_KEY)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", default=[])

# ---------------------------------------------------------------------------
# Applications
# ---------------------------------------------------------------------------
INSTALLED_APPS = [
    # daphne first: it replaces runserver with an ASGI server that also serves websockets.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "django_filters",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "instruments",
    "marketdata",
    "strategies",
    "orders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "trading_site.urls"
ASGI_APPLICATION = "trading_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# ---------------------------------------------------------------------------
# Database: SQLite file by default, PostgreSQL via postgres://
# ---------------------------------------------------------------------------
DATABASE_URL = env_url(
    "DATABASE_URL",
    default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
    schemes=("sqlite", "postgres", "postgresql", "pgsql"),
)
DATABASES = {"default": database_from_url(DATABASE_URL, base_dir=BASE_DIR)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ---------------------------------------------------------------------------
# Redis: channel layer, Celery broker and results, and the hot cache
# ---------------------------------------------------------------------------
REDIS_URL = env_url("REDIS_URL", default="redis://127.0.0.1:6379/0", schemes=("redis", "rediss", "unix"))

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "desk",
    }
}

# The pub/sub layer: a group message is one PUBLISH, received once by each daphne process and
# fanned out in memory to its sockets. The list-based RedisChannelLayer stores a copy per socket
# and each is popped separately, which at 100 sockets took the last one 140 ms longer to reach
# (make bench). Live ticks need no persistence: a socket that is gone misses nothing it needs.
# Redis pub/sub channels ignore the database number of REDIS_URL: two desks sharing one Redis
# server (or the tests beside `make run`) keep apart by their prefixes.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": env_str("CHANNEL_LAYER_PREFIX", "desk:channels")},
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TIMEZONE = "Asia/Kolkata"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# LOGGING below owns logging in every process; Celery must not replace the root logger's handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    # Kite publishes the day's instrument master before the pre-open; 08:30 IST is their advice.
    "sync-instruments-daily": {
        "task": "instruments.tasks.sync_instruments_from_kite",
        "schedule": crontab(hour=8, minute=30, day_of_week="mon-fri"),
    },
    # After the close: snapshots older than CHAIN_SNAPSHOT_RETENTION_DAYS go.
    "prune-chain-snapshots-daily": {
        "task": "marketdata.tasks.prune_chain_snapshots",
        "schedule": crontab(hour=18, minute=0),
    },
}

# ---------------------------------------------------------------------------
# Kite Connect
# ---------------------------------------------------------------------------
KITE_API_ROOT = env_url("KITE_API_ROOT", default="https://api.kite.trade", schemes=("https", "http"))
KITE_LOGIN_URL = env_url("KITE_LOGIN_URL", default="https://kite.zerodha.com/connect/login", schemes=("https", "http"))
KITE_TIMEOUT_SECONDS = env_int("KITE_TIMEOUT_SECONDS", default=7, minimum=1, maximum=120)
KITE_TICKER_URL = env_url("KITE_TICKER_URL", default="wss://ws.kite.trade", schemes=("wss", "ws"))

# ---------------------------------------------------------------------------
# Live feed
# ---------------------------------------------------------------------------
# How often browsers and API clients get the latest values (one message per group).
FEED_CONFLATION_MS = env_int("FEED_CONFLATION_MS", default=250, minimum=20, maximum=10_000)
# Chain analytics (IV, Greeks, PCR, max pain, GEX...): the feed asks a worker for a chain's
# figures at most this often while the chain changes (0 turns chain analytics off).
CHAIN_REFRESH_MS = env_int("CHAIN_REFRESH_MS", default=500, minimum=0, maximum=60_000)
# One stored ChainSnapshot per chain per interval, for intraday history.
CHAIN_SNAPSHOT_SECONDS = env_int("CHAIN_SNAPSHOT_SECONDS", default=60, minimum=1, maximum=3600)
# OI change is measured against the OI of N minutes ago (from the snapshots); 0 means against
# the first OI seen today, which is the previous session's closing OI.
CHAIN_OI_CHANGE_MINUTES = env_int("CHAIN_OI_CHANGE_MINUTES", default=0, minimum=0, maximum=375)
# A chain of 200 strikes stores about 100 KB a snapshot: keep a few weeks of history (0 keeps all).
CHAIN_SNAPSHOT_RETENTION_DAYS = env_int("CHAIN_SNAPSHOT_RETENTION_DAYS", default=30, minimum=0)

# ---------------------------------------------------------------------------
# REST API (/api/v1/) and its OpenAPI schema
# ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "trading_site.api.PagePagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_rate("API_THROTTLE_USER", "1200/min"),
        "anon": env_rate("API_THROTTLE_ANON", "30/min"),
    },
    "EXCEPTION_HANDLER": "trading_site.api.exception_handler",
    "DATETIME_FORMAT": "iso-8601",
    "COERCE_DECIMAL_TO_STRING": False,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# API tokens are stored hashed (SHA-512) and shown once; each can be revoked.
REST_KNOX = {
    "TOKEN_TTL": dt.timedelta(days=env_int("API_TOKEN_TTL_DAYS", default=30, minimum=1, maximum=3650)),
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_LIMIT_PER_USER": 20,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Options desk API",
    "DESCRIPTION": (
        "Instruments, live quotes, bars, stored ticks, option chains with IV, Greeks and chain figures, "
        "a Greeks calculator, the feed's status and your broker accounts. Authenticate with a session or "
        "`Authorization: Token <token>` from `POST /api/v1/auth/token/`."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's scripts and styles from the sidecar package, served by WhiteNoise: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# ---------------------------------------------------------------------------
# Auth, sessions, security
# ---------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (nginx, a load balancer).
if env_bool("BEHIND_HTTPS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", default=0, minimum=0)

# ---------------------------------------------------------------------------
# Internationalisation: exchange time is IST
# ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-in"
TIME_ZONE = "Asia/Kolkata"
USE_I18N = True
USE_TZ = True

# ---------------------------------------------------------------------------
# Static files: vendored into static/, served by WhiteNoise (no CDN)
# ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# The assets are vendored in the repository, so WhiteNoise serves them straight from the
# finders; `collectstatic` into STATIC_ROOT is optional (it adds compressed copies).
WHITENOISE_USE_FINDERS = True

# ---------------------------------------------------------------------------
# Logging: to stderr; nothing here ever formats a secret
# ---------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r} must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {
        "frequent_tasks": {
            "()": "trading_site.log_filters.FrequentTasksFilter",
            "tasks": ["marketdata.tasks.refresh_chain"],
        }
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["frequent_tasks"]},
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        # urllib3 logs full request URLs at DEBUG, and Kite URLs can carry tokens.
        "urllib3": {"level": "WARNING"},
    },
}
