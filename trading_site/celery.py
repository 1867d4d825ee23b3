import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trading_site.settings")

app = Celery("trading_site")
# Every CELERY_* setting in settings.py configures this app.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
