"""Encryption of secrets at rest (RTSP URLs, the edge secret).

The key is ``EDGEPROXY_ENCRYPTION_KEY`` (a Fernet key; ``_FILE`` accepted). Without one, an
embedded installation derives a key from SECRET_KEY, which itself lives in the state directory.
"""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@lru_cache(maxsize=1)
def _fernet() -> Fernet:
    key = settings.EDGEPROXY_ENCRYPTION_KEY
    if key:
        try:
            return Fernet(key.encode())
        except ValueError:
            raise ImproperlyConfigured(
                "EDGEPROXY_ENCRYPTION_KEY must be a Fernet key (32 url-safe base64-encoded bytes); "
                "make one with: python -c "
                "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            ) from None
    digest = hashlib.sha256(b"edgeproxy-at-rest:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "a stored secret cannot be decrypted: EDGEPROXY_ENCRYPTION_KEY differs from the one it was stored with"
        ) from None
