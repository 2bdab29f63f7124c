"""Image validation (pure)."""

import pytest

from proxycheck.probes.images import validate_image

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 100


@pytest.mark.parametrize(
    ("status", "ctype", "length", "body", "reason"),
    [
        (200, "image/png", str(len(PNG)), PNG, None),
        (200, "image/jpeg", None, JPEG, None),
        (200, "image/png; charset=binary", str(len(PNG)), PNG, None),
        (403, "text/html", "120", b"<html>denied</html>", "image_blocked"),
        (200, "text/html", "20", b"<html>blocked</html>", "image_blocked"),
        (200, "", "104", PNG[:104], "image_blocked"),
        (200, "image/png", "500", PNG, "image_corrupted"),
        (200, "image/png", str(len(JPEG)), JPEG, "image_corrupted"),
        (200, "image/gif", "0", b"", "image_corrupted"),
        (200, "image/webp", "12", b"RIFF\x00\x00\x00\x00WEBX", "image_corrupted"),
        (200, "image/webp", "12", b"RIFF\x00\x00\x00\x00WEBP", None),
    ],
)
def test_validate_image(status, ctype, length, body, reason):
    problem = validate_image(status, ctype, length, body)
    assert (problem[0] if problem else None) == reason
