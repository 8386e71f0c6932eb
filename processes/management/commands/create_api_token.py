"""``manage.py create_api_token <user> [--read-only] [--superuser]``: print a new API token for a user.

Creates the user if needed. ``--read-only`` puts the user in the read-only group (reads and frames,
no changes). The token is printed once on stdout and never logged; only its hash is stored, so it
cannot be shown again: each run makes a new token (the user's earlier tokens stay valid until
deleted in the admin, or at once with ``--revoke-others``).
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from edgeproxy.api.auth import new_api_token
from edgeproxy.api.permissions import READ_ONLY_GROUP


class Command(BaseCommand):
    help = "Print a new API token of a user (shown once, stored hashed), creating the user if needed."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--read-only", action="store_true", help="the token may only read")
        parser.add_argument("--superuser", action="store_true", help="make the user a superuser (admin login)")
        parser.add_argument("--password", help="set this password (for the admin login)")
        parser.add_argument("--revoke-others", action="store_true", help="delete the user's earlier tokens")

    def handle(self, *args, username, read_only, superuser, password, revoke_others, **options):
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
        self.stdout.write(new_api_token(user))
