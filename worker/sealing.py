"""Camera specs sealed to one edge host.

An edge host never reads the database, yet needs each camera's RTSP URL. The control plane seals
the spec with the host's public key (libsodium sealed box): Celery messages and Flower then show
only ciphertext that nothing but that host can open. Each host keeps its private key in its
state directory and reports the public key in its heartbeats.
"""

import base64
import json
import os
from pathlib import Path

from nacl.public import PrivateKey, PublicKey, SealedBox


def load_or_create_key(path: Path) -> PrivateKey:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return PrivateKey(base64.b64decode(path.read_text().strip()))
    except FileNotFoundError:
        pass
    key = PrivateKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # a second worker process of this host won the race
        return PrivateKey(base64.b64decode(path.read_text().strip()))
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(bytes(key)).decode())
    return key


def public_key_text(key: PrivateKey) -> str:
    return base64.b64encode(bytes(key.public_key)).decode()


def seal(public_key_b64: str, payload: dict) -> str:
    box = SealedBox(PublicKey(base64.b64decode(public_key_b64)))
    return base64.b64encode(box.encrypt(json.dumps(payload).encode())).decode()


def unseal(key: PrivateKey, sealed: str) -> dict:
    return json.loads(SealedBox(key).decrypt(base64.b64decode(sealed)).decode())
