"""The one HTTP client of training: POST JSON to an OpenAI-compatible `/chat/completions`.

The distillation teacher (`training.teachers.EndpointTeacher`), the LLM
mutator of instruction evolution (`training.evolution.mutators.LLMMutator`)
and its guideline proposer (`training.evolution.proposers.EndpointProposer`)
all talk to a chat model behind such an endpoint (vLLM, TGI, an API). Tests
pass their own `post` with the same signature instead of a server.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable

Post = Callable[[str, dict, dict], dict]  # (url, JSON payload, headers) -> JSON reply


def chat_completions_url(base_url: str) -> str:
    """`http://host:8000/v1` (with or without a trailing slash) -> `http://host:8000/v1/chat/completions`."""
    return base_url.rstrip("/") + "/chat/completions"


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


def post_json(url: str, payload: dict, headers: dict, timeout: float = 120) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST", headers={"content-type": "application/json", **headers}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the user configures the endpoint)
        return json.loads(resp.read())


def json_object(text: str) -> dict:
    """The JSON object in a chat reply, with or without a ```json fence or words around it."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`").split("\n", 1)[1] if "\n" in text else text
    start, end = text.find("{"), text.rfind("}")
    value = json.loads(text[start : end + 1])
    if not isinstance(value, dict):
        raise ValueError("the reply is not a JSON object")
    return value
