from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('processes', '0004_secrets_at_rest'),
    ]

    operations = [
        migrations.AddField(
            model_name='camera',
            name='recording',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name='operation',
            name='kind',
            field=models.CharField(choices=[('connect', 'Connect'), ('start', 'Start'), ('stop', 'Stop'), ('delete', 'Delete'), ('reconcile', 'Reconcile'), ('pull', 'Pull'), ('upgrade', 'Upgrade'), ('move', 'Move'), ('recording', 'Recording')], max_length=16),
        ),
    ]
