"""Publish models into a deployed store: what `make publish` (scripts/cloud.sh) runs.

    python -m velocast.train.publish copy  --to gs://BUCKET --from FOLDER_STORE [--as SA]
    python -m velocast.train.publish train --to gs://BUCKET --data CSV [--models a,b] [--as SA]

`copy` copies an already-trained folder store; `train` trains on the export and
publishes as `python -m velocast.train` does. Writes are velocast's own write-once
ones (if_generation_match=0; never `gsutil rsync`, which would overwrite): an object
already there with the same bytes is kept, one with other bytes stops the copy.

With --as, the GCS client acts as that service account (the trainer) through
google-auth's impersonated credentials (needs roles/iam.serviceAccountTokenCreator on
it, granted by trainer_members in tfvars); otherwise as your Application Default
Credentials. Offline only: scripts/package.py leaves this module out of the bundles.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from velocast.catalog.store import AlreadyExists, Store, open_store

# What the impersonated token may do: the trainer's bucket role, nothing wider.
STORAGE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class PublishError(Exception):
    """Nothing (more) was published; the message says why."""


@dataclass(frozen=True)
class Copied:
    copied: int
    kept: int


def copy_store(source: Store, destination: Store) -> Copied:
    """Every object of `source` into `destination`, registry entries last (as the
    trainer publishes: no entry ever points at a missing file)."""
    names = source.list("")
    if not any(n.startswith("registry/") for n in names):
        raise PublishError(f"{source.uri} holds no registry entry: not a model store")
    names.sort(key=lambda n: (n.startswith("registry/"), n))
    copied = kept = 0
    for name in names:
        data = source.read(name)
        try:
            destination.write_once(name, data)
            copied += 1
        except AlreadyExists:
            if destination.read(name) != data:
                raise PublishError(
                    f"{name} already exists in {destination.uri} with other content; "
                    "published objects are immutable, nothing was overwritten") from None
            kept += 1
    return Copied(copied, kept)


def impersonated_client(service_account: str, project: str | None = None, *,
                        source_credentials=None, iam_endpoint_override: str | None = None):
    """A google-cloud-storage client whose calls are made as `service_account`."""
    import google.auth
    from google.auth import impersonated_credentials
    from google.cloud import storage

    adc_project = None
    if source_credentials is None:
        source_credentials, adc_project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    credentials = impersonated_credentials.Credentials(
        source_credentials=source_credentials, target_principal=service_account,
        target_scopes=[STORAGE_SCOPE], iam_endpoint_override=iam_endpoint_override)
    return storage.Client(project=project or adc_project, credentials=credentials)


def say(message: str) -> None:
    print(f"publish: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m velocast.train.publish",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["copy", "train"])
    parser.add_argument("--to", required=True, help="destination store: gs://bucket[/prefix]")
    parser.add_argument("--from", dest="source", help="copy: the folder store to copy")
    parser.add_argument("--data", help="train: the Paris export CSV[.gz]")
    parser.add_argument("--models", default="", help="train: model types (default: all)")
    parser.add_argument("--as", dest="service_account", default="",
                        help="act as this service account (impersonation)")
    parser.add_argument("--project", default="", help="GCP project of the bucket")
    args = parser.parse_args(argv)
    options = {}
    if args.service_account:
        options["client"] = impersonated_client(args.service_account, args.project or None)
        say(f"acting as {args.service_account}")
    destination = open_store(args.to, **options)
    if args.mode == "train":
        if not args.data:
            parser.error("train needs --data")
        from velocast.train.__main__ import main as train_main

        return train_main(["--data", args.data, "--store", args.to,
                           *(["--models", args.models] if args.models else [])],
                          store=destination)
    if not args.source:
        parser.error("copy needs --from")
    try:
        done = copy_store(open_store(args.source), destination)
    except PublishError as exc:
        print(f"publish: error: {exc}", file=sys.stderr)
        return 1
    say(f"{done.copied} object(s) copied, {done.kept} already there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
