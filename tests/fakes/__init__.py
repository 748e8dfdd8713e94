"""Fakes that run for real: a scripted provider plugin, and (later) a fake OpenAI upstream."""
