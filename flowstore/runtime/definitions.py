"""The workflows an engine knows: by name (the version registered last) and by graph hash
(every version registered), compiled once, and what it stores of them for clients."""

from __future__ import annotations

from flowstore.definition.builder import Workflow
from flowstore.definition.graph import Graph
from flowstore.definition.validation import prepare_validators
from flowstore.errors import ExecutionError
from flowstore.store.records import StoredGraph

__all__ = ["Definitions"]


class Definitions:
    """An engine's registered workflows."""

    def __init__(self) -> None:
        self.by_name: dict[str, Workflow] = {}
        self.by_hash: dict[str, Graph] = {}

    def register(self, workflow: Workflow) -> Graph:
        """Compile `workflow` (with the workflows it runs as subworkflows, registered first)
        and keep it; return its graph. A version registered later takes the name."""
        for child in workflow.subworkflows:
            self.register(child)
        graph = workflow.compile(
            workflows={name: known.spec for name, known in self.by_name.items()}
        )
        self.by_name[workflow.name] = workflow
        self.by_hash[graph.hash] = graph
        # What every run of it needs, made once here rather than on its first run.
        prepare_validators(graph)
        graph.stored_spec()
        return graph

    def graph_of(self, workflow: Workflow) -> Graph:
        """`workflow`'s graph, registered if it was not."""
        graph = workflow.compile()
        if graph.hash not in self.by_hash:
            self.register(workflow)
        return graph

    def named(self, name: str) -> Graph:
        """The graph of the workflow registered last under `name`.

        Raises:
            ExecutionError: No workflow of that name is registered.
        """
        if name not in self.by_name:
            known = ", ".join(sorted(self.by_name)) or "none"
            raise ExecutionError(
                f"workflow {name!r} is not registered with this engine (registered: {known})"
            )
        return self.by_name[name].compile()

    def stored(self) -> list[StoredGraph]:
        """Every registered version as the store keeps it (`Store.register_graphs`)."""
        return [
            StoredGraph(graph.hash, graph.name, graph.spec.version, graph.stored_spec())
            for graph in self.by_hash.values()
        ]
