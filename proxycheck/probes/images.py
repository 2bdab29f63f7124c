"""35: do images come through the proxy intact?

Each configured image URL (by default one plain-HTTP and one HTTPS image on Google's servers) is
downloaded through the proxy. Pure part: ``validate_image`` — status 200, an ``image/*``
Content-Type, magic bytes that match that type, and the whole body (Content-Length) arrived. A
proxy that filters by MIME type can only do so on plain HTTP; one that substitutes a "blocked"
picture is caught by the magic bytes or the length.
"""

from __future__ import annotations

from ..target_spec import TargetSpec
from .base import Finding, ProbeContext, ProbeSpec, SelfTestContext, TargetCheck, fail, ok
from .selftest_fetch import fetch

MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
    "image/x-icon": (b"\x00\x00\x01\x00",),
    "image/vnd.microsoft.icon": (b"\x00\x00\x01\x00",),
}


def validate_image(status: int, content_type: str, content_length: str | None, body: bytes) -> tuple[str, str] | None:
    """None when the image is intact, else (reason, what is wrong)."""
    if status != 200:
        return "image_blocked", f"answered {status}"
    mime = content_type.split(";")[0].strip().lower()
    if not mime.startswith("image/"):
        return "image_blocked", f"returned {mime or 'no Content-Type'} instead of an image"
    if content_length is not None and content_length.isdigit() and int(content_length) != len(body):
        return "image_corrupted", f"delivered {len(body):,} of {int(content_length):,} bytes"
    if not body:
        return "image_corrupted", "delivered an empty body"
    magics = MAGIC.get(mime)
    if magics and not any(body.startswith(m) for m in magics):
        return "image_corrupted", f"delivered bytes that are not a {mime} (starts {body[:8].hex()})"
    if mime == "image/webp" and body[8:12] != b"WEBP":
        return "image_corrupted", "delivered bytes that are not a WebP image"
    return None


FIX = "point [targets].image_urls at reachable images (a judge serves /image.png)"


async def run(ctx: ProbeContext) -> Finding:
    limit = ctx.settings.probes.image_max_bytes
    total = 0
    for url in ctx.settings.targets.image_urls:
        response = await ctx.http.get(url, limit=limit, partial=True)
        if response.truncated:
            return fail("image_corrupted", f"{ctx.who} sent more than {limit:,} bytes for {url}")
        if not response.complete:
            return fail("image_corrupted", f"{ctx.who} cut {url} short after {len(response.body):,} bytes")
        problem = validate_image(response.status, response.headers.get("content-type", ""),
                                 response.headers.get("content-length"), response.body)
        if problem is not None:
            reason, what = problem
            return fail(reason, f"{ctx.who} {what} for {url}")
        total += len(response.body)
    return ok(f"{len(ctx.settings.targets.image_urls)} image(s), {total:,} bytes, intact")


async def selftest(st: SelfTestContext) -> list[TargetCheck]:
    """Each image, fetched directly, must pass the probe's own ``validate_image``."""
    checks = []
    for i, url in enumerate(st.settings.targets.image_urls):
        key = f"image_urls[{i}]"
        response = await fetch(st, key, url, FIX, limit=st.settings.probes.image_max_bytes)
        if isinstance(response, TargetCheck):
            checks.append(response)
            continue
        bad = validate_image(response.status, response.headers.get("content-type", ""),
                             response.headers.get("content-length"), response.body)
        if response.truncated:
            bad = ("image_corrupted", f"is larger than [probes].image_max_bytes ({st.settings.probes.image_max_bytes:,})")
        if bad is not None:
            checks.append(TargetCheck(key, url, False, f"{url} {bad[1]}, so every proxy would fail with 35", FIX))
        else:
            mime = response.headers.get("content-type", "image").split(";")[0]
            checks.append(TargetCheck(key, url, True, f"{url} is an intact {mime} of {len(response.body):,} bytes"))
    return checks


SPEC = ProbeSpec("images", run, targets=(
    TargetSpec("image_urls", ("http://www.google.com/images/branding/googlelogo/1x/googlelogo_color_272x92dp.png",
                              "https://www.gstatic.com/recaptcha/api2/logo_48.png"),
               "images downloaded through the proxy (status, type, magic bytes, length)",
               offline=("{http}/image.png", "{https}/image.png")),
), selftest=selftest, every=900.0, jitter=0.1, rate_limited=True)
