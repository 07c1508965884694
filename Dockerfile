# One image for every jobqueue process; the command picks the role:
#   web     gunicorn jobqueue_site.wsgi:application --bind 0.0.0.0:8000   (the default)
#   worker  celery -A jobqueue_site worker -Q high,medium,low
#   mover   python manage.py run_mover
#   flower  celery -A jobqueue_site flower --port=5555
#   once    python manage.py migrate --noinput
# docker-compose.yml and deploy/k8s/ run it in each role; docs/operations.md explains them.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    JOBQUEUE_VAR_DIR=/app/var

# A fixed numeric uid, so Kubernetes can check runAsNonRoot and volumes can be chowned to it.
RUN groupadd --system --gid 10001 jobqueue \
    && useradd --system --uid 10001 --gid jobqueue --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin jobqueue

WORKDIR /app

# Dependencies in their own layer: a code change does not reinstall them.
COPY requirements.txt .
RUN pip install -r requirements.txt

# The code stays owned by root: the app can write only under /app/var.
COPY . .

# The admin's static files go into the image. Settings refuse to load without SECRET_KEY and ALLOWED_HOSTS when
# DEBUG is off, so this one step gets a throwaway key and host; neither is kept in the image.
RUN SECRET_KEY=collectstatic-build-step-only-it-never-signs-anything-0123456789 ALLOWED_HOSTS=localhost DEBUG=0 python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p /app/var/media \
    && chown -R jobqueue:jobqueue /app/var

USER 10001:10001

# web, flower, worker metrics and /healthz (JOB_WORKER_METRICS_PORT), mover metrics (JOB_MOVER_METRICS_PORT)
EXPOSE 8000 5555 9808 9809

# Works for every role: the script finds out what PID 1 runs and asks that process.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/deploy/docker/healthcheck.py"]

# One gunicorn process (with threads) per container keeps its Prometheus counters in one place;
# scale the web tier with more containers.
CMD ["gunicorn", "jobqueue_site.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "1", "--threads", "8", "--access-logfile", "-"]
