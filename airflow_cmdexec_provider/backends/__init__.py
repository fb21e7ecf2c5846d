"""Backends that run a command: local process, Docker container, ECS task. They know nothing of operators."""
