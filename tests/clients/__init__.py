"""The clients people use, for real, against a running streamserver: the ``openai`` SDK, LangChain's
``ChatOpenAI`` and the Vercel AI SDK's own ``useChat`` machinery in Node. A package, so that its
``conftest`` is ``clients.conftest`` and ``from conftest import ...`` keeps meaning ``tests/conftest.py``."""
