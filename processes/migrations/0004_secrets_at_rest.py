"""Secrets at rest: RTMP URLs encrypted like RTSP URLs; API tokens stored hashed (knox).

Existing RTMP URLs are encrypted and masked (password and stream key) and the clear column is
dropped. Existing DRF tokens (clear text) become knox tokens with the same key, so that clients
keep working, and the clear rows are deleted.
"""

from django.db import migrations, models


def encrypt_rtmp_urls(apps, schema_editor):
    from edgeproxy import crypto
    from worker.redaction import mask_rtmp

    Camera = apps.get_model("processes", "Camera")
    for camera in Camera.objects.exclude(rtmp_endpoint="").only("id", "rtmp_endpoint"):
        Camera.objects.filter(pk=camera.pk).update(
            rtmp_endpoint_encrypted=crypto.encrypt(camera.rtmp_endpoint),
            rtmp_endpoint_masked=mask_rtmp(camera.rtmp_endpoint),
        )


def decrypt_rtmp_urls(apps, schema_editor):
    from edgeproxy import crypto

    Camera = apps.get_model("processes", "Camera")
    for camera in Camera.objects.exclude(rtmp_endpoint_encrypted="").only("id", "rtmp_endpoint_encrypted"):
        Camera.objects.filter(pk=camera.pk).update(rtmp_endpoint=crypto.decrypt(camera.rtmp_endpoint_encrypted))


def hash_api_tokens(apps, schema_editor):
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS

    Token = apps.get_model("authtoken", "Token")
    AuthToken = apps.get_model("knox", "AuthToken")
    for token in Token.objects.all():
        AuthToken.objects.get_or_create(digest=hash_token(token.key), defaults={
            "token_key": token.key[:CONSTANTS.TOKEN_KEY_LENGTH], "user_id": token.user_id, "expiry": None})
    Token.objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ("processes", "0003_fleet"),
        ("authtoken", "0004_alter_tokenproxy_options"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [
        migrations.AddField(
            model_name="camera",
            name="rtmp_endpoint_encrypted",
            field=models.TextField(blank=True, help_text="the full URL, encrypted at rest"),
        ),
        migrations.AddField(
            model_name="camera",
            name="rtmp_endpoint_masked",
            field=models.CharField(blank=True, help_text="the URL with its password and stream key masked",
                                   max_length=2100),
        ),
        migrations.RunPython(encrypt_rtmp_urls, decrypt_rtmp_urls),
        migrations.RemoveField(
            model_name="camera",
            name="rtmp_endpoint",
        ),
        # Plain tokens cannot be recovered from hashes: going back leaves them hashed.
        migrations.RunPython(hash_api_tokens, migrations.RunPython.noop),
    ]
