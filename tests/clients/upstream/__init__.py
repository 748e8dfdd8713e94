"""The real clients through the whole chain: the fake upstream, streamserver's ``openai`` and
``anthropic`` providers, streamserver's routes, the clients."""
