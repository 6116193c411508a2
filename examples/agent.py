"""A conversational agent: a loop of a model that streams tokens and the tools it calls.

    flowstore run examples.agent:flow \
        --input '{"conversation": "ana", "question": "What is the weather in Paris?"}'
    flowstore runs tail RUN          # the tokens as they come, from another terminal
    flowstore memory show ana        # the conversation, each turn once
    flowstore memory entities        # what the agent remembers of its users

The model is a deterministic local stand-in that streams its reply word by word (no hosted
model is needed): asked about the weather or the time in a city, it first calls a tool, then
answers from the tool's result. Every turn goes to the conversation thread with the success of
the node that wrote it, so a run killed mid-stream and resumed (`flowstore resume RUN
examples.agent:flow`) holds each turn exactly once: the interrupted model call streams again
from its first token, under a new attempt number.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator

from flowstore import NodeContext, Workflow

TOKEN_SECONDS = float(os.environ.get("FLOWSTORE_AGENT_TOKEN_SECONDS", "0.03"))
"""How long the stand-in model takes per token."""

TOOLS = {
    "weather": {"paris": "18 C and clear", "oslo": "-2 C and snowing", "lima": "22 C, cloudy"},
    "time": {"paris": "14:05", "oslo": "14:05", "lima": "08:05"},
}

flow = Workflow(
    "agent", version="1", description="Answer with a streaming model and tools", output="answer"
)


@flow.node
async def listen(conversation: str, question: str, ctx: NodeContext) -> str:
    """The user's turn, into the conversation; what we know of the user, into entities."""
    await ctx.memory.thread(conversation).append("user", question)
    await ctx.memory.entities("users").upsert(conversation, {"last_question": question})
    return question


@flow.node
async def model(listen: str, conversation: str, ctx: NodeContext) -> AsyncIterator[str]:
    """The model's turn: a tool call or the answer, streamed token by token."""
    history = await ctx.memory.thread(conversation).window(max_tokens=4_000)
    reply = think([(message.role, str(message.content)) for message in history])
    for token in re.findall(r"\S+\s*", reply):
        await asyncio.sleep(TOKEN_SECONDS)
        yield token
    await ctx.memory.thread(conversation).append("assistant", reply)


@flow.node(loop={"back_to": "model", "while": "tool != ''", "max_iterations": 4})
async def tool(model: str, conversation: str, ctx: NodeContext) -> str:
    """Run the tool the model called, if it called one; '' ends the loop."""
    call = re.fullmatch(r"CALL (\w+)\((\w+)\)", model.strip())
    if call is None:
        return ""
    name, city = call.groups()
    result = TOOLS.get(name, {}).get(city.lower(), "unknown")
    await ctx.memory.thread(conversation).append("tool", f"{name}({city}) = {result}")
    await ctx.memory.entities("users").upsert(conversation, {"last_city": city})  # merged
    return result


@flow.node
async def answer(tool: str, model: str) -> str:
    """The model's last turn."""
    return model.strip()


def think(history: list[tuple[str, str]]) -> str:
    """The stand-in model: the same history always gives the same reply."""
    role, last = history[-1] if history else ("user", "")
    if role == "tool":
        call, result = last.split(" = ", 1)
        name, city = re.fullmatch(r"(\w+)\((\w+)\)", call).groups()  # type: ignore[union-attr]
        if name == "weather":
            return f"The weather in {city} is {result} right now, according to the forecast."
        return f"It is {result} in {city} at the moment."
    asked = last.lower()
    city = next((c for c in TOOLS["weather"] if c in asked), None)
    if city is not None and "weather" in asked:
        return f"CALL weather({city.title()})"
    if city is not None and "time" in asked:
        return f"CALL time({city.title()})"
    turns = sum(1 for who, _ in history if who == "user")
    return f"I can tell you the weather or the time in {', '.join(TOOLS['weather'])}. " + (
        f"This is turn {turns} of our conversation."
    )
