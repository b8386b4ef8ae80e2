"""DingTalk's interactive-card APIs (互动卡片高级版 / AI 卡片) for the fake open platform (tests/fakes/dingtalk_api.py).

`POST /v1.0/card/instances/createAndDeliver` (a token, a known template, string-only cardParamMap, an openSpaceId of
`dtv1.card//IM_ROBOT.<userid>` or `dtv1.card//IM_GROUP.<openConversationId>` with the matching delivery model; an
outTrackId that exists already is refused, as DingTalk does), `PUT /v1.0/card/instances` (updateCardData),
`PUT /v1.0/card/streaming` (each update recorded in order) and `POST /v1.0/card/callbacks/register`. The permissions
Card.Instance.Write and Card.Streaming.Write can be withdrawn per app, a template removed, and `fail_cards()` makes
every card call answer an error. `click()` plays a person pressing a card button: the callback goes over the Stream
connection (callbackType STREAM) or to the URL registered for the card's callbackRouteKey (HTTP).
"""
from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

if TYPE_CHECKING:
    from tests.fakes.dingtalk_api import FakeDingTalk

BUILTIN_TEMPLATE = "382e4302-551d-4880-bf29-a30acfab2e71.schema"
CARD_TOPIC = "/v1.0/card/instances/callback"
SPACE = re.compile(r"^dtv1\.card//(?P<type>IM_ROBOT|IM_GROUP)\.(?P<id>.+)$")
INSTANCE, STREAMING = "Card.Instance.Write", "Card.Streaming.Write"


@dataclass
class StreamUpdate:
    key: str
    content: str
    full: bool
    finalize: bool
    error: bool
    at: float


@dataclass
class CardInstance:
    app_key: str
    out_track_id: str
    template: str
    space_type: str  # IM_ROBOT | IM_GROUP
    space_id: str  # the userid (IM_ROBOT) or the openConversationId (IM_GROUP)
    data: dict[str, str]  # cardParamMap as it is now
    callback_type: str
    route_key: str
    created_at: float
    at_users: dict = field(default_factory=dict)
    updates: list[StreamUpdate] = field(default_factory=list)
    puts: list[dict] = field(default_factory=list)  # each updateCardData's cardParamMap

    @property
    def finalized(self) -> bool:
        return bool(self.updates) and self.updates[-1].finalize

    def shown(self, key: str) -> str:
        """What the card shows for `key`: the last streamed content or the data."""
        streamed = [u.content for u in self.updates if u.key == key]
        return self.data.get(key, "") if not streamed or (self.puts and key in self.puts[-1]) else streamed[-1]


class FakeCards:
    def __init__(self, fake: "FakeDingTalk") -> None:
        self.fake = fake
        self.templates = {BUILTIN_TEMPLATE}
        self.instances: dict[str, CardInstance] = {}
        self.refused: list[tuple[str, int, str]] = []  # (path, status, code) of every card call refused
        self.withdrawn: dict[str, set[str]] = {}  # app key -> permissions the app lacks
        self.callbacks: dict[str, tuple[str, str]] = {}  # route key -> (url, apiSecret)
        self.failing: tuple[int, str, int] | None = None  # (status, code, calls left; -1 for ever)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1.0/card/instances/createAndDeliver", self._create), web.put("/v1.0/card/instances", self._update),
                web.put("/v1.0/card/streaming", self._stream), web.post("/v1.0/card/callbacks/register", self._register)]

    # levers -------------------------------------------------------------------------------------------------
    def fail_cards(self, status: int = 500, code: str = "InternalError", times: int = -1) -> None:
        self.failing = (status, code, times)

    def withdraw(self, app_key: str, *permissions: str) -> None:
        self.withdrawn.setdefault(app_key, set()).update(permissions)

    def of(self, app_key: str) -> list[CardInstance]:
        return sorted((c for c in self.instances.values() if c.app_key == app_key), key=lambda c: c.created_at)

    async def wait(self, predicate, timeout: float = 20.0):
        """Until `predicate()` is truthy (its value), or None at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            got = predicate()
            if got or time.monotonic() > deadline:
                return got or None
            self.fake._changed.clear()
            try:
                await asyncio.wait_for(self.fake._changed.wait(), 0.2)
            except asyncio.TimeoutError:
                pass

    async def click(self, card: CardInstance, user: str, action_id: str, *, corp_id: str | None = None, via: str | None = None) -> int:
        """A person presses a button whose 回传请求 names `action_id`: the callback as DingTalk sends it. `via`: the
        gateway's real base URL when the one the copilot registered (its public URL) is not where the test serves it."""
        app = self.fake.apps[card.app_key]
        data = {"outTrackId": card.out_track_id, "corpId": app.corp_id if corp_id is None else corp_id, "userId": user,
                "userIdType": 1, "type": "actionCallback", "spaceType": card.space_type, "spaceId": card.space_id,
                "extension": "{}", "content": json.dumps({"cardPrivateData": {"actionIds": [action_id], "params": {}}})}
        if card.callback_type == "STREAM":
            assert self.fake.stream is not None
            mid = self.fake.stream.push(card.app_key, data, topic=CARD_TOPIC)
            return (await self.fake.stream.acked(mid)).code
        url, _ = self.callbacks[card.route_key]
        if via:
            url = via.rstrip("/") + "/" + url.split("://", 1)[1].split("/", 1)[1]
        async with aiohttp.ClientSession() as s, s.post(url, json=data) as r:
            return r.status

    # the server ----------------------------------------------------------------------------------------------
    async def _check(self, request: web.Request, permission: str):
        """The calling app and the request's body, or the refusal: a bad token, an injected failure, a withdrawn permission."""
        got = self.fake._auth(request)
        if isinstance(got, web.Response):
            return got
        if self.failing is not None and self.failing[2] != 0:
            status, code, left = self.failing
            self.failing = (status, code, left - 1 if left > 0 else left)
            return self._refuse(request, status, code, "卡片服务暂时出错" if status >= 500 else "请求被拒绝")
        if permission in self.withdrawn.get(got.app_key, set()):
            return self._refuse(request, 403, "Forbidden.AccessDenied.AccessTokenPermissionDenied", f"没有调用该接口的权限，权限点 {permission}")
        return got, await self.fake._json(request)

    async def _card(self, request: web.Request, permission: str):
        """The caller's card the body names by outTrackId and the body, or the refusal."""
        got = await self._check(request, permission)
        if isinstance(got, web.Response):
            return got
        app, body = got
        card = self.instances.get(str(body.get("outTrackId") or ""))
        if card is None or card.app_key != app.app_key:
            return self._refuse(request, 400, "cardInstanceNotExist", "卡片实例不存在")
        return card, body

    def _refuse(self, request: web.Request, status: int, code: str, message: str) -> web.Response:
        self.refused.append((request.path, status, code))
        self.fake._changed.set()
        return self.fake._error(status, code, message)

    async def _create(self, request: web.Request) -> web.Response:
        got = await self._check(request, INSTANCE)
        if isinstance(got, web.Response):
            return got
        app, body = got
        otid, template = str(body.get("outTrackId") or ""), str(body.get("cardTemplateId") or "")
        params = (body.get("cardData") or {}).get("cardParamMap")
        space = SPACE.match(str(body.get("openSpaceId") or ""))
        if not otid or not isinstance(params, dict) or space is None:
            return self._refuse(request, 400, "param.invalid", "outTrackId、cardData.cardParamMap 与 openSpaceId 必填")
        if template not in self.templates:
            return self._refuse(request, 400, "templateNotExist", f"卡片模板 {template} 不存在")
        if otid in self.instances:
            return self._refuse(request, 400, "outTrackIdRepeated", "outTrackId 已存在")
        if not all(isinstance(v, str) for v in params.values()):
            return self._refuse(request, 400, "param.cardParamMap", "cardParamMap 的值必须是字符串")
        if space["type"] == "IM_ROBOT":
            model = body.get("imRobotOpenDeliverModel") or {}
            if model.get("spaceType") != "IM_ROBOT":
                return self._refuse(request, 400, "param.imRobotOpenDeliverModel", "单聊投放需要 imRobotOpenDeliverModel.spaceType=IM_ROBOT")
        else:
            model = body.get("imGroupOpenDeliverModel") or {}
            if model.get("robotCode") != app.robot_code:
                return self._refuse(request, 400, "param.robotCode", "群聊投放需要本应用的 robotCode")
        callback = str(body.get("callbackType") or "STREAM")
        if callback == "HTTP" and not body.get("callbackRouteKey"):
            return self._refuse(request, 400, "param.callbackRouteKey", "HTTP 回调需要 callbackRouteKey")
        self.instances[otid] = CardInstance(app.app_key, otid, template, space["type"], space["id"], dict(params), callback,
                                            str(body.get("callbackRouteKey") or ""), time.monotonic(), dict(model.get("atUserIds") or {}))
        self.fake._changed.set()
        return web.json_response({"success": True, "result": {"outTrackId": otid, "deliverResults": [
            {"spaceType": space["type"], "spaceId": space["id"], "success": True, "carrierId": secrets.token_hex(8)}]}})

    async def _update(self, request: web.Request) -> web.Response:
        got = await self._card(request, INSTANCE)
        if isinstance(got, web.Response):
            return got
        card, body = got
        params = (body.get("cardData") or {}).get("cardParamMap") or {}
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            return self._refuse(request, 400, "param.cardParamMap", "cardParamMap 的值必须是字符串")
        by_key = bool((body.get("cardUpdateOptions") or {}).get("updateCardDataByKey"))
        card.data = {**card.data, **params} if by_key else dict(params)
        card.puts.append(dict(params))
        self.fake._changed.set()
        return web.json_response({"success": True, "result": True})

    async def _stream(self, request: web.Request) -> web.Response:
        got = await self._card(request, STREAMING)
        if isinstance(got, web.Response):
            return got
        card, body = got
        if not body.get("guid") or not body.get("key") or not isinstance(body.get("content"), str):
            return self._refuse(request, 400, "param.invalid", "guid、key、content 必填")
        card.updates.append(StreamUpdate(str(body["key"]), body["content"], bool(body.get("isFull")), bool(body.get("isFinalize")),
                                         bool(body.get("isError")), time.monotonic()))
        self.fake._changed.set()
        return web.json_response({"success": True, "result": True})

    async def _register(self, request: web.Request) -> web.Response:
        got = await self._check(request, INSTANCE)
        if isinstance(got, web.Response):
            return got
        _, body = got
        key, url = str(body.get("callbackRouteKey") or ""), str(body.get("callbackUrl") or "")
        if not key or not url.startswith(("http://", "https://")):
            return self._refuse(request, 400, "param.invalid", "callbackRouteKey 与 callbackUrl 必填")
        if key in self.callbacks and not body.get("forceUpdate"):
            return self._refuse(request, 400, "callbackRouteKeyExist", "callbackRouteKey 已注册")
        self.callbacks[key] = (url, str(body.get("apiSecret") or ""))
        return web.json_response({"success": True, "result": {"callbackUrl": url, "apiSecret": body.get("apiSecret")}})
