"""The original's AppProcess as answers show it, plus ``host``, ``cameras``, limits and the operation.

Secret environment values never leave the database in clear: they are shown masked and marked
``secret``. Timestamps are ms since the epoch, like a camera's.
"""

from edgeproxy.contracts.statuses import shown_status
from edgeproxy.contracts.times import ms
from processes import selectors as camera_selectors
from processes.outputs import operation_record
from worker.redaction import MASK


def masked_env(app) -> list[dict]:
    return [{"name": item["name"], "value": MASK, "secret": True} if item.get("secret")
            else {"name": item["name"], "value": item.get("value", "")} for item in app.env_vars or []]


def app_record(app, with_logs: bool = True) -> dict:
    status = shown_status(app.status, app.host.is_online)
    record = {
        "name": app.name,
        "docker_user": app.docker_user,
        "docker_repository": app.docker_repository,
        "docker_version": app.docker_version,
        "env_vars": masked_env(app),
        "arguments": app.arguments or [],
        "port_mappings": app.port_mappings or [],
        "mount": app.mount or [],
        "runtime": app.runtime,
        "container_id": app.container_id,
        "status": status,
        "state": app.state or camera_selectors.empty_state(status),
        "created": ms(app.created),
        "modified": ms(app.modified),
        "upgrade_available": False,
        "newer_version": "",
        # Beyond the original: where it runs, what it reads, its limits and its last operation.
        "host": app.host.name,
        "cameras": app.cameras or [],
        "host_network": app.host_network,
        "cpus": app.cpus,
        "memory_mb": app.memory_mb,
        "desired_state": app.desired_state,
        "operation": operation_record(app.last_operation),
    }
    if with_logs:
        record["logs"] = app.logs or {"stdout": None, "stderr": None}
    return record
