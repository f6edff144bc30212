"""The catalogue matches the contracts: eight modes, their req_keys, models, sizes and scenes."""

from __future__ import annotations

from videogen import catalog
from videogen.models import GenerationRequest


def test_eight_jimeng_modes_with_their_documented_req_keys() -> None:
    assert {m: s.req_key for m, s in catalog.JIMENG.items()} == {
        "ti2v_pro": "jimeng_ti2v_v30_pro",
        "t2v_720p": "jimeng_t2v_v30",
        "i2v_first_720p": "jimeng_i2v_first_v30",
        "i2v_first_tail_720p": "jimeng_i2v_first_tail_v30",
        "i2v_recamera_720p": "jimeng_i2v_recamera_v30",
        "t2v_1080p": "jimeng_t2v_v30_1080p",
        "i2v_first_1080p": "jimeng_i2v_first_v30_1080",
        "i2v_first_tail_1080p": "jimeng_i2v_first_tail_v30_1080",
    }


def test_each_tokenops_model_accepts_only_its_own_req_keys() -> None:
    assert catalog.TOKENOPS_MODELS["jimeng-video-3.0-pro"] == {"jimeng_ti2v_v30_pro"}
    assert catalog.TOKENOPS_MODELS["jimeng-video-3.0-720P"] == {
        "jimeng_t2v_v30", "jimeng_i2v_first_v30", "jimeng_i2v_first_tail_v30",
        "jimeng_i2v_recamera_v30",
    }  # fmt: skip
    assert len(catalog.TOKENOPS_MODELS["jimeng-video-3.0-1080P"]) == 3


def test_catalogue_lists_eleven_camera_moves_three_strengths_six_ratios() -> None:
    assert (len(catalog.CAMERA_MOVES), len(catalog.CAMERA_STRENGTHS)) == (11, 3)
    assert catalog.ASPECT_RATIOS == ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9")


def test_output_sizes_are_even_and_follow_the_documented_pro_table() -> None:
    assert catalog.output_size("ti2v_pro", "21:9") == (2176, 928)
    assert catalog.output_size("t2v_720p") == (1280, 720)
    for family in catalog.OUTPUT_SIZES.values():
        assert all(w % 2 == 0 and h % 2 == 0 for w, h in family.values())


def test_requested_durations_are_cut_from_the_next_longer_provider_clip() -> None:
    assert [catalog.provider_clip_seconds(d) for d in catalog.DURATIONS] == [5, 5, 10, 10, 10]
    assert catalog.PROVIDER_FRAMES == {5: 121, 10: 241}


def test_nearest_aspect_ratio_picks_the_closest_supported_ratio() -> None:
    assert catalog.nearest_aspect_ratio(1000, 1000) == "1:1"
    assert catalog.nearest_aspect_ratio(1920, 1080) == "16:9"
    assert catalog.nearest_aspect_ratio(600, 1000) == "9:16"


def test_dedupe_key_ignores_the_file_name_but_not_the_prompt() -> None:
    a = GenerationRequest(provider="volcengine", mode="t2v_720p", prompt="boat", filename="a.mp4")
    b = GenerationRequest(provider="volcengine", mode="t2v_720p", prompt="boat")
    c = GenerationRequest(provider="volcengine", mode="t2v_720p", prompt="boats")
    assert a.dedupe_key() == b.dedupe_key() != c.dedupe_key()
