"""edgeproxy project package. Kept import-light: ``edgeproxy.client`` is used by AI programs."""
