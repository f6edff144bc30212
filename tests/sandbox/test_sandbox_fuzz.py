"""Malformed requests never get a 500, a traceback or a hang."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sandbox_helpers import JENIUS_HEADERS, TOKENOPS_HEADERS

from videogen.providers.signing import Credentials, sign
from videogen.sandbox import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY, serve_in_thread

KEYS = st.sampled_from(
    [
        "req_key",
        "prompt",
        "frames",
        "image_urls",
        "binary_data_base64",
        "aspect_ratio",
        "seed",
        "task_id",
        "req_json",
        "image_url",
        "audio_url",
        "model",
        "content",
        "scene",
        "image_urls",
        "seconds",
        "size",
        "x",
    ]
)
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "jimeng_t2v_v30",
            "jimeng_realman_avatar_picture_omni_v15",
            "121",
            "jimeng-video-3.0-720P",
            "OmniHuman_1.5",
            "celebrity",
            "http://x/a.png",
            "jimeng_realman_avatar_object_detection",
        ]
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
BODIES = st.one_of(
    st.dictionaries(KEYS, VALUES, max_size=6).map(lambda d: json.dumps(d).encode()),
    VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
)
ACTIONS = st.sampled_from(
    [
        "CVSync2AsyncSubmitTask",
        "CVSync2AsyncGetResult",
        "CVSubmitTask",
        "CVGetResult",
        "CVProcess",
        "CVCancelTask",
        "Nope",
    ]
)


def test_junk_bodies_at_every_endpoint_get_a_clean_4xx_or_2xx_answer() -> None:
    """Signed and unsigned junk at Volcengine, junk at TokenOps and Jenius: never 5xx."""
    with serve_in_thread() as sb, httpx2.Client(timeout=10) as client:
        host = urlsplit(sb.url).netloc

        @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            body=BODIES,
            action=ACTIONS,
            target=st.integers(0, 5),
            task=st.text("abc0123-_%", max_size=8),
        )
        def check(body: bytes, action: str, target: int, task: str) -> None:
            version = "2024-06-06" if action == "CVCancelTask" else "2022-08-31"
            query = {"Action": action, "Version": version}
            answer: Any
            if target <= 1:
                headers = (
                    sign(
                        Credentials(SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY),
                        method="POST",
                        host=host,
                        path="/",
                        query=query,
                        body=body,
                        scheme="http",
                    )
                    if target == 0
                    else {}
                )
                answer = client.post(sb.url + "/", params=query, content=body, headers=headers)
            elif target == 2:
                answer = client.post(
                    f"{sb.tokenops_url}/videos", content=body, headers=TOKENOPS_HEADERS
                )
            elif target == 3:
                answer = client.post(
                    f"{sb.tokenops_url}/omnihuman/subject/detection",
                    content=body,
                    headers=TOKENOPS_HEADERS,
                )
            elif target == 4:
                answer = client.post(
                    f"{sb.jenius_url}/plugins/video/tasks", content=body, headers=JENIUS_HEADERS
                )
            else:
                answer = client.get(
                    f"{sb.tokenops_url}/videos/{task.replace('/', '')}x", headers=TOKENOPS_HEADERS
                )
            assert answer.status_code < 500, answer.text
            assert isinstance(answer.json(), dict)
            assert "Traceback" not in answer.text

        check()
