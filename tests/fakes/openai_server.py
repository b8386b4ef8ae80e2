"""The scripted OpenAI-protocol server lives with the benchmarks (they use it too); tests import it here."""
from tests.fakes.scripted_model import FakeOpenAI, Step, policy, system_text, user_text  # noqa: F401
