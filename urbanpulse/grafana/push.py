"""Push the boards and their data source to a running Grafana over its HTTP API, idempotently.

Everything is addressed by a fixed uid, so a second push updates in place: the data source is
created or updated, the folder created if missing, each board saved with ``overwrite``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError

from urbanpulse.grafana.provisioning import FOLDER_TITLE, FOLDER_UID

log = logging.getLogger(__name__)
NOT_FOUND = 404


@dataclass
class PushReport:
    datasources: dict[str, str] = field(default_factory=dict)  # uid -> "created" or "updated"
    folder: str = ""  # "created" or "kept"
    dashboards: list[str] = field(default_factory=list)  # urls Grafana answered

    def text(self) -> str:
        return "\n".join(
            [
                *(f"data source {uid}: {state}" for uid, state in self.datasources.items()),
                f"folder {FOLDER_UID}: {self.folder}",
                *(f"dashboard {url}" for url in self.dashboards),
            ]
        )


def push(
    api: GrafanaApi, dashboards: dict[str, dict[str, Any]], sources: list[dict[str, Any]]
) -> PushReport:
    """Create or update ``sources`` (each with its ``uid``), the folder and ``dashboards``."""
    report = PushReport()
    for source in sources:
        uid = source["uid"]
        if _exists(partial(api.datasource.get_datasource_by_uid, uid)):
            api.datasource.update_datasource_by_uid(uid, source)
            report.datasources[uid] = "updated"
        else:
            api.datasource.create_datasource(source)
            report.datasources[uid] = "created"
    if _exists(lambda: api.folder.get_folder(FOLDER_UID)):
        report.folder = "kept"
    else:
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        report.folder = "created"
    for uid, model in dashboards.items():
        answer = api.dashboard.update_dashboard(
            {
                "dashboard": {**model, "id": None},
                "folderUid": FOLDER_UID,
                "overwrite": True,
                "message": "urbanpulse grafana push",
            }
        )
        url = answer.get("url", uid) if isinstance(answer, dict) else uid
        log.info("pushed dashboard %s (%s)", uid, url)
        report.dashboards.append(str(url))
    return report


def _exists(get: Callable[[], object]) -> bool:
    """Whether ``get`` finds the object (Grafana answers 404 when it does not)."""
    try:
        get()
    except GrafanaClientError as exc:
        if exc.status_code == NOT_FOUND:
            return False
        raise
    return True
