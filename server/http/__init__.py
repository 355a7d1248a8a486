"""`cllm serve`: the aiohttp app with its OpenAI, Ollama and llama.cpp routes, server-sent events, security,
limits and the dashboard."""
