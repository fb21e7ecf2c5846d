"""The emulator's "etcd": every API object as its JSON dict, one increasing resourceVersion for
all writes, and the recent history of changes that watches replay."""

from __future__ import annotations

import builtins
import collections
import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str]  # (namespace or "", name)


@dataclass(frozen=True)
class Change:
    """One write, as a watch sees it.  ``obj`` is the object after the write (for DELETED: as
    it was deleted), ``previous`` before it (None for ADDED); both are never modified again."""

    resource_version: int
    type: str  # ADDED | MODIFIED | DELETED
    resource: str
    obj: dict[str, Any]
    previous: dict[str, Any] | None


class Expired(Exception):
    """The asked resourceVersion is older than the kept history (HTTP 410 for a watch)."""

    def __init__(self, asked: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {asked} ({oldest})")


class Store:
    def __init__(self, history: int = 50_000) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._revision = 0
        self._objects: dict[str, dict[Key, dict[str, Any]]] = collections.defaultdict(dict)
        self._history: collections.deque[Change] = collections.deque(maxlen=history)
        # the revision before the oldest change still in _history: a watch from there is complete
        self._history_start = 0

    @property
    def lock(self) -> threading.RLock:
        """Held across several store calls that must see one consistent state."""
        return self._cond  # type: ignore[return-value]

    @property
    def revision(self) -> int:
        with self._cond:
            return self._revision

    @staticmethod
    def key(obj: dict[str, Any]) -> Key:
        meta = obj["metadata"]
        return (meta.get("namespace") or "", meta["name"])

    def _record(
        self, type_: str, resource: str, obj: dict[str, Any], previous: dict[str, Any] | None
    ) -> None:
        if len(self._history) == self._history.maxlen:
            self._history_start = self._history[0].resource_version
        self._history.append(Change(self._revision, type_, resource, obj, previous))
        self._cond.notify_all()

    # -- reads (copies: callers may change them) ---------------------------------------------------
    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._cond:
            obj = self._objects[resource].get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource: str, namespace: str | None = None) -> tuple[int, list[dict[str, Any]]]:
        """(revision, objects sorted by namespace and name); all namespaces when namespace is None."""
        with self._cond:
            items = [
                copy.deepcopy(obj)
                for key, obj in sorted(self._objects[resource].items())
                if namespace is None or key[0] == namespace
            ]
            return self._revision, items

    # -- writes --------------------------------------------------------------------------------------
    def create(self, resource: str, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Store a new object (gets the next resourceVersion); None if the key is taken."""
        with self._cond:
            key = self.key(obj)
            if key in self._objects[resource]:
                return None
            self._revision += 1
            stored = copy.deepcopy(obj)
            stored["metadata"]["resourceVersion"] = str(self._revision)
            self._objects[resource][key] = stored
            self._record("ADDED", resource, stored, None)
            return copy.deepcopy(stored)

    def update(
        self, resource: str, namespace: str, name: str, change: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any] | None:
        """Apply ``change`` to a copy of the object and store it if it differs (next
        resourceVersion, a MODIFIED change).  Returns the current object, None if there is none."""
        with self._cond:
            current = self._objects[resource].get((namespace, name))
            if current is None:
                return None
            updated = copy.deepcopy(current)
            change(updated)
            updated["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            if updated == current:
                return copy.deepcopy(current)
            self._revision += 1
            updated["metadata"]["resourceVersion"] = str(self._revision)
            self._objects[resource][(namespace, name)] = updated
            self._record("MODIFIED", resource, updated, current)
            return copy.deepcopy(updated)

    def delete(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Remove the object (a DELETED change at the next resourceVersion); returns it, or None."""
        with self._cond:
            current = self._objects[resource].pop((namespace, name), None)
            if current is None:
                return None
            self._revision += 1
            final = copy.deepcopy(current)
            final["metadata"]["resourceVersion"] = str(self._revision)
            self._record("DELETED", resource, final, current)
            return copy.deepcopy(final)

    def clear(self) -> None:
        """Forget every object and the history (the revision keeps increasing)."""
        with self._cond:
            self._objects.clear()
            self._history.clear()
            self._history_start = self._revision
            self._cond.notify_all()

    # -- watch -----------------------------------------------------------------------------------
    def changes_after(self, revision: int, timeout: float) -> builtins.list[Change]:
        """Changes with a resourceVersion above ``revision``, waiting up to ``timeout`` seconds for
        the first; raises Expired when history older than that has been dropped."""
        with self._cond:
            if revision < self._history_start:
                raise Expired(revision, self._history_start + 1)
            if self._revision <= revision:
                self._cond.wait(timeout)
            if revision < self._history_start:
                raise Expired(revision, self._history_start + 1)
            newer = []
            for change in reversed(self._history):
                if change.resource_version <= revision:
                    break
                newer.append(change)
            return newer[::-1]

    def wake_watchers(self) -> None:
        with self._cond:
            self._cond.notify_all()
