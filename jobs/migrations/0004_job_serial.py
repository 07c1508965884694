from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("jobs", "0003_pending_dispatch")]

    operations = [
        migrations.RenameField(model_name="job", old_name="attempts_total", new_name="serial"),
        migrations.AlterField(
            model_name="job",
            name="serial",
            field=models.PositiveIntegerField(
                default=0,
                help_text="Attempts ever started: the current attempt's number, which fences stale workers.",
            ),
        ),
    ]
