"""The `llm` node: OpenAI-compatible chat with streaming, memory, tools, structured output,
retries, a shared circuit breaker, a cache, and usage in SQL (the `llm` extra).

```python
from flowstore import LlmConfig

flow.llm("answer", LlmConfig(model="gpt-4o-mini", prompt="{question}"), inputs=["question"])
```
"""

from __future__ import annotations

from flowstore.llm.node import Llm, LlmConfig, LlmEndpoint, ModelPrice

__all__ = ["Llm", "LlmConfig", "LlmEndpoint", "ModelPrice"]
