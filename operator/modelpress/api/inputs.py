"""Where a CompressedModel's inputs live: the base model, the store, datasets, Secrets.

URIs are checked here with messages in words; the same rules reach the API server
as patterns and CEL rules in the generated CRD.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from modelpress.api.base import HUB_REPO, NO_SPACES, SECRET_KEY, SECRET_NAME, ApiModel, cel
from modelpress.problems import described

_S3_URI = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$"
_FILE_URI = r"^file:///[^\s]*$"
STORE_URI_PATTERN = described(
    f"({_S3_URI})|({_FILE_URI})",
    "a store URI: s3://bucket/path/ (bucket: 3-63 lowercase letters, digits, '.' and '-') "
    "or file:///absolute/path/",
)
URI_CEL = [
    cel(
        "!self.contains('/../') && !self.endsWith('/..')",
        "must not contain '..' path segments: give the object's full path",
    ),
    cel(
        "!self.contains('/./') && !self.endsWith('/.') && !self.matches('^[a-z0-9]+://[^/]*.*//')",
        "must name each object one way: no '//' or '.' path segments",
    ),
    cel(
        "!self.contains('?') && !self.contains('#')",
        "takes only a bucket and a path: remove the query string or fragment",
    ),
]


def _check_uri(uri: str) -> str:
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"{uri!r} is not a URI: use s3://bucket/path/ or file:///absolute/path/")
    if scheme not in ("s3", "file"):
        raise ValueError(
            f"unknown scheme {scheme!r} in {redact_uri(uri)}: use s3://bucket/path/ or file:///absolute/path/"
        )
    authority = rest.split("/", 1)[0]
    # A bucket name has neither '@' nor ':'; userinfo ('key:secret@') always has one of
    # them before the first '/', even when the secret itself contains '/'.
    if "@" in authority or (":" in authority and "@" in rest):
        raise ValueError(
            f"credentials must not be embedded in URIs ({redact_uri(uri)}): "
            "put them in a Secret and name it in secretRef"
        )
    if ".." in rest.split("/"):
        raise ValueError(
            f"{redact_uri(uri)} contains a '..' path segment: give the object's full path"
        )
    path = rest[len(authority) :]
    if "//" in path or "." in path.split("/"):
        raise ValueError(
            f"{redact_uri(uri)} names an object two ways ('//' or a '.' segment): write the "
            "plain path, so that the same object always has the same URI"
        )
    if "?" in rest or "#" in rest:
        raise ValueError(
            f"{redact_uri(uri)} has a query string or fragment: store URIs take only a bucket "
            "and a path"
        )
    if scheme == "file" and authority:
        raise ValueError(f"{uri!r} is not an absolute file URI: write file:///absolute/path/")
    if not re.fullmatch(STORE_URI_PATTERN, uri):
        raise ValueError(
            f"{redact_uri(uri)} is not a valid store URI: use s3://bucket/path/ "
            "(bucket: 3-63 lowercase letters, digits, dots, dashes) or file:///absolute/path/"
        )
    return uri


def redact_uri(uri: str) -> str:
    """Hide user:password@ in a URI before it reaches a message or a log.

    Everything up to the last `@` goes: secret keys may themselves contain `/`."""
    return re.sub(r"(://).*@", r"\1***@", uri)


StoreUri = Annotated[
    str,
    Field(
        max_length=1024,
        # The pattern is for the API server; the operator's own check says what is wrong
        # in words, which a pattern cannot.
        json_schema_extra={"pattern": STORE_URI_PATTERN, "x-kubernetes-validations": URI_CEL},
    ),
    AfterValidator(_check_uri),
]
"""An object-store location: `s3://bucket/prefix/` or `file:///absolute/path/`."""


class SecretRef(ApiModel):
    """A Secret in the resource's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=SECRET_NAME)
    """Name of the Secret."""


class SecretKeyRef(SecretRef):
    """One key of a Secret in the resource's namespace."""

    key: str = Field(default="token", min_length=1, max_length=253, pattern=SECRET_KEY)
    """Key within the Secret that holds the value."""


# --- where the base model comes from ---------------------------------------------


class HuggingFaceSource(ApiModel):
    """A model repository on the Hugging Face Hub."""

    repo: str = Field(
        min_length=3,
        max_length=200,
        pattern=HUB_REPO,
    )
    """Repository id, `organization/name`."""

    revision: str = Field(default="main", min_length=1, max_length=255, pattern=NO_SPACES)
    """Branch, tag or commit. It is resolved to a commit once and recorded in status."""

    token_secret_ref: SecretKeyRef | None = None
    """Secret key holding a Hub token, for gated or private repositories."""

    allow_pickle: bool = False
    """Allow pickled `.bin` weights. Off by default: pickles can run code when loaded."""


class Source(ApiModel):
    """The base model. Exactly one of `huggingface` or `uri`."""

    huggingface: HuggingFaceSource | None = None
    """Fetch from the Hugging Face Hub (once per commit, then reused from the store)."""

    uri: StoreUri | None = None
    """A Hugging Face checkpoint directory already in object storage."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        if (self.huggingface is None) == (self.uri is None):
            raise ValueError("set exactly one of source.huggingface or source.uri")
        return self


class Storage(ApiModel):
    """Where artifacts are stored, content-addressed."""

    uri: StoreUri
    """Root of the artifact store, `s3://bucket/prefix/` or `file:///path/` (local mode)."""

    secret_ref: SecretRef | None = None
    """Secret with keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally
    AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_REGION. Never put credentials in the URI."""


class Dataset(ApiModel):
    """A UTF-8 text file in object storage (documents separated by blank lines)."""

    uri: StoreUri
    """Location of the text file."""


class GeneratedText(ApiModel):
    """Text the base model writes itself: sampled from its own next-token distribution
    (temperature 1) from its start token. It needs no data, nothing to license and is
    in no one domain; it is generated once per base model and kept in the store."""

    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    """Seed of the sampling; another seed gives other text (and another artifact)."""


class Calibration(ApiModel):
    """Text the compression steps learn from (calibration, importance, distillation):
    `dataset` (your own text, best when it resembles what you serve), `generated` (text
    the base model writes), or both: then half the windows come from each, alternating,
    so a step learns your domain without unlearning the rest. Steps that need text and
    have none use generated text."""

    dataset: Dataset | None = None
    """Must differ from the evaluation dataset, so quality is measured on unseen text."""

    generated: GeneratedText | None = None
    """Text the base model writes itself: `generated: {}`."""

    samples: int = Field(default=256, ge=1, le=65536)
    """Number of text sequences to use (with both sources, half from each; the dataset
    gives the odd one)."""

    sequence_length: int = Field(default=512, ge=16, le=131072)
    """Tokens per sequence."""

    @model_validator(mode="after")
    def _some_source(self) -> Calibration:
        if self.dataset is None and self.generated is None:
            raise ValueError(NO_SOURCE)
        if self.dataset is not None and self.generated is not None and self.samples < 2:
            raise ValueError(TOO_FEW_TO_MIX)
        return self

    @property
    def dataset_samples(self) -> int:
        """Windows taken from the dataset."""
        return self.samples if self.generated is None else (self.samples + 1) // 2

    def generated_part(self) -> Calibration:
        """The windows the base model writes, as a calibration of their own (which names
        the text in the store, so a mix reuses text another variant had written)."""
        if self.dataset is None:
            return self
        return self.model_copy(update={"dataset": None, "samples": self.samples // 2})


NO_SOURCE = (
    "set calibration.dataset (your own text), calibration.generated (text the base model "
    "writes: generated: {}), or both (half the windows from each)"
)
TOO_FEW_TO_MIX = (
    "calibration with both dataset and generated takes half its samples from each: "
    "set samples to at least 2"
)

GENERATED_CALIBRATION = Calibration(generated=GeneratedText())
"""What steps that need text learn from when the spec gives none."""
