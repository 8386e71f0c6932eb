from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("settings_app", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="edgesettings",
            name="registry_url",
            field=models.CharField(
                blank=True,
                help_text="Docker registry asked for remote versions (http(s)://host[:port]); empty = EDGEPROXY_REGISTRY_URL",
                max_length=255,
            ),
        ),
    ]
