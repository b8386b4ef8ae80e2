"""The prompts (*.md) and the fixed messages (messages.toml): a package so that a wheel carries them."""
