"""The OpenAPI document covers every registered /api route, with the models' schemas."""

from __future__ import annotations

from .conftest import Api


async def test_openapi_lists_every_api_route(api: Api) -> None:
    response = await (await api.anon).get("/api/openapi.json")
    assert response.status == 200
    doc = await response.json()
    assert doc["openapi"].startswith("3.1")
    registered = {
        (route.method.lower(), route.resource.canonical)
        for route in api.server.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
    }
    assert len(registered) >= 17
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert registered <= documented, registered - documented

    schemas = doc["components"]["schemas"]
    decision = doc["paths"]["/api/cases/{id}/decision"]["post"]
    body_schema = decision["requestBody"]["content"]["application/json"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in body_schema["oneOf"]} == {
        "ReturnDecisionBody",
        "SupportDecisionBody",
    }
    assert "refund_amount" in schemas["ReturnDecisionBody"]["properties"]
    assert schemas["NewCaseBody"]["additionalProperties"] is False
    params = doc["paths"]["/api/cases"]["get"]["parameters"]
    assert "state" in {p["name"] for p in params}
    refs = str(doc)
    for name in schemas:
        assert f"#/components/schemas/{name}" in refs or name in ("ErrorDetail",)
