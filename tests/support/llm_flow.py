"""A chat workflow with one `llm` node, for tests that run it in other processes: the fake
model server's URL comes from $FLOWSTORE_TEST_LLM_URL."""

from __future__ import annotations

import os

from flowstore import Retry, Workflow
from flowstore.llm import LlmConfig

flow = Workflow("llm_chat", inputs={"question": "str", "user": "str"}, output="answer")
flow.llm(
    "answer",
    LlmConfig(
        model="fake-1",
        base_url=os.environ.get("FLOWSTORE_TEST_LLM_URL", "http://127.0.0.1:9/v1"),
        api_key_env=None,
        prompt="{question}",
        thread="chat-{user}",
    ),
    inputs=["question", "user"],
    retry=Retry(attempts=3, backoff=0.01, jitter=False),
)
