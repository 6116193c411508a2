"""A conversational agent: an `llm` node that streams its reply and calls tools.

    python -m flowstore.llm.testing --port 8700 --token-delay 0.03 \
        --respond examples.agent:think &          # a local stand-in model
    flowstore run examples.agent:flow \
        --input '{"conversation": "ana", "question": "What is the weather in Paris?"}'
    flowstore runs tail RUN          # the tokens as they come, from another terminal
    flowstore memory show ana        # the conversation, each turn once
    flowstore memory entities        # what the agent remembers of its users
    flowstore stats                  # the model calls, their tokens and cost

The model is any OpenAI-compatible endpoint: `FLOWSTORE_AGENT_LLM_URL` (by default the local
stand-in above, whose `think` answers deterministically: asked about the weather or the time
in a city, it first calls a tool, then answers from the tool's result), `FLOWSTORE_AGENT_MODEL`,
and `OPENAI_API_KEY` when the endpoint needs a key. Every turn, the tool calls and their
results included, goes to the conversation thread with the success of the node, so a run
killed mid-stream and resumed (`flowstore resume RUN examples.agent:flow`) holds each turn
exactly once: the interrupted call streams again from its first token, under a new attempt.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flowstore import LlmConfig, ModelPrice, NodeContext, Workflow
from flowstore.llm.testing import FakeReply

CITIES = {
    "paris": ("18 C and clear", "14:05"),
    "oslo": ("-2 C and snowing", "14:05"),
    "lima": ("22 C, cloudy", "08:05"),
}

flow = Workflow(
    "agent", version="2", description="Answer with a streaming model and tools", output="model"
)
flow.llm(
    "model",
    LlmConfig(
        model=os.environ.get("FLOWSTORE_AGENT_MODEL", "stand-in"),
        base_url=os.environ.get("FLOWSTORE_AGENT_LLM_URL", "http://127.0.0.1:8700/v1"),
        api_key_env="OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else None,
        system="You answer questions about the weather and the time, using your tools.",
        prompt="{question}",
        thread="{conversation}",
        tools=("examples.agent:weather", "examples.agent:local_time"),
        prices={"stand-in": ModelPrice(prompt=0.15, completion=0.60)},
    ),
    inputs=["question", "conversation"],
)


@flow.node
async def remember(model: str, conversation: str, question: str, ctx: NodeContext) -> None:
    """What we know of the user, into entities (merged with what was known)."""
    await ctx.memory.entities("users").upsert(
        conversation, {"last_question": question, "last_answer": model}
    )


def weather(city: str) -> str:
    """The weather now in a city."""
    return CITIES.get(city.lower(), ("unknown", ""))[0]


def local_time(city: str) -> str:
    """The local time now in a city."""
    return CITIES.get(city.lower(), ("", "unknown"))[1]


def think(request: dict[str, Any]) -> FakeReply:
    """The stand-in model: the same conversation always gives the same reply."""
    messages = request["messages"]
    last = messages[-1]
    if last["role"] == "tool":
        asked = next(m for m in reversed(messages) if m.get("tool_calls"))
        call = asked["tool_calls"][0]["function"]
        city = json.loads(call["arguments"]).get("city", "?")
        if call["name"] == "weather":
            return FakeReply(
                f"The weather in {city} is {last['content']} right now, according to the forecast."
            )
        return FakeReply(f"It is {last['content']} in {city} at the moment.")
    question = str(last.get("content") or "").lower()
    city = next((name for name in CITIES if name in question), None)
    if city is not None and "weather" in question:
        return FakeReply(tool_calls=(("weather", {"city": city.title()}),))
    if city is not None and "time" in question:
        return FakeReply(tool_calls=(("local_time", {"city": city.title()}),))
    turns = sum(1 for message in messages if message["role"] == "user")
    return FakeReply(
        f"I can tell you the weather or the time in {', '.join(CITIES)}. "
        f"This is turn {turns} of our conversation."
    )
