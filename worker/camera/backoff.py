"""Reconnect pacing: capped exponential back-off with jitter, and a cheap reachability probe."""

from __future__ import annotations

import random
import socket


class Backoff:
    """``initial`` doubling per failure up to ``cap``, each delay jittered by +-``jitter`` (fraction)."""

    def __init__(self, initial: float = 0.5, cap: float = 30.0, jitter: float = 0.2, rng: random.Random | None = None):
        self.initial = initial
        self.cap = cap
        self.jitter = jitter
        self.failures = 0
        self._rng = rng or random.Random()

    def reset(self) -> None:
        self.failures = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; counts one more failure."""
        base = min(self.cap, self.initial * (2 ** min(self.failures, 30)))
        self.failures += 1
        spread = base * self.jitter
        return max(0.0, min(self.cap, base + self._rng.uniform(-spread, spread)))


def tcp_reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts a TCP connection on host:port (the RTSP control port)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
