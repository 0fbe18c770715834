"""A test-only stage that kills its worker process once, to exercise Ray's task retry."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.document import Document
from stages.base import Mapper, Params, register_stage


class CrashOnceParams(Params):
    doc_id: str
    marker: str  # created just before the crash; once present, the stage passes through


@register_stage
class CrashOnce(Mapper):
    """Exits the worker abruptly (no exception, no cleanup) on `doc_id`, the first time."""

    name = "crash_once"
    Params = CrashOnceParams

    def map(self, doc: Document) -> Document:
        marker = Path(self.params.marker)
        if doc.id == self.params.doc_id and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return doc
