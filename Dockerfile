FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    JOBQUEUE_VAR_DIR=/app/var

RUN useradd --create-home --uid 1000 jobqueue

WORKDIR /app

# Dependencies in their own layer: code changes do not reinstall them.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=jobqueue:jobqueue . .
RUN mkdir -p /app/var && chown jobqueue:jobqueue /app/var

USER jobqueue
EXPOSE 8000
CMD ["gunicorn", "jobqueue_site.wsgi:application", "--bind", "0.0.0.0:8000"]
