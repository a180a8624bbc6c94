"""The one module that talks to S3: the operator's exports, too large to return inline."""

from __future__ import annotations

from typing import Any

from postpay.limits import EXPORT_LINK_SECONDS


class S3Exports:
    """The ``Exports`` port (postpay.ports) on S3."""

    def __init__(self, bucket: str, *, client: Any = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def publish(self, key: str, body: bytes, content_type: str) -> str:
        """Stores the object (encrypted at rest, private) and returns a presigned GET link to it."""
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            ServerSideEncryption="AES256",
            ContentDisposition=f'attachment; filename="{key.rsplit("/", 1)[-1]}"',
        )
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=EXPORT_LINK_SECONDS
            )
        )
