"""Which runtime trains a job's model type on a worker.

A model type of the catalogue is trained by its queue's runtime. Any other model type goes to the
default queue (or where its framework_override sends it) and is trained there by the queue's
runtime if that declares it, else by an installed plugin that declares it. A worker started with
``--runtime`` serves every queue with that one plugin.
"""

from __future__ import annotations

from aijobs import routing
from aijobs.model_types import MODEL_TYPES
from aijobs.runtimes.base import Runtime, discover, load_runtime


class RuntimeChoice:
    def __init__(self, override: str | None = None, installed: dict[str, Runtime] | None = None):
        self.override = override
        self._installed = installed  # found on first use: a worker's parent needs no plugin early

    @property
    def installed(self) -> dict[str, Runtime]:
        if self._installed is None:
            self._installed = discover()
        return self._installed

    def _own_types(self) -> dict[str, str]:
        """Model types outside the catalogue -> the plugin that declares them (first by name)."""
        owners: dict[str, str] = {}
        for name, runtime in sorted(self.installed.items()):
            for model_type in runtime.model_types:
                if model_type not in MODEL_TYPES:
                    owners.setdefault(model_type, name)
        return owners

    def runtime_for(self, queue: str, model_type: str) -> str | None:
        """The runtime to train `model_type` on `queue`; None when none here declares it."""
        if self.override:
            return self.override  # it says itself, in the job's error, what it cannot train
        own = routing.QUEUES[queue].runtime
        runtime = self.installed.get(own)
        if model_type in MODEL_TYPES or (runtime is not None and model_type in runtime.model_types):
            return own
        return self._own_types().get(model_type)

    def trains(self, queue: str) -> set[str]:
        """The model types this worker trains on `queue`."""
        if self.override:
            runtime = load_runtime(self.override, self.installed)
            return set(runtime.model_types) if runtime is not None else set()
        own = self.installed.get(routing.QUEUES[queue].runtime)
        return set(own.model_types if own is not None else ()) | set(self._own_types())

    def versions(self, queues: list[str]) -> dict[str, str]:
        """The framework versions of the runtimes serving `queues`: {framework: version} (read
        from the installed packages' metadata: nothing is imported)."""
        names = [self.override] if self.override else [routing.QUEUES[q].runtime for q in queues]
        found: dict[str, str] = {}
        for name in dict.fromkeys(names):
            runtime = load_runtime(name, self.installed)
            if runtime is None or runtime.missing() is not None:
                continue  # preflight refused the queue already; say nothing
            try:
                found[runtime.framework] = runtime.framework_version()
            except Exception:  # a plugin's own: its heartbeat goes on without the version
                continue
        return found

    def declared(self, queues: list[str]) -> list[str]:
        """What a worker serving `queues` registers: the model types it trains, sorted."""
        return sorted(set().union(*(self.trains(q) for q in queues)))

    def refusal(self, queue: str, model_type: str) -> str:
        trained = ", ".join(sorted(self.trains(queue))) or "nothing"
        return (
            f"no runtime on this worker trains model_type {model_type!r} on queue {queue!r} "
            f"(it trains: {trained}); install or name (--runtime module:Class) a runtime plugin "
            "that declares it"
        )
