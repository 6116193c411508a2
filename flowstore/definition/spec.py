"""The workflow spec: what a definition says, as frozen Pydantic models.

Python definitions (`Workflow`, `@flow.node`) and DSL files (YAML, JSON, dicts) both produce a
`WorkflowSpec`; the compiler turns it into a `Graph`. The spec holds only what a definition
declares, in one canonical form (a node's inputs are always a mapping from parameter to source,
whichever shorthand was written), so the same workflow written either way gives equal specs and
the same hash. Callables are import paths (`package.module:function`), never objects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from flowstore.definition.expressions import parse_expression
from flowstore.errors import DefinitionError, Problem

__all__ = [
    "Breaker",
    "Cache",
    "ExecutionConfig",
    "Fallback",
    "Loop",
    "MapOver",
    "MemoryConfig",
    "NodeSpec",
    "Retry",
    "WorkflowSpec",
    "validate_spec",
]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
CALL_PATTERN = (
    r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.<>]*$"  # <locals>: functions defined inside functions
)
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=200)]
CallPath = Annotated[str, Field(pattern=CALL_PATTERN, max_length=500)]
Seconds = Annotated[float, Field(gt=0, le=366 * 24 * 3600)]
# Exception names, as Python code passes them (a list or tuple), kept as a tuple.
Names = Annotated[
    Sequence[Annotated[str, Field(min_length=1, max_length=300)]], AfterValidator(tuple)
]


def _sorted(value: Any) -> Any:
    """Mappings with their keys in order, all the way down: one canonical form to hash."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


Sorted = AfterValidator(_sorted)


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Retry(_Spec):
    """Retry a failing node, with exponential backoff and jitter.

    Attributes:
        attempts: Calls in all, the first included.
        backoff: Seconds before the first retry.
        multiplier: Each later delay is the previous one times this.
        max_delay: The longest delay, in seconds.
        jitter: Spread each delay randomly over [0, delay], so retries of many runs do not
            arrive together.
        retry_on: Names of the exceptions to retry (`TimeoutError`, `httpx.ConnectError`); a
            failure of another type is not retried. Empty means every `Exception` but the
            mistakes `ConfigurationError` and `InvalidValue`, retried only when named.
    """

    attempts: int = Field(default=3, ge=1, le=1000)
    backoff: float = Field(default=1.0, ge=0, le=3600)
    multiplier: float = Field(default=2.0, ge=1, le=100)
    max_delay: float = Field(default=60.0, ge=0, le=24 * 3600)
    jitter: bool = True
    retry_on: Names = ()


class Cache(_Spec):
    """Cache a node's output by its identity, definition version and inputs.

    Attributes:
        ttl: Seconds a cached output is served; None keeps it until cleared.
        key: Import path of a function of the node's inputs that returns the cache key,
            replacing the canonical JSON of the inputs.
    """

    ttl: Seconds | None = None
    key: CallPath | None = None


class Fallback(_Spec):
    """What a node produces when it fails for good: another node's output, a callable, or a value.

    Exactly one of `node`, `call` and `value` is given (`value` may be null).

    Attributes:
        node: An upstream node whose output is used instead.
        call: Import path of a callable called with the node's own arguments.
        value: A JSON value used instead.
        on: Names of the exceptions the fallback covers (as `Retry.retry_on`); empty means
            every `Exception` but the mistakes `ConfigurationError` and `InvalidValue`, which
            fail the node unless named here.
    """

    node: Name | None = None
    call: CallPath | None = None
    value: Annotated[JsonValue, Sorted] = None
    on: Names = ()

    @model_serializer(mode="wrap")
    def _keep_the_choice(self, handler: SerializerFunctionWrapHandler) -> Any:
        # `value: null` is a choice, not a default: keep it when defaults are left out.
        data = handler(self)
        if isinstance(data, dict) and "value" in self.model_fields_set:
            data.setdefault("value", self.value)
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [name for name in ("node", "call", "value") if name in self.model_fields_set]
        # `on` alone is not a choice of output.
        if len(given) != 1:
            raise ValueError(
                "a fallback names exactly one of 'node', 'call' or 'value'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class Breaker(_Spec):
    """A circuit breaker shared by every node that calls the same named dependency.

    Attributes:
        name: The dependency's name; nodes with the same name share one breaker.
        failure_threshold: Consecutive failures that open it.
        reset_after: Seconds it stays open before letting a trial call through.
    """

    name: Annotated[str, Field(min_length=1, max_length=200)]
    failure_threshold: int = Field(default=5, ge=1, le=10_000)
    reset_after: Seconds = 30.0


def _canonical_expression(source: str) -> str:
    try:
        return parse_expression(source).source
    except DefinitionError as error:
        raise ValueError(error.problems[0].message) from None


Condition = Annotated[str, Field(min_length=1, max_length=2000)]


class Loop(_Spec):
    """Go back to an earlier node after this one, while a condition holds.

    Attributes:
        back_to: The node the loop starts at; this node must depend on it.
        while_: Loop again while this expression is true (`while` in the DSL).
        max_iterations: The most times the loop body runs: mandatory, so no loop runs forever.
    """

    model_config = ConfigDict(populate_by_name=True)

    back_to: Name
    while_: Condition = Field(alias="while")
    max_iterations: int = Field(ge=1, le=1_000_000)

    @field_validator("while_")
    @classmethod
    def _condition(cls, source: str) -> str:
        return _canonical_expression(source)


class MapOver(_Spec):
    """Run the node once per item of a list, results in the list's order; a subworkflow
    node runs one child run per item, each durable on its own.

    Attributes:
        over: The workflow input or node whose output is the list.
        item: The parameter that receives each item (of a subworkflow: the child's input of
            that name, or an input of the node bound to this name).
        concurrency: The most items running at once; None means the run's own limit.
    """

    over: Name
    item: Name = "item"
    concurrency: int | None = Field(default=None, ge=1, le=100_000)


class MemoryConfig(_Spec):
    """How a workflow's runs keep conversation memory (`NodeContext.memory`).

    Attributes:
        max_messages: The most messages a thread keeps: appending more deletes the oldest.
            None keeps them all.
        max_message_bytes: The largest content of one message, as JSON; a larger one fails
            the append (and the node) with an error naming the thread.
        message_ttl: Seconds a message is kept; after that it is no longer read, and it is
            deleted. None keeps it.
        clear_after_run: Delete the messages a run wrote when the run ends (scratch memory).
    """

    max_messages: int | None = Field(default=None, ge=1, le=10_000_000)
    max_message_bytes: int = Field(default=256 * 1024, ge=1, le=2 * 1024 * 1024)
    message_ttl: Seconds | None = None
    clear_after_run: bool = False


class ExecutionConfig(_Spec):
    """How a workflow's runs execute.

    Attributes:
        strategy: `parallel` runs every ready node at once (up to `max_concurrency`);
            `sequential` runs one node at a time, in a stable topological order.
        max_concurrency: The most nodes of one run executing at once.
        durability: `sync` commits a node's output before its dependents start; `batched`
            lets them start first and commits in order shortly after.
        node_timeout: Default seconds a node may take; a node's own `timeout` wins.
        run_timeout: Seconds a whole run may take.
        debug: Capture every node's inputs, outputs and timings, and log verbosely.
        secret_fields: Names of fields (in the run's inputs, a node's inputs or outputs) whose
            values are never stored with an error: they are replaced in error reports,
            stored errors and debug logs (see `flowstore.runtime.redaction`).
        memory: Limits of the conversation memory the run's nodes write.
        queue: The queue the workflow's submitted runs wait their turn in (a queue stored
            with `Engine(queues=...)` or `flowstore queues set`); a submission may name
            another.
        queue_key: The workflow input whose value is each run's key in its queue (a per-key
            limit counts the runs of one key); a submission may give the key itself.
    """

    strategy: Literal["sequential", "parallel"] = "parallel"
    max_concurrency: int | None = Field(default=None, ge=1, le=100_000)
    durability: Literal["sync", "batched"] = "sync"
    node_timeout: Seconds | None = None
    run_timeout: Seconds | None = None
    debug: bool = False
    secret_fields: Names = ()
    memory: MemoryConfig = MemoryConfig()
    queue: Name | None = None
    queue_key: Name | None = None


def _inputs_mapping(value: Any) -> Any:
    # `inputs: [a, b]` is shorthand for `inputs: {a: a, b: b}`.
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return {item: item for item in value}
    return value


class NodeSpec(_Spec):
    """One node of a workflow.

    A node does one of three things: calls a function (`call`), runs a registered custom node
    type (`type`, with `config`), or runs another workflow as a child run (`workflow`).

    Attributes:
        name: Unique in the workflow; other nodes refer to its output by this name.
        call: Import path of the function, `package.module:function`.
        type: A custom node type registered by name.
        config: Settings for the custom node type.
        workflow: The name of a workflow to run as a child run.
        inputs: Parameter name to source: a workflow input or a node, whose output it receives.
        after: Nodes that must finish first, without passing data.
        when: Run only if this expression is true; otherwise the node is skipped.
        routes: A router: the node returns the name (or names) of the routes to follow; the
            others are skipped.
        join: With several upstream nodes: `all` runs when all succeeded, `any` when at least
            one did, `all_done` when all ended, however they ended.
        loop: Go back to an earlier node while a condition holds.
        map: Run once per item of a list.
        retry: Retry policy.
        timeout: Seconds one call may take.
        cache: Cache policy.
        fallback: What to produce when the node fails for good.
        breaker: Circuit breaker of the dependency the node calls.
    """

    name: Name
    call: CallPath | None = None
    type: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.-]*$", max_length=200)] | None = None
    config: Annotated[dict[str, JsonValue], Sorted] = Field(default_factory=dict)
    workflow: Name | None = None
    inputs: Annotated[
        dict[Name, Name],
        BeforeValidator(_inputs_mapping, json_schema_input_type=dict[Name, Name] | list[Name]),
        Sorted,
    ] = Field(default_factory=dict)
    after: tuple[Name, ...] = ()
    when: Condition | None = None
    routes: tuple[Name, ...] | None = None
    join: Literal["all", "any", "all_done"] = "all"
    loop: Loop | None = None
    map: MapOver | None = None
    retry: Retry | None = None
    timeout: Seconds | None = None
    cache: Cache | None = None
    fallback: Fallback | None = None
    breaker: Breaker | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Self:
        actions = [name for name in ("call", "type", "workflow") if getattr(self, name)]
        if len(actions) != 1:
            raise ValueError(
                "a node has exactly one of 'call', 'type' or 'workflow'"
                + (f" (got {', '.join(actions)})" if actions else "")
            )
        if self.config and not self.type:
            raise ValueError("'config' is for custom node types ('type')")
        return self

    @field_validator("when")
    @classmethod
    def _condition(cls, source: str | None) -> str | None:
        return None if source is None else _canonical_expression(source)

    @field_validator("after", "routes")
    @classmethod
    def _no_repeats(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if names is not None and len(set(names)) != len(names):
            repeated = sorted({name for name in names if names.count(name) > 1})
            raise ValueError(f"names repeated: {', '.join(repeated)}")
        return names


class WorkflowSpec(_Spec):
    """A whole workflow definition.

    Attributes:
        name: The workflow's name, unique among the workflows an engine runs.
        version: The author's version label; the graph hash tells real changes apart.
        description: What the workflow does.
        inputs: Workflow input name to its type: `str`, `int`, `float`, `bool`, `list`,
            `dict`, `any`, or the import path of a Pydantic model.
        input_model: Import path of one Pydantic model that validates all inputs at once.
        nodes: The nodes, in the order written.
        output: The node whose output is the run's output; by default the single node that
            nothing depends on.
        config: How runs execute.
        resources: Names of shared resources (an HTTP client, a connection pool) the engine
            provides; a node parameter of that name (or bound to it in `inputs`) receives it.
        signals: Signal name to the import path of the Pydantic model its payload must match:
            a payload that does not is refused when it is sent, and never stored.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.-]*$", max_length=200)]
    version: Annotated[str, Field(min_length=1, max_length=100)] = "1"
    description: str | None = None
    inputs: Annotated[dict[Name, Annotated[str, Field(min_length=1, max_length=500)]], Sorted] = (
        Field(default_factory=dict)
    )
    input_model: CallPath | None = None
    nodes: tuple[NodeSpec, ...] = Field(min_length=1)
    output: Name | None = None
    config: ExecutionConfig = Field(default_factory=ExecutionConfig)
    resources: tuple[Name, ...] = ()
    signals: Annotated[dict[Name, CallPath], Sorted] = Field(default_factory=dict)

    @field_validator("resources")
    @classmethod
    def _distinct_resources(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(names)) != len(names):
            raise ValueError("a resource is listed twice")
        return names

    def canonical_json(self) -> str:
        """The spec as canonical JSON: fields in declared order, mappings sorted, no defaults.

        Written by Pydantic in one pass, without an intermediate copy of the spec: a
        100,000-node workflow hashes without doubling its memory.
        """
        return self.model_dump_json(by_alias=True, exclude_defaults=True)

    def digest(self) -> str:
        """The stable hash of the spec: the same definition gives it in any process."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def validate_spec(
    data: Any,
    *,
    locate: Callable[[tuple[str | int, ...]], tuple[int, int] | None] | None = None,
    file: str | None = None,
) -> WorkflowSpec:
    """Validate a definition (a dict from Python, YAML or JSON) into a `WorkflowSpec`.

    Raises:
        DefinitionError: With every problem Pydantic found, each with its workflow, node,
            field and, for files, line and column.
    """
    if not isinstance(data, Mapping):
        kind = "null" if data is None else type(data).__name__
        position = locate(()) if locate is not None else None
        raise DefinitionError(
            [
                Problem(
                    f"a workflow definition is a mapping (name, nodes, ...), not {kind}",
                    file=file,
                    line=position[0] if position else None,
                    column=position[1] if position else None,
                )
            ]
        )
    try:
        return WorkflowSpec.model_validate(data)
    except ValidationError as error:
        raise DefinitionError(_problems(error, data, locate, file)) from None


def _problems(
    error: ValidationError,
    data: Mapping[str, Any],
    locate: Callable[[tuple[str | int, ...]], tuple[int, int] | None] | None,
    file: str | None,
) -> list[Problem]:
    workflow = data.get("name") if isinstance(data.get("name"), str) else None
    details = error.errors()
    node_errors = any(len(d["loc"]) >= 2 and d["loc"][0] == "nodes" for d in details)
    problems = []
    for detail in details:
        location = tuple(part for part in detail["loc"] if not _is_tag(part))
        if detail["type"] == "too_short" and location == ("nodes",) and node_errors:
            continue  # Pydantic's echo of the nodes that failed: they are reported one by one
        node = None
        rest: tuple[str | int, ...] = location
        if location[:1] == ("nodes",) and len(location) >= 2 and isinstance(location[1], int):
            nodes = data.get("nodes")
            if isinstance(nodes, list | tuple) and location[1] < len(nodes):
                entry = nodes[location[1]]
                if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
                    node = entry["name"]
            rest = location[2:] if node is not None else location
        position = None
        if locate is not None:
            for end in range(len(location), -1, -1):
                position = locate(location[:end])
                if position is not None:
                    break
        problems.append(
            Problem(
                _message(detail),
                workflow=workflow,
                node=node,
                field=".".join(str(part) for part in rest) or None,
                file=file,
                line=position[0] if position else None,
                column=position[1] if position else None,
            )
        )
    return problems


def _is_tag(part: str | int) -> bool:
    # Pydantic names union members and validators in locations: "function-after[...]", "str".
    return isinstance(part, str) and ("[" in part or part in {"str", "list[str]", "dict[str,str]"})


def _message(detail: Any) -> str:
    kind = detail["type"]
    last = detail["loc"][-1] if detail["loc"] else None
    if kind == "missing":
        return f"missing field {last!r}"
    if kind == "extra_forbidden":
        return f"unknown field {last!r}"
    message = str(detail["msg"])
    return message.removeprefix("Value error, ")
