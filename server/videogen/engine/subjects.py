"""Subjects: OmniHuman subject detection (masks, largest first) and recognition (polled within
a budget), for choosing who speaks before a billed video is submitted. Nothing is recorded."""

from __future__ import annotations

import anyio

from videogen.catalog import ProviderName, uploads_images
from videogen.providers.base import PreparedImage, Provider
from videogen.report import SubjectReport
from videogen.retry import call_with_retries

from .context import Context


async def detect_subjects(
    ctx: Context, image: str, provider: ProviderName | None, wait_seconds: float
) -> SubjectReport:
    """See ``Engine.detect_subjects``."""
    from videogen.inputs import prepare_image

    name = provider or ctx.settings.provider
    adapter = ctx.providers(name)
    prepared = await prepare_image(
        image,
        allow_upload=adapter.accepts_uploaded_images and uploads_images("omnihuman"),
        label="portrait image",
        folders=ctx.settings.path_folders(),
    )
    detection = await call_with_retries(
        lambda: adapter.detect_subjects(prepared), policy=ctx.policy
    )
    report = SubjectReport(
        provider=name,
        contains_subject=detection.contains_subject,
        mask_urls=list(detection.mask_urls),
        request_ids=[r for r in (detection.request_id,) if r],
    )
    return await _recognise(ctx, adapter, prepared, report, wait_seconds)


async def _recognise(
    ctx: Context, adapter: Provider, image: PreparedImage, report: SubjectReport, budget: float
) -> SubjectReport:
    deadline = anyio.current_time() + budget
    ref = await call_with_retries(lambda: adapter.submit_recognition(image), policy=ctx.policy)
    delay = ctx.first_poll
    while anyio.current_time() + delay < deadline:
        await anyio.sleep(delay)
        poll = await call_with_retries(lambda: adapter.poll_recognition(ref), policy=ctx.policy)
        if poll.request_id:
            report.request_ids.append(poll.request_id)
        if poll.status == "succeeded":
            report.recognised = poll.contains_subject
            report.contains_subject = bool(poll.contains_subject)
            report.recognition = "succeeded"
            return report
        if poll.status in ("failed", "expired"):
            report.recognition = "failed"
            report.message = poll.error.message if poll.error else "recognition failed"
            return report
        delay = ctx.settings.poll_interval
    report.recognition = "pending"
    report.message = (
        f"Recognition was still running after {budget:g} s; detection's answer is shown."
    )
    return report
