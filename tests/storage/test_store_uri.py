"""URI parsing: what is accepted, what is refused, and that refusals never echo secrets."""

from __future__ import annotations

import pytest

from modelpress.storage import InvalidURIError, StoreURI, parse_uri, redact_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://bucket", StoreURI("s3", "bucket", "")),
        ("s3://my.bucket-1/models/a/", StoreURI("s3", "my.bucket-1", "models/a/")),
        ("s3://bucket//double//slash", StoreURI("s3", "bucket", "double/slash")),
        ("file:///srv/store/", StoreURI("file", "", "/srv/store/")),
        ("file://localhost/srv/store", StoreURI("file", "", "/srv/store")),
        ("file:///srv/with%20space", StoreURI("file", "", "/srv/with space")),
        ("/srv/store", StoreURI("file", "", "/srv/store")),
        ("S3://bucket/x", StoreURI("s3", "bucket", "x")),
        # an '@' in an object's name is not userinfo: the API accepts it, so must storage
        ("s3://data/user@example.txt", StoreURI("s3", "data", "user@example.txt")),
    ],
)
def test_accepted_uris(text: str, expected: StoreURI) -> None:
    assert parse_uri(text) == expected


def test_round_trip_and_navigation() -> None:
    root = parse_uri("s3://bucket/store")
    assert str(root.as_prefix()) == "s3://bucket/store/"
    model = root.join("models", "abc/")
    assert str(model) == "s3://bucket/store/models/abc/"
    assert str(model.join("manifest.json")) == "s3://bucket/store/models/abc/manifest.json"
    assert model.name == "abc"
    assert str(model.parent()) == "s3://bucket/store/models/"
    assert str(parse_uri("file:///srv/with%20space/x.json").parent()) == "file:///srv/with%20space/"
    assert parse_uri(str(parse_uri("file:///srv/with%20space"))).path == "/srv/with space"


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("s3://bucket/a/../b", "'..'"),
        ("file:///srv/%2e%2e/etc", "'..'"),
        ("s3://bucket/./a", "'.'"),
        ("s3://AKIAXXXX:supersecret@bucket/x", "embeds credentials"),
        ("s3://AKIAXXXX:super/secret@bucket/x", "embeds credentials"),
        ("gs://bucket/x", "unsupported scheme"),
        ("http://host/x", "unsupported scheme"),
        ("file://relative/path", "absolute"),
        ("relative/path", "not a URI"),
        ("", "empty"),
        ("s3://", "no bucket"),
        ("s3://Bad_Bucket/x", "not a valid bucket"),
        ("s3://bucket:9000/x", "not a valid bucket"),
        ("s3://bucket/x?X-Amz-Signature=supersecret", "query string"),
        ("s3://bucket/a\\b", "backslashes"),
    ],
)
def test_refused_uris_say_why_without_secrets(text: str, hint: str) -> None:
    with pytest.raises(InvalidURIError) as caught:
        parse_uri(text)
    message = str(caught.value)
    assert hint in message
    assert "supersecret" not in message and "secret" not in message.replace("Secret", "")
    assert "supersecret" not in (caught.value.uri or "")


def test_join_refuses_traversal() -> None:
    with pytest.raises(InvalidURIError):
        parse_uri("s3://bucket/root/").join("../escape")


def test_redact_uri() -> None:
    assert redact_uri("s3://key:se/cret@bucket/p") == "s3://***@bucket/p"
    assert redact_uri("s3://bucket/p?token=abc") == "s3://bucket/p?***"
    assert redact_uri("s3://bucket/p") == "s3://bucket/p"
