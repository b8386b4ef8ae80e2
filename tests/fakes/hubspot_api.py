"""A local fake of HubSpot's CRM API (v3 objects, search and properties; v4 default associations),
strict where the real one is: bearer token, unique properties, one contact per email (409 with
"Existing ID"), association type ids that must fit the two object types."""
from __future__ import annotations

import itertools
from collections import Counter

from aiohttp import web

from crm.sync.hubspot import ASSOCIATION


class FakeHubSpot:
    def __init__(self, token: str = "pat-test") -> None:
        self.token = token
        self.objects: dict[str, dict[str, dict]] = {t: {} for t in ("companies", "contacts", "deals", "notes", "tasks")}
        self.unique: dict[str, set[str]] = {t: set() for t in self.objects}
        self.assoc: set[tuple[str, str, str, str]] = set()  # (from type, from id, to type, to id)
        self.calls: Counter = Counter()
        self.fail_next: list[tuple[str, int, dict]] = []  # (path prefix, status, headers): fail the next matching request
        self._ids = itertools.count(1001)

    def type_of(self, oid: str) -> str | None:
        return next((t for t, objs in self.objects.items() if oid in objs), None)

    def app(self) -> web.Application:
        @web.middleware
        async def guard(request: web.Request, handler):
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return web.json_response({"status": "error", "category": "INVALID_AUTHENTICATION"}, status=401)
            for i, (prefix, status, headers) in enumerate(self.fail_next):
                if request.path.startswith(prefix):
                    del self.fail_next[i]
                    return web.json_response({"status": "error", "message": "injected"}, status=status, headers=headers)
            self.calls[f"{request.method} {request.match_info.route.resource.canonical}"] += 1
            return await handler(request)

        app = web.Application(middlewares=[guard])
        app.add_routes([web.post("/crm/v3/properties/{obj}", self.property), web.post("/crm/v3/objects/{obj}/search", self.search),
                        web.post("/crm/v3/objects/{obj}", self.create), web.patch("/crm/v3/objects/{obj}/{id}", self.update),
                        web.get("/crm/v3/objects/{obj}/{id}", self.get),
                        web.put("/crm/v4/objects/{obj}/{id}/associations/default/{to}/{to_id}", self.associate)])
        return app

    async def property(self, request: web.Request) -> web.Response:
        body, obj = await request.json(), request.match_info["obj"]
        if body["name"] in self.unique[obj]:
            return web.json_response({"status": "error", "message": f"Property {body['name']} already exists"}, status=409)
        if body.get("hasUniqueValue"):
            self.unique[obj].add(body["name"])
        return web.json_response({"name": body["name"]}, status=201)

    async def create(self, request: web.Request) -> web.Response:
        body, obj = await request.json(), request.match_info["obj"]
        props = body.get("properties") or {}
        for name in self.unique[obj]:
            if props.get(name) and any(o["properties"].get(name) == props[name] for o in self.objects[obj].values()):
                return web.json_response({"status": "error", "message": f"{name} must be unique"}, status=409)
        if obj == "contacts" and props.get("email"):
            same = next((i for i, o in self.objects[obj].items() if o["properties"].get("email") == props["email"]), None)
            if same:
                return web.json_response({"status": "error", "message": f"Contact already exists. Existing ID: {same}"}, status=409)
        links = []
        for a in body.get("associations") or []:
            to_id = str(a["to"]["id"])
            to_obj = self.type_of(to_id)
            type_id = a["types"][0]["associationTypeId"]
            if to_obj is None or ASSOCIATION.get((obj, to_obj)) != type_id:
                return web.json_response({"status": "error", "message": f"bad association {obj}->{to_obj} type {type_id}"}, status=400)
            links.append((to_obj, to_id))
        oid = str(next(self._ids))
        self.objects[obj][oid] = {"id": oid, "properties": dict(props)}
        for to_obj, to_id in links:
            self._link(obj, oid, to_obj, to_id)
        return web.json_response({"id": oid, "properties": props}, status=201)

    async def update(self, request: web.Request) -> web.Response:
        obj, oid = request.match_info["obj"], request.match_info["id"]
        if oid not in self.objects[obj]:
            return web.json_response({"status": "error", "message": "not found"}, status=404)
        self.objects[obj][oid]["properties"].update((await request.json()).get("properties") or {})
        return web.json_response(self.objects[obj][oid])

    async def get(self, request: web.Request) -> web.Response:
        o = self.objects[request.match_info["obj"]].get(request.match_info["id"])
        return web.json_response(o) if o else web.json_response({"status": "error"}, status=404)

    async def search(self, request: web.Request) -> web.Response:
        body, obj = await request.json(), request.match_info["obj"]
        f = body["filterGroups"][0]["filters"][0]
        hits = [o for o in self.objects[obj].values() if f["operator"] == "EQ" and o["properties"].get(f["propertyName"]) == f["value"]]
        return web.json_response({"total": len(hits), "results": hits[: body.get("limit", 10)]})

    async def associate(self, request: web.Request) -> web.Response:
        m = request.match_info
        if m["id"] not in self.objects[m["obj"]] or m["to_id"] not in self.objects[m["to"]]:
            return web.json_response({"status": "error", "message": "not found"}, status=404)
        self._link(m["obj"], m["id"], m["to"], m["to_id"])
        return web.json_response({"status": "COMPLETE"})

    def _link(self, a: str, aid: str, b: str, bid: str) -> None:
        self.assoc |= {(a, aid, b, bid), (b, bid, a, aid)}

    # for assertions -----------------------------------------------------------------------------
    def by_copilot_id(self, obj: str, key: str) -> list[dict]:
        return [o for o in self.objects[obj].values() if o["properties"].get("copilot_id") == key]

    def linked(self, obj: str, oid: str, to: str) -> set[str]:
        return {bid for a, aid, b, bid in self.assoc if a == obj and aid == oid and b == to}
