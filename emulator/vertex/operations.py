"""Long-running operations (google.longrunning.Operation) of the model, endpoint and batch calls."""

from __future__ import annotations

import re

from .. import serving
from ..common import ok
from ..errors import not_found, rpc_status
from ..store import new_numeric_id

_AIP_TYPE = re.compile(r"google\.cloud\.aiplatform\.v1(?:beta1)?\.")   # in an Any @type URL


class Operations:
    """Creates and serves operations that finish ``lro_seconds`` after they start (not time-scaled)."""

    def _operation(self, parent: str, metadata_type: str, response: dict | None, ver: str = "v1") -> dict:
        now = self.emu.now()
        op = {"name": f"{parent}/operations/{new_numeric_id()}", "ver": ver,
              "metadata": {"@type": f"type.googleapis.com/google.cloud.aiplatform.v1.{metadata_type}",
                           "genericMetadata": {"createTime": serving.rfc3339(now), "updateTime": serving.rfc3339(now)}},
              "done_at": now + self.emu.config.lro_seconds,
              "response": response or {"@type": "type.googleapis.com/google.protobuf.Empty"}}
        self.store.put("operations", op["name"], op)
        return self._op_view(op, ver)

    def _op_view(self, op: dict, ver: str | None = None) -> dict:
        """A google.longrunning.Operation. Its Any payloads name the API version asked (a v1beta1 client unpacks
        v1beta1 types, a v1 client v1 types); ``/ui`` polls get the version the operation was started on."""
        ver = ver if ver in ("v1", "v1beta1") else op.get("ver", "v1")

        def typed(payload: dict) -> dict:
            return {**payload, "@type": _AIP_TYPE.sub(f"google.cloud.aiplatform.{ver}.", payload["@type"])}

        view = {"name": op["name"], "metadata": typed(op["metadata"])}
        if self.emu.now() >= op["done_at"]:
            view["done"] = True
            if op.get("error"):
                view["error"] = rpc_status(op["error"])
            else:
                view["response"] = typed(op["response"])
        return view

    async def get_operation(self, request, ver, name):
        op = self.store.get("operations", name)
        if op is None:
            raise not_found(name)
        return ok(self._op_view(op, ver))
