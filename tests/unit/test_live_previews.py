"""The channel core's previews (connectors/live.py): the newest text only, one pump per message, at most one update per
interval, the reply last, and a platform's refusal that stops the previews but never the answer."""
import asyncio
import logging
import threading

from connectors.live import Previews
from tests.polling import until

log = logging.getLogger("test.live")


class Platform:
    """A card API that takes `delay` seconds per update and records what each card showed, and when."""

    def __init__(self, delay: float = 0.0, refuse: type[Exception] | None = None) -> None:
        self.delay, self.refuse = delay, refuse
        self.shown: dict[str, list[tuple[float, str]]] = {}
        self.busy = 0
        self.overlapped = False

    async def show(self, preview, text: str) -> bool:
        self.busy += 1
        self.overlapped |= self.busy > 1
        started = asyncio.get_running_loop().time()
        try:
            await asyncio.sleep(self.delay)
            if self.refuse:
                raise self.refuse("card template missing")
            self.shown.setdefault(preview.key, []).append((started, text))
            return preview.state != "taken"
        finally:
            self.busy -= 1


async def _writer(previews: Previews, key: str, tokens: int, pause: float, interval: float) -> None:
    """The model's worker thread writing an answer token by token."""
    def write() -> None:
        text = ""
        for i in range(tokens):
            text += f"字{i} "
            previews.offer(key, text, interval, lambda: "chat")
            threading.Event().wait(pause)
    await asyncio.to_thread(write)


async def test_a_fast_model_costs_a_few_updates_and_the_newest_text_is_shown_last():
    platform = Platform(delay=0.01)
    previews = Previews(platform.show, log=log)
    previews.bind(asyncio.get_running_loop())
    loop = asyncio.get_running_loop()
    began = loop.time()
    await _writer(previews, "m1", tokens=200, pause=0.002, interval=0.1)
    await until(lambda: platform.shown["m1"][-1][1].endswith("字199 "), 5, 0.01)  # within an interval of the last token
    shown = platform.shown["m1"]
    texts = [t for _, t in shown]
    assert 2 <= len(texts) <= (loop.time() - began) / 0.1 + 2 and texts[-1].endswith("字199 ")  # not one per token; the last text made it
    assert all(b - a >= 0.1 - 0.005 for (a, _), (b, _) in zip(shown, shown[1:]))  # one update per interval at most
    assert not platform.overlapped  # one pump per message
    assert previews.get("m1").shows == len(texts)
    await until(lambda: not previews.get("m1").pumping, 5, 0.01)  # nothing newer: the pump ends (the next text starts another)
    assert not previews.get("m1").pumping and previews.get("m1").task.done()


async def test_the_reply_waits_out_an_update_in_flight_and_a_later_preview_is_dropped():
    platform = Platform(delay=0.2)
    previews = Previews(platform.show, log=log)
    previews.bind(asyncio.get_running_loop())
    previews.offer("m2", "星图的", 0.05, lambda: "chat")
    await asyncio.sleep(0.05)  # the first update is in flight
    async with previews.closing("m2") as preview:
        assert [t for _, t in platform.shown["m2"]] == ["星图的"] and platform.busy == 0
        assert preview.state == "chat"
    previews.offer("m2", "星图的实施周期", 0.05, lambda: "chat")
    await asyncio.sleep(0.3)
    assert [t for _, t in platform.shown["m2"]] == ["星图的"]
    async with previews.closing("never-previewed") as preview:
        assert preview.state is None and preview.stopped


async def test_a_refused_update_stops_that_message_s_previews_only(caplog):
    class Refused(Exception):
        pass

    refusing = Platform(refuse=Refused)
    previews = Previews(refusing.show, log=log, expected=(Refused,))
    previews.bind(asyncio.get_running_loop())
    previews.offer("m3", "一", 0.01, lambda: "chat")
    await asyncio.sleep(0.1)
    previews.offer("m3", "一二", 0.01, lambda: "chat")
    await asyncio.sleep(0.1)
    entry = previews.get("m3")
    assert entry.failed and not entry.pumping and entry.shows == 0
    assert "card template missing" in caplog.text and "Traceback" not in caplog.text  # the platform's own error: a line
    taken = Platform()
    owned = Previews(taken.show, log=log)
    owned.bind(asyncio.get_running_loop())
    owned.offer("m4", "一", 0.01, lambda: "taken")  # the reply took the card (another process): the pump stops
    await asyncio.sleep(0.05)
    owned.offer("m4", "一二", 0.01, lambda: "taken")
    await asyncio.sleep(0.05)
    assert [t for _, t in taken.shown["m4"]] == ["一"] and owned.get("m4").stopped


async def test_only_the_newest_messages_are_remembered_and_close_stops_every_pump():
    platform = Platform(delay=5)
    previews = Previews(platform.show, log=log, keep=3)
    previews.bind(asyncio.get_running_loop())
    for i in range(5):
        previews.offer(f"m{i}", "星图", 0.5, lambda: "chat")
    await asyncio.sleep(0.05)
    assert len(previews) == 3 and previews.get("m0") is None
    await asyncio.wait_for(previews.aclose(), 2)
    assert platform.busy == 0 and all(previews.get(f"m{i}").task.done() for i in range(2, 5))
