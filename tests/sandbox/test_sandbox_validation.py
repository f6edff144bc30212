"""Every invalid request is refused with its documented code, envelope and HTTP status."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from sandbox_helpers import JENIUS_HEADERS, TOKENOPS_HEADERS, Volc, png_b64

from videogen.providers.signing import Credentials, sign
from videogen.sandbox import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY, ManualClock, RunningSandbox

pytestmark = pytest.mark.anyio

T2V = {"req_key": "jimeng_t2v_v30", "prompt": "a boat"}
I2V = {"req_key": "jimeng_i2v_first_v30", "prompt": "a boat"}
TAIL = {"req_key": "jimeng_i2v_first_tail_v30", "prompt": "a boat"}
CAM = {
    "req_key": "jimeng_i2v_recamera_v30",
    "prompt": "a boat",
    "template_id": "robo_arm",
    "camera_strength": "weak",
}
URL = "https://example.com/a.png"
GIF = base64.b64encode(b"GIF89a" + b"\x00" * 64).decode()

# (case, body, field named in the message)
JIMENG_INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unknown req_key", {**T2V, "req_key": "jimeng_t2v_v99"}, "req_key"),
    ("req_key missing", {"prompt": "a boat"}, "req_key"),
    ("req_key not a string", {**T2V, "req_key": 5}, "req_key"),
    ("prompt missing", {"req_key": "jimeng_t2v_v30"}, "prompt"),
    ("prompt empty", {**T2V, "prompt": "  "}, "prompt"),
    ("prompt too long", {**T2V, "prompt": "x" * 801}, "prompt"),
    ("prompt not a string", {**T2V, "prompt": ["a"]}, "prompt"),
    ("frames not 121/241", {**T2V, "frames": 120}, "frames"),
    ("frames a string", {**T2V, "frames": "121"}, "frames"),
    ("frames a bool", {**T2V, "frames": True}, "frames"),
    ("seed a float", {**T2V, "seed": 1.5}, "seed"),
    ("seed out of range", {**T2V, "seed": -2}, "seed"),
    ("invalid ratio", {**T2V, "aspect_ratio": "2:1"}, "aspect_ratio"),
    (
        "ratio on an image mode",
        {**I2V, "image_urls": [URL], "aspect_ratio": "16:9"},
        "aspect_ratio",
    ),
    (
        "ratio on pro with an image",
        {"req_key": "jimeng_ti2v_v30_pro", "image_urls": [URL], "aspect_ratio": "16:9"},
        "aspect_ratio",
    ),
    ("pro with two images", {"req_key": "jimeng_ti2v_v30_pro", "image_urls": [URL, URL]}, "images"),
    ("image on text mode", {**T2V, "image_urls": [URL]}, "images"),
    ("first frame without image", I2V, "images"),
    ("first frame with two images", {**I2V, "image_urls": [URL, URL]}, "images"),
    ("tail with one image", {**TAIL, "image_urls": [URL]}, "images"),
    (
        "both image_urls and base64",
        {**I2V, "image_urls": [URL], "binary_data_base64": [png_b64(640, 360)]},
        "image_urls",
    ),
    ("image_urls not a list", {**I2V, "image_urls": URL}, "image_urls"),
    ("image url not http", {**I2V, "image_urls": ["ftp://x/a.png"]}, "image_urls[0]"),
    (
        "base64 not base64",
        {**I2V, "binary_data_base64": ["%%%not base64"]},
        "binary_data_base64[0]",
    ),
    ("base64 of a gif", {**I2V, "binary_data_base64": [GIF]}, "binary_data_base64[0]"),
    (
        "base64 with a data: prefix",
        {**I2V, "binary_data_base64": ["data:image/png;base64," + png_b64(640, 360)]},
        "binary_data_base64[0]",
    ),
    (
        "image too small",
        {**I2V, "binary_data_base64": [png_b64(400, 300)]},
        "binary_data_base64[0]",
    ),
    (
        "image too thin",
        {**I2V, "binary_data_base64": [png_b64(1600, 320)]},
        "binary_data_base64[0]",
    ),
    (
        "tail ratio differs",
        {**TAIL, "binary_data_base64": [png_b64(640, 360), png_b64(480, 480)]},
        "images",
    ),
    ("camera without template", {**CAM, "template_id": None, "image_urls": [URL]}, "template_id"),
    (
        "camera without strength",
        {**CAM, "camera_strength": None, "image_urls": [URL]},
        "camera_strength",
    ),
    ("unknown template", {**CAM, "template_id": "spin", "image_urls": [URL]}, "template_id"),
    ("unknown strength", {**CAM, "camera_strength": "max", "image_urls": [URL]}, "camera_strength"),
    (
        "template on a non-camera mode",
        {**I2V, "image_urls": [URL], "template_id": "robo_arm"},
        "template_id",
    ),
    ("unknown field", {**T2V, "fps": 30}, "fps"),
    ("image field of another API", {**T2V, "return_url": True}, "return_url"),
]


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def assert_business_error(answer: httpx2.Response, code: int, http: int, word: str) -> None:
    assert answer.status_code == http, answer.text
    body = answer.json()
    assert set(body) == {"code", "data", "message", "request_id", "status", "time_elapsed"}
    assert body["code"] == code and body["status"] == code and body["data"] is None
    assert word in body["message"], body["message"]
    assert len(body["request_id"]) == 34


@pytest.mark.parametrize(
    ("case", "body", "field"), JIMENG_INVALID, ids=[c[0] for c in JIMENG_INVALID]
)
async def test_an_invalid_jimeng_submit_is_refused_with_50200_naming_the_field(
    case: str, body: dict[str, Any], field: str, volc: Volc, sb: RunningSandbox
) -> None:
    """50200, HTTP 400, business envelope, the field named; no task is created."""
    answer = await volc.submit(_drop_none(body))
    assert_business_error(answer, 50200, 400, field)
    assert sb.log.count("volcengine", "submit", http_status=400) == 1
    assert not sb.state.tasks


OMNI = {
    "req_key": "jimeng_realman_avatar_picture_omni_v15",
    "image_url": URL,
    "audio_url": "https://example.com/a.mp3",
}
OMNI_INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no image", {**OMNI, "image_url": None}, "image_url"),
    ("no audio", {**OMNI, "audio_url": None}, "audio_url"),
    ("audio not a URL", {**OMNI, "audio_url": "speech.mp3"}, "audio_url"),
    ("prompt over 300", {**OMNI, "prompt": "x" * 301}, "prompt"),
    ("resolution 480", {**OMNI, "output_resolution": 480}, "output_resolution"),
    ("fast mode a string", {**OMNI, "pe_fast_mode": "yes"}, "pe_fast_mode"),
    ("mask not a list", {**OMNI, "mask_url": URL}, "mask_url"),
    ("six masks", {**OMNI, "mask_url": [URL] * 6}, "mask_url"),
    ("unknown field", {**OMNI, "frames": 121}, "frames"),
    ("a Jimeng req_key", {**OMNI, "req_key": "jimeng_t2v_v30"}, "req_key"),
]


@pytest.mark.parametrize(("case", "body", "field"), OMNI_INVALID, ids=[c[0] for c in OMNI_INVALID])
async def test_an_invalid_omnihuman_submit_is_refused_with_50200(
    case: str, body: dict[str, Any], field: str, volc: Volc
) -> None:
    """OmniHuman's own rules (§1.5): image and audio URLs required, prompt ≤ 300, 720/1080."""
    assert_business_error(await volc.call("CVSubmitTask", _drop_none(body)), 50200, 400, field)


async def test_a_body_that_is_not_json_or_not_an_object_is_refused_with_50200(volc: Volc) -> None:
    """Non-JSON bytes and JSON that is not an object get the business envelope, not a 500."""
    assert_business_error(
        await volc.call("CVSync2AsyncSubmitTask", None, raw=b"\xff{"), 50200, 400, "body"
    )
    assert_business_error(await volc.call("CVSync2AsyncSubmitTask", [1, 2]), 50200, 400, "body")


async def test_a_poll_needs_the_submits_req_key_and_an_unknown_task_is_not_found(
    volc: Volc,
) -> None:
    """Polling with another req_key is 50200; an unknown id answers status not_found."""
    task_id = (await volc.submit(T2V)).json()["data"]["task_id"]
    wrong = await volc.poll("jimeng_t2v_v30_1080p", task_id)
    assert_business_error(wrong, 50200, 400, "req_key")
    missing = await volc.poll("jimeng_t2v_v30", "123")
    assert missing.status_code == 200
    assert missing.json()["data"] == {"status": "not_found", "video_url": ""}
    req_json = await volc.call(
        "CVSync2AsyncGetResult",
        {"req_key": "jimeng_t2v_v30", "task_id": task_id, "req_json": {"aigc_meta": {}}},
    )
    assert_business_error(req_json, 50200, 400, "req_json")
    image_option = await volc.call(
        "CVSync2AsyncGetResult",
        {"req_key": "jimeng_t2v_v30", "task_id": task_id, "req_json": '{"return_url": true}'},
    )
    assert_business_error(image_option, 50200, 400, "return_url")
    fine = await volc.call(
        "CVSync2AsyncGetResult",
        {"req_key": "jimeng_t2v_v30", "task_id": task_id, "req_json": '{"aigc_meta": {}}'},
    )
    assert fine.json()["code"] == 10000


def assert_gateway_error(answer: httpx2.Response, code: str, code_n: int, http: int) -> None:
    assert answer.status_code == http, answer.text
    meta = answer.json()["ResponseMetadata"]
    assert meta["Error"]["Code"] == code and meta["Error"]["CodeN"] == code_n
    assert meta["Service"] == "cv" and meta["Region"] == "cn-north-1" and meta["RequestId"]


def signed(
    sb: RunningSandbox,
    body: bytes,
    *,
    ak: str = SANDBOX_ACCESS_KEY,
    sk: str = SANDBOX_SECRET_KEY,
    now: datetime | None = None,
    action: str = "CVSync2AsyncSubmitTask",
) -> dict[str, str]:
    return sign(
        Credentials(ak, sk),
        method="POST",
        host=urlsplit(sb.url).netloc,
        path="/",
        query={"Action": action, "Version": "2022-08-31"},
        body=body,
        scheme="http",
        now=now or datetime.now(UTC),
    )


async def test_gateway_refusals_use_the_response_metadata_envelope(
    sb: RunningSandbox, http: httpx2.AsyncClient, clock: ManualClock
) -> None:
    """Missing auth, bad AK, bad signature, bad/skewed X-Date, unknown action (§1.1 table)."""
    body = json.dumps(T2V).encode()
    query = {"Action": "CVSync2AsyncSubmitTask", "Version": "2022-08-31"}
    now = datetime.fromtimestamp(clock(), UTC)

    async def post(headers: dict[str, str], params: dict[str, str] = query) -> httpx2.Response:
        return await http.post(sb.url + "/", params=params, content=body, headers=headers)

    assert_gateway_error(await post({}), "MissingAuthenticationToken", 100003, 401)
    assert_gateway_error(await post({"Authorization": "Bearer x"}), "MissingSignature", 100005, 401)
    assert_gateway_error(
        await post(signed(sb, body, ak="AKLTnobody", now=now)), "InvalidAccessKey", 100009, 401
    )
    assert_gateway_error(
        await post(signed(sb, body, sk="wrong", now=now)), "SignatureDoesNotMatch", 100010, 401
    )
    tampered = signed(sb, b'{"req_key":"other"}', now=now)
    assert_gateway_error(await post(tampered), "SignatureDoesNotMatch", 100010, 401)
    skewed = signed(sb, body, now=now - timedelta(hours=1))
    assert_gateway_error(await post(skewed), "InvalidTimestamp", 100006, 403)
    malformed = {**signed(sb, body, now=now), "X-Date": "yesterday"}
    assert_gateway_error(await post(malformed), "InvalidTimestamp", 100006, 400)
    unknown = {"Action": "CVMakeMovie", "Version": "2022-08-31"}
    assert_gateway_error(await post({}, unknown), "InvalidActionOrVersion", 100008, 404)
    old_cancel = {"Action": "CVCancelTask", "Version": "2022-08-31"}
    assert_gateway_error(await post({}, old_cancel), "InvalidActionOrVersion", 100008, 404)
    assert_gateway_error(await post({}, {"Action": "CVProcess"}), "MissingParameter", 100002, 400)
    assert not sb.state.tasks


TOKENOPS_T2V = {"model": "jimeng-video-3.0-720P", "req_key": "jimeng_t2v_v30", "prompt": "a boat"}
TOKENOPS_INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unknown model", {**TOKENOPS_T2V, "model": "sora-2"}, "model"),
    ("req_key of another model", {**TOKENOPS_T2V, "req_key": "jimeng_t2v_v30_1080p"}, "req_key"),
    ("pro key on the 720P model", {**TOKENOPS_T2V, "req_key": "jimeng_ti2v_v30_pro"}, "req_key"),
    ("no req_key", {"model": "jimeng-video-3.0-720P", "prompt": "a boat"}, "req_key"),
    ("seconds 6", {**TOKENOPS_T2V, "seconds": "6"}, "seconds"),
    ("frames and seconds disagree", {**TOKENOPS_T2V, "seconds": "10", "frames": 121}, "frames"),
    ("size not WxH", {**TOKENOPS_T2V, "size": "big"}, "size"),
    ("size of no supported ratio", {**TOKENOPS_T2V, "size": "1000x1000000"}, "size"),
    (
        "size and ratio disagree",
        {**TOKENOPS_T2V, "size": "1280x720", "aspect_ratio": "1:1"},
        "aspect_ratio",
    ),
    ("no prompt", {"model": "jimeng-video-3.0-720P", "req_key": "jimeng_t2v_v30"}, "prompt"),
    ("content not a list", {**TOKENOPS_T2V, "content": "a boat"}, "content"),
    (
        "content item of unknown type",
        {**TOKENOPS_T2V, "content": [{"type": "video_url"}]},
        "content[0].type",
    ),
    (
        "image item without url",
        {
            **TOKENOPS_T2V,
            "req_key": "jimeng_i2v_first_v30",
            "content": [{"type": "image_url", "image_url": {}}],
        },
        "content[0].image_url.url",
    ),
    (
        "image_base64 not a data URL",
        {
            **TOKENOPS_T2V,
            "req_key": "jimeng_i2v_first_v30",
            "content": [{"type": "image_base64", "image_url": {"url": png_b64(640, 360)}}],
        },
        "content[0].image_url.url",
    ),
    ("unknown field", {**TOKENOPS_T2V, "n": 2}, "n"),
    (
        "omni without generation_type",
        {"model": "OmniHuman_1.5", "req_key": "jimeng_realman_avatar_picture_omni_v15"},
        "generation_type",
    ),
    (
        "omni without audio",
        {
            "model": "OmniHuman_1.5",
            "generation_type": "omni_human",
            "req_key": "jimeng_realman_avatar_picture_omni_v15",
            "content": [{"type": "image_url", "image_url": {"url": URL}}],
        },
        "content",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "field"), TOKENOPS_INVALID, ids=[c[0] for c in TOKENOPS_INVALID]
)
async def test_an_invalid_tokenops_create_is_a_400_with_an_openai_style_error(
    case: str, body: dict[str, Any], field: str, sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """400 with {"error": {"message", "type", "code"}} naming the field; nothing is created."""
    answer = await http.post(f"{sb.tokenops_url}/videos", json=body, headers=TOKENOPS_HEADERS)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "code"} and field in error["message"]
    assert not sb.state.tasks


async def test_tokenops_refuses_bad_keys_unknown_ids_and_unready_content(
    sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """401 without the right bearer, 404 for an unknown id, 409 for content not ready yet."""
    missing = await http.post(f"{sb.tokenops_url}/videos", json=TOKENOPS_T2V)
    wrong = await http.get(f"{sb.tokenops_url}/videos/1", headers={"Authorization": "Bearer x"})
    assert missing.status_code == wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    unknown = await http.get(f"{sb.tokenops_url}/videos/1", headers=TOKENOPS_HEADERS)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    created = await http.post(
        f"{sb.tokenops_url}/videos", json=TOKENOPS_T2V, headers=TOKENOPS_HEADERS
    )
    early = await http.get(
        f"{sb.tokenops_url}/videos/{created.json()['id']}/content", headers=TOKENOPS_HEADERS
    )
    assert early.status_code == 409 and early.json()["error"]["code"] == "video_not_ready"
    json_headers = {**TOKENOPS_HEADERS, "Content-Type": "application/json"}
    not_json = await http.post(f"{sb.tokenops_url}/videos", content=b"{", headers=json_headers)
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]["message"]


JENIUS_INVALID: list[tuple[str, Any, str]] = [
    ("unknown scene", {"scene": "wedding", "image_url": URL}, "scene"),
    ("no scene", {"image_url": URL}, "scene"),
    ("no image", {"scene": "celebrity"}, "image_url"),
    ("two images for celebrity", {"scene": "celebrity", "image_urls": [URL, URL]}, "celebrity"),
    ("ten images for family", {"scene": "family", "image_urls": [URL] * 10}, "family"),
    ("both image fields", {"scene": "family", "image_url": URL, "image_urls": [URL]}, "not both"),
    ("image not a URL", {"scene": "celebrity", "image_url": "me.png"}, "image_urls[0]"),
    ("unknown field", {"scene": "celebrity", "image_url": URL, "prompt": "hi"}, "prompt"),
    ("not an object", ["celebrity"], "object"),
]


@pytest.mark.parametrize(
    ("case", "body", "word"), JENIUS_INVALID, ids=[c[0] for c in JENIUS_INVALID]
)
async def test_an_invalid_jenius_task_is_a_400_with_code_and_message(
    case: str, body: Any, word: str, sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """{"code": 400, "message": ...} with HTTP 400; nothing is created."""
    answer = await http.post(
        f"{sb.jenius_url}/plugins/video/tasks", json=body, headers=JENIUS_HEADERS
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == 400 and word in answer.json()["message"]
    assert not sb.state.tasks


async def test_jenius_refuses_a_bad_key_and_an_unknown_uuid(
    sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """401 without the bearer; 404 {"code": 404} for a task it does not know."""
    body = {"scene": "celebrity", "image_url": URL}
    denied = await http.post(f"{sb.jenius_url}/plugins/video/tasks", json=body)
    assert denied.status_code == 401 and denied.json()["code"] == 401
    unknown = await http.get(f"{sb.jenius_url}/plugins/video/tasks/nope", headers=JENIUS_HEADERS)
    assert unknown.status_code == 404 and unknown.json()["code"] == 404


async def test_a_volcengine_body_not_sent_as_json_is_refused_even_when_signed(
    sb: RunningSandbox, http: httpx2.AsyncClient, clock: ManualClock
) -> None:
    """Content-Type text/plain, correctly signed: 50200 naming Content-Type; nothing created."""
    body = json.dumps(T2V).encode()
    query = {"Action": "CVSync2AsyncSubmitTask", "Version": "2022-08-31"}
    headers = sign(
        Credentials(SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY), method="POST",
        host=urlsplit(sb.url).netloc, path="/", query=query, body=body, scheme="http",
        now=datetime.fromtimestamp(clock(), UTC), content_type="text/plain",
    )  # fmt: skip
    answer = await http.post(sb.url + "/", params=query, content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == 50200 and "application/json" in answer.json()["message"]
    assert not sb.state.tasks


async def test_a_signature_over_x_date_alone_is_refused(
    sb: RunningSandbox, http: httpx2.AsyncClient, clock: ManualClock
) -> None:
    """Host, body hash and content type left unsigned: SignatureDoesNotMatch (100010)."""
    from videogen.providers.signing import signature

    body = json.dumps(T2V).encode()
    query = {"Action": "CVSync2AsyncSubmitTask", "Version": "2022-08-31"}
    headers = signed(sb, body, now=datetime.fromtimestamp(clock(), UTC))
    names, scope, sig = signature(
        Credentials(SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY), method="POST", path="/",
        query=query, headers={"X-Date": headers["X-Date"]}, body=body, x_date=headers["X-Date"],
    )  # fmt: skip
    headers["Authorization"] = (
        f"HMAC-SHA256 Credential={SANDBOX_ACCESS_KEY}/{scope}, SignedHeaders={names}, "
        f"Signature={sig}"
    )
    answer = await http.post(sb.url + "/", params=query, content=body, headers=headers)
    assert_gateway_error(answer, "SignatureDoesNotMatch", 100010, 401)
    assert not sb.state.tasks


@pytest.mark.parametrize("front", ["tokenops", "jenius"])
async def test_bearer_fronts_refuse_a_body_not_sent_as_json(
    front: str, sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    if front == "tokenops":
        url, headers, body = f"{sb.tokenops_url}/videos", TOKENOPS_HEADERS, TOKENOPS_T2V
    else:
        url, headers = f"{sb.jenius_url}/plugins/video/tasks", JENIUS_HEADERS
        body = {"scene": "celebrity", "image_url": URL}
    answer = await http.post(
        url, content=json.dumps(body).encode(), headers={**headers, "Content-Type": "text/plain"}
    )
    assert answer.status_code == 400 and "application/json" in answer.text
    assert not sb.state.tasks
