"""What a worker tells Flower and `celery inspect conf` about its configuration: no password."""

from types import SimpleNamespace

from celery.worker.control import Panel

from jobqueue_site.celery import app


def test_the_conf_a_worker_publishes_masks_every_url_password():
    app.conf.update(
        REDIS_URL="redis://:redis-s3cret@127.0.0.1:6379/0",
        CELERY_BROKER_URL="redis://:redis-s3cret@127.0.0.1:6379/0",
        CACHES={"default": {"LOCATION": "redis://user:cache-s3cret@127.0.0.1:6379/1"}},
    )
    try:
        published = Panel.data["conf"](SimpleNamespace(app=app))
        by_alias = Panel.data["dump_conf"](SimpleNamespace(app=app))
    finally:
        for key in ("REDIS_URL", "CELERY_BROKER_URL", "CACHES"):
            app.conf.pop(key, None)

    text = repr(published)
    assert "s3cret" not in text and "s3cret" not in repr(by_alias)
    assert published["REDIS_URL"] == "redis://:[redacted]@127.0.0.1:6379/0"
    assert published["CACHES"]["default"]["LOCATION"] == "redis://user:[redacted]@127.0.0.1:6379/1"
