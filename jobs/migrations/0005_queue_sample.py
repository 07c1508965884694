from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0004_job_serial"),
    ]

    operations = [
        migrations.CreateModel(
            name="QueueSample",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "queue",
                    models.CharField(choices=[("high", "High"), ("medium", "Medium"), ("low", "Low")], max_length=10),
                ),
                ("at", models.DateTimeField()),
                (
                    "depth",
                    models.PositiveIntegerField(
                        blank=True, help_text="Messages in Redis; none if Redis did not answer.", null=True
                    ),
                ),
                ("queued", models.PositiveIntegerField(default=0)),
                ("latency_seconds", models.FloatField(default=0.0)),
                ("paused", models.BooleanField(default=False)),
            ],
            options={
                "ordering": ["at", "queue"],
                "indexes": [models.Index(fields=["at"], name="queuesample_at")],
                "constraints": [models.UniqueConstraint(fields=("queue", "at"), name="queuesample_queue_at_unique")],
            },
        ),
    ]
