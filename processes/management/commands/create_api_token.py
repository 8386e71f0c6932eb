"""``manage.py create_api_token <user> [--read-only] [--superuser]``: print a new API token for a user.

Creates the user if needed. ``--read-only`` puts the user in the read-only group (reads and frames,
no changes). The token is printed once on stdout and never logged; only its hash is stored, so it
cannot be shown again: each run makes a new token (the user's earlier tokens stay valid until
deleted in the admin, or at once with ``--revoke-others``). ``--token-file F`` keeps the token in
an owner-only file instead: the token in F is printed again while it is still valid for the user,
else a new one is written there (bin/run uses it, so a restart shows the same token).
"""

import os
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from edgeproxy.api.auth import ApiTokenAuthentication, new_api_token
from edgeproxy.policy import READ_ONLY_GROUP


class Command(BaseCommand):
    help = "Print a new API token of a user (shown once, stored hashed), creating the user if needed."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--read-only", action="store_true", help="the token may only read")
        parser.add_argument("--superuser", action="store_true", help="make the user a superuser (admin login)")
        parser.add_argument("--password", help="set this password (for the admin login)")
        parser.add_argument("--revoke-others", action="store_true", help="delete the user's earlier tokens")
        parser.add_argument("--token-file", type=Path,
                            help="reuse the token kept in this file while it is valid, else write a new one there")

    def handle(self, *args, username, read_only, superuser, password, revoke_others, token_file, **options):
        user, created = get_user_model().objects.get_or_create(username=username)
        if superuser:
            user.is_staff = user.is_superuser = True
        if password:
            user.set_password(password)
        elif created:
            user.set_unusable_password()
        user.save()
        group, _ = Group.objects.get_or_create(name=READ_ONLY_GROUP)
        if read_only:
            user.groups.add(group)
        else:
            user.groups.remove(group)
        if revoke_others:
            user.auth_token_set.all().delete()
        if token_file is None:
            self.stdout.write(new_api_token(user))
            return
        token_file = Path(token_file)  # a str when called through call_command
        kept = _valid_token_of(user, token_file)
        if kept is None:
            kept = new_api_token(user)
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(kept + "\n")
        self.stdout.write(kept)


def _valid_token_of(user, token_file: Path) -> str | None:
    """The token kept in ``token_file`` if it still authenticates as ``user``."""
    try:
        token = token_file.read_text().strip()
        token_user, _ = ApiTokenAuthentication().authenticate_credentials(token.encode())
    except Exception:  # noqa: BLE001 - missing, unreadable, revoked or malformed: make a new one
        return None
    return token if token_user.pk == user.pk else None
