"""One single-layer image as a registry serves it: its config and its
schema 2 manifest, for the fake registries of the integration tests."""

from __future__ import annotations

import hashlib
import json


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_documents(layer_tar: bytes, layer_blob: bytes, arch: str, created_by: str) -> tuple[bytes, bytes]:
    """(config, manifest) for an image whose one layer is ``layer_tar``,
    served compressed as ``layer_blob``."""
    config = json.dumps({
        "architecture": arch, "os": "linux", "config": {"Cmd": ["/payload.bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(layer_tar)]},
        "history": [{"created_by": created_by}],
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(config), "digest": sha(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer_blob), "digest": sha(layer_blob)}],
    }).encode()
    return config, manifest
