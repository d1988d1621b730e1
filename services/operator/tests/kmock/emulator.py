"""A Kubernetes API server for the operator's integration test (tests/kmock.rs).

PyPI kmock's KubernetesEmulator serves the Kubernetes REST conventions from memory over real
HTTP (discovery, list, watch streams, get, create, merge and JSON patches, delete with
finalizers). It is made for pytest fixtures; this starts it alone on 127.0.0.1 on a free
port, prints `{"url": ...}` as the first line on stdout, and serves until its stdin closes
(the test holds the pipe, so the server cannot outlive it).

kmock keeps objects as plain JSON and leaves out what the operator relies on; the writes
are therefore done here (the reads, lists and watch streams stay kmock's):

- metadata.resourceVersion on every write (kube's watcher refuses events without one),
  metadata.generation bumped on spec changes (the status reports observedGeneration),
  uid and creationTimestamp;
- PUT (replace), with the optimistic-concurrency 409 on a stale resourceVersion: the Lease
  election renews with it;
- the status subresource: PATCH .../status changes only `status`, and writes to the
  resource leave `status` alone;
- a JSON patch whose `test` fails answers 422, as the real API server does (kube's
  finalizer helper relies on it);
- Secrets' stringData folded into data;
- a 409 AlreadyExists on creating an existing object, and reason NotFound (not kmock's
  "Object Not Found") on a 404: kube's get_opt reads the reason.

Not emulated (the operator does not need them): server-side apply field ownership (an apply
patch is a merge that creates a missing object), label/field selectors, watch bookmarks and
410 Gone (kmock's watch replays the current objects as ADDED and then streams), admission.
"""

import asyncio
import base64
import copy
import datetime
import itertools
import json
import sys
import uuid

import aiohttp.web
import jsonpatch
import kmock

RESOURCES = {
    "switchboard.dev/v1alpha1/tenants": kmock.ResourceInfo(
        kind="Tenant", namespaced=True, subresources={"status"}
    ),
    "v1/secrets": kmock.ResourceInfo(kind="Secret", namespaced=True),
    "events.k8s.io/v1/events": kmock.ResourceInfo(kind="Event", namespaced=True),
    "v1/events": kmock.ResourceInfo(kind="Event", namespaced=True),
    "coordination.k8s.io/v1/leases": kmock.ResourceInfo(kind="Lease", namespaced=True),
}

_versions = itertools.count(1)


def _status(code, reason, message):
    body = {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }
    return aiohttp.web.json_response(body, status=code)


def _now():
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _null_tests_of_missing_paths_pass(obj, patch):
    # The API server's JSON patch takes `{"op": "test", "value": null}` on a missing path as
    # a pass (kube's finalizer helper adds the first finalizer so); python's jsonpatch fails it.
    kept = []
    for op in patch:
        if op.get("op") == "test" and op.get("value") is None:
            try:
                jsonpatch.JsonPointer(op["path"]).resolve(obj)
            except jsonpatch.JsonPointerException:
                continue
        kept.append(op)
    return kept


def _spec_of(obj):
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Emulator(kmock.KubernetesEmulator):
    async def _render_error(self, exc):
        # kmock names its 404s "Object Not Found" and the like; the API server says
        # "NotFound", which is what kube's get_opt turns into None.
        if isinstance(exc, kmock.KubernetesNotFoundError):
            return _status(404, "NotFound", exc.message or "not found")
        return await super()._render_error(exc)

    async def _handle(self, request):
        writes = ("POST", "PUT", "PATCH", "DELETE")
        if request.resource is None or request.method.value not in writes:
            # Reads: kmock's list, watch and get over the objects written below.
            return await super()._handle(request)
        async with self._lock:
            return await self._write(request)

    async def _publish(self, request, type_, raw):
        await self._buses[request.resource].put({"type": type_, "object": raw})

    async def _write(self, request):
        method = request.method.value
        data = request.data
        if method == "POST":
            if request.name is not None or not isinstance(data, dict):
                return _status(405, "MethodNotAllowed", "POST creates in a collection")
            name = data.get("metadata", {}).get("name")
            key = (request.resource, request.namespace, name)
            if key in self._objects and not self._objects[key].deleted:
                return _status(409, "AlreadyExists", f"{request.resource.plural} {name!r} already exists")
            return await self._create(request, key, data)

        key = (request.resource, request.namespace, request.name)
        exists = key in self._objects and not self._objects[key].deleted
        content_type = request.headers.get("Content-Type", "")
        if not exists:
            if method == "PATCH" and "apply-patch" in content_type and isinstance(data, dict):
                return await self._create(request, key, data)
            return _status(404, "NotFound", f"{request.resource.plural} {request.name!r} not found")
        current = copy.deepcopy(self._objects[key].raw)
        meta = current.setdefault("metadata", {})

        if method == "DELETE":
            if meta.get("finalizers"):
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = _now()
                    meta["resourceVersion"] = str(next(_versions))
                    self._objects[key].create(current)
                    await self._publish(request, "MODIFIED", current)
                return aiohttp.web.json_response(current)
            self._objects[key].delete()
            await self._publish(request, "DELETED", current)
            return aiohttp.web.json_response(current)

        if method == "PUT":
            new = copy.deepcopy(data)
            sent = new.get("metadata", {}).get("resourceVersion")
            if sent and sent != meta.get("resourceVersion"):
                return _status(409, "Conflict", "the object has been modified; apply your changes to the latest version")
        else:
            try:
                if isinstance(data, list):
                    new = jsonpatch.apply_patch(current, _null_tests_of_missing_paths_pass(current, data), in_place=False)
                else:
                    new = kmock.Object(current)
                    new.patch(data)
                    new = copy.deepcopy(new.raw)
            except jsonpatch.JsonPatchTestFailed as e:
                return _status(422, "Invalid", f"the JSON patch's test failed: {e}")
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                return _status(422, "Invalid", f"the JSON patch does not apply: {e}")
        if isinstance(new.get("stringData"), dict):
            self._fold_string_data(new)

        # The status subresource: each side changes only its own part.
        if request.subresource == "status":
            status = new.get("status")
            new = current
            new["status"] = status
        elif "status" in current or "status" in new:
            if request.resource.plural == "tenants":
                new["status"] = current.get("status")
                if new["status"] is None:
                    del new["status"]
        new_meta = new.setdefault("metadata", {})
        for k in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp"):
            if k in meta:
                new_meta[k] = meta[k]
        generation = meta.get("generation", 1)
        if _spec_of(new) != _spec_of(current):
            generation += 1
        new_meta["generation"] = generation
        new_meta["resourceVersion"] = str(next(_versions))
        self._objects[key].create(new)
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            # The last finalizer is gone: the object goes.
            self._objects[key].delete()
            await self._publish(request, "DELETED", new)
        else:
            await self._publish(request, "MODIFIED", new)
        return aiohttp.web.json_response(new)

    @staticmethod
    def _fold_string_data(obj):
        data = obj.setdefault("data", {}) or {}
        for k, v in obj.pop("stringData").items():
            data[k] = base64.b64encode(v.encode()).decode()
        obj["data"] = data

    async def _create(self, request, key, data):
        obj = copy.deepcopy(data)
        if isinstance(obj.get("stringData"), dict):
            self._fold_string_data(obj)
        meta = obj.setdefault("metadata", {})
        if request.namespace is not None:
            meta["namespace"] = request.namespace
        meta["name"] = key[2]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        meta["resourceVersion"] = str(next(_versions))
        if request.resource.plural == "tenants":
            obj.pop("status", None)
        if key in self._objects:
            self._objects[key].create(obj)
        else:
            self._objects[key] = obj
        await self._publish(request, "ADDED", obj)
        return aiohttp.web.json_response(obj, status=201)


async def main():
    async with Emulator() as emulator, kmock.Server(emulator, host="127.0.0.1") as server:
        for name, info in RESOURCES.items():
            emulator.resources[name] = info
        print(json.dumps({"url": str(server.url).rstrip("/")}), flush=True)
        # Serve until the test closes stdin (or goes away).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
