"""The `llm` node type: a call to any OpenAI-compatible chat-completions endpoint.

```yaml
- name: answer
  type: llm
  inputs: [question, user]
  config:
    base_url: https://api.openai.com/v1
    model: gpt-4o-mini
    api_key_env: OPENAI_API_KEY        # the key is read when the node runs, never stored
    system: You answer in one sentence.
    prompt: "{question}"               # {name}: a value the node's inputs bind
    thread: "chat-{user}"              # conversation memory: history in, this turn out
    prices: {gpt-4o-mini: {prompt: 0.15, completion: 0.60}}   # per million tokens
```

In Python: `flow.llm("answer", LlmConfig(...), inputs=["question", "user"])`.

The reply streams into the run's events as tokens, and its text is the node's output (or,
with `output: module:Model`, the reply validated by that Pydantic model, as JSON). Every call
is a row of `flowstore_llm_calls`. Retries (429 and 5xx honouring `Retry-After`, timeouts,
cut streams) are the node's retry policy, given a default here; the circuit breaker is shared
by every node and worker that calls the same endpoint. See `docs/how-to/llm.md`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
    model_validator,
)

from flowstore.definition.node_types import COMPILING, node_type
from flowstore.definition.spec import Retry

__all__ = ["Llm", "LlmConfig", "LlmEndpoint", "ModelPrice", "Template", "import_path"]


class ModelPrice(BaseModel):
    """What a model costs, in your currency per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)


@dataclass(frozen=True, slots=True)
class LlmEndpoint:
    """An endpoint given as a resource (`LlmConfig.endpoint`): its base URL and its key,
    which stay in the process and are never stored."""

    base_url: str
    api_key: str | None = None

    def __repr__(self) -> str:
        return f"LlmEndpoint(base_url={self.base_url!r}, api_key={'***' if self.api_key else None})"


class Template:
    """A text with `{name}` fields filled from the node's inputs; nothing else is evaluated
    (no attributes, indexes or conversions: a template is data)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts: list[tuple[str, str | None]] = []
        for literal, name, spec, conversion in string.Formatter().parse(text):
            if name is not None and (not name.isidentifier() or spec or conversion):
                raise ValueError(
                    f"template field {{{name}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}} is not a plain name: write {{name}} "
                    "(and {{ or }} for a brace)"
                )
            self.parts.append((literal, name))

    @property
    def fields(self) -> list[str]:
        """The names the template uses, in order, each once."""
        return list(dict.fromkeys(name for _, name in self.parts if name is not None))

    def render(self, values: dict[str, Any]) -> str:
        """The text with each field replaced by its value (text as it is, the rest as JSON)."""
        out = []
        for literal, name in self.parts:
            out.append(literal)
            if name is not None:
                value = values[name]
                if isinstance(value, BaseModel):
                    value = value.model_dump(mode="json")
                out.append(value if isinstance(value, str) else json.dumps(value, default=str))
        return "".join(out)


def _compiling(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get(COMPILING))


def import_path(path: str, what: str) -> Any:
    """The object at `package.module:name`; ValueError naming `what` when there is none."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"{what} {path!r} is not an import path: write package.module:name")
    try:
        target: Any = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{what} {path!r} cannot be imported: {error}") from None
    return target


class LlmConfig(BaseModel):
    """The settings of an `llm` node.

    Attributes:
        model: The model to ask for.
        base_url: The endpoint's base URL (`…/v1`); without it and without `endpoint`,
            OpenAI's.
        api_key_env: The environment variable holding the API key, read when the node runs;
            None sends no key (a local server).
        endpoint: The name of a resource giving the endpoint instead (an object with
            `base_url` and `api_key`, such as `LlmEndpoint`); the node's inputs must bind it.
        system: The system message (a template).
        prompt: The user message (a template); optional with a `thread`, whose history then
            is the whole prompt.
        thread: The id of a conversation thread (a template): its latest messages (up to
            `history_tokens`) go before the prompt, and the prompt and the reply are appended
            when the node succeeds.
        history_tokens: The most tokens of the thread's history to send.
        temperature: Sampling temperature.
        max_tokens: The most tokens of one reply.
        output: Import path of a Pydantic model the reply must match (structured output).
        output_mode: `json_schema` asks for JSON by the model's schema; `tool` makes the model
            call a tool whose parameters are that schema.
        repair_attempts: Replies that do not match `output` that are sent back to the model
            with the validation errors, before the node fails with `LlmOutputInvalid`.
        tools: Import paths of the functions the model may call (sync or async, typed
            parameters); each call is recorded as a `tool_call` event.
        workflow_tools: Names of workflows the model may call as tools, by their inputs: each
            call is a child run of this run, durable on its own, and the node running again
            takes up the child run of the same call instead of starting another.
        max_tool_rounds: The most rounds of tool calls in one execution.
        cache_ttl: Serve an identical request (same endpoint, model, messages, tools and
            options) from the cache for this many seconds; None does not cache.
        request_timeout: Seconds to wait for the endpoint to connect or send the next bytes.
        breaker_failures: Consecutive failed calls to the endpoint that open its circuit
            breaker, shared by every node and worker that calls it (0: no breaker); a
            refused request (HTTP 4xx) does not count.
        breaker_reset_after: Seconds the breaker stays open before a trial call.
        prices: ModelPrice per model, for the cost of each call.
        extra: More fields for the request body (`top_p`, `seed`, ...).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, max_length=200)
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    api_key_env: str | None = "OPENAI_API_KEY"
    endpoint: str | None = Field(default=None, pattern=r"^[A-Za-z_]\w*$")
    system: str | None = None
    prompt: str | None = None
    thread: str | None = None
    history_tokens: int = Field(default=4_000, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    output: str | None = None
    output_mode: Literal["json_schema", "tool"] = "json_schema"
    repair_attempts: int = Field(default=2, ge=0, le=10)
    tools: tuple[str, ...] = ()
    workflow_tools: tuple[Annotated[str, Field(pattern=r"^[A-Za-z_][\w.-]*$")], ...] = ()
    max_tool_rounds: int = Field(default=8, ge=1, le=100)
    cache_ttl: float | None = Field(default=None, gt=0)
    request_timeout: float = Field(default=60.0, gt=0, le=3600)
    breaker_failures: int = Field(default=5, ge=0, le=10_000)
    breaker_reset_after: float = Field(default=30.0, gt=0, le=24 * 3600)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    extra: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("system", "prompt", "thread")
    @classmethod
    def _template(cls, text: str | None) -> str | None:
        if text is not None:
            Template(text)
        return text

    # Import paths are imported when the workflow compiles (`COMPILING` in the context), so a
    # module can define its tools after the node that names them.
    @field_validator("output")
    @classmethod
    def _output(cls, path: str | None, info: ValidationInfo) -> str | None:
        if path is not None and _compiling(info):
            found = import_path(path, "output model")
            if not (isinstance(found, type) and issubclass(found, BaseModel)):
                raise ValueError(f"output {path!r} is a {type(found).__name__}, not a model")
        return path

    @field_validator("tools")
    @classmethod
    def _tools(cls, paths: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if not _compiling(info):
            return paths
        names = set()
        for path in paths:
            found = import_path(path, "tool")
            if not callable(found):
                raise ValueError(f"tool {path!r} is a {type(found).__name__}, not a function")
            name = getattr(found, "__name__", "")
            if name in names:
                raise ValueError(f"two tools are named {name!r}: the model tells them by name")
            names.add(name)
        return paths

    @model_validator(mode="after")
    def _complete(self) -> LlmConfig:
        if self.prompt is None and self.thread is None:
            raise ValueError("give the node a prompt, a thread, or both")
        if self.base_url is not None and self.endpoint is not None:
            raise ValueError("give base_url or endpoint (a resource), not both")
        if importlib.util.find_spec("httpx") is None:
            raise ValueError("the llm node needs httpx: pip install 'flowstore[llm]'")
        return self

    @property
    def templates(self) -> list[Template]:
        """The templates among the settings."""
        return [Template(text) for text in (self.system, self.prompt, self.thread) if text]

    def price_of(self, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        """A call's cost by the price table; None without a price or without usage."""
        price = self.prices.get(self.model)
        if price is None or (prompt_tokens is None and completion_tokens is None):
            return None
        spent = (prompt_tokens or 0) * price.prompt + (completion_tokens or 0) * price.completion
        return spent / 1_000_000


@node_type("llm")
class Llm:
    """A chat-completions call (see the module's docstring and `LlmConfig`)."""

    Config = LlmConfig

    def policies(self, config: LlmConfig) -> dict[str, Any]:
        """The policies an `llm` node has unless it sets its own: 4 attempts, from 1 s apart
        to 30 s, or what the endpoint's `Retry-After` says; a refused request (HTTP 4xx) or
        a reply that does not match `output` is not retried."""
        return {"retry": Retry(attempts=4, backoff=1.0, multiplier=2.0, max_delay=30.0)}

    def build(self, config: LlmConfig) -> Callable[..., Any]:
        from flowstore.llm.conversation import Conversation

        async def llm(ctx: Any, **values: Any) -> Any:
            return await Conversation(config, ctx, values).run()

        names = [name for template in config.templates for name in template.fields]
        if config.endpoint is not None:
            names.append(config.endpoint)
        keyword = inspect.Parameter.KEYWORD_ONLY
        parameters = [inspect.Parameter("ctx", keyword, annotation="NodeContext")]
        parameters += [inspect.Parameter(name, keyword) for name in dict.fromkeys(names)]
        llm.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        llm.__annotations__ = {"ctx": "NodeContext", "return": "Any"}
        return llm
