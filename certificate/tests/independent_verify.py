#!/usr/bin/env python3
"""Independent verifier of a Lapterop certificate, written without any of Lapterop's code.

Usage: independent_verify.py CERT.json CANONICAL|- STATION.pub

Canonicalises the certificate minus its "signature" member with RFC 8785 (the `rfc8785` package),
compares the bytes with CANONICAL (unless "-"), checks that the key id is the first 16 bytes of
blake3 of the public key, and checks the Ed25519 signature with pyca/cryptography.
Exit 0 when everything holds, 1 otherwise.
"""
import json
import sys

import blake3
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def main(doc_path, canonical_path, pub_path):
    with open(doc_path, "rb") as f:
        doc = json.loads(f.read().decode("utf-8"))
    sig = doc.pop("signature")
    canon = rfc8785.dumps(doc)
    if canonical_path != "-":
        with open(canonical_path, "rb") as f:
            expected = f.read()
        if canon != expected:
            print(f"canonical bytes differ ({len(canon)} vs {len(expected)} bytes)")
            return 1
    with open(pub_path) as f:
        pub = bytes.fromhex(f.read().strip())
    key_id = blake3.blake3(pub).digest()[:16].hex()
    if sig["algorithm"] != "ed25519" or sig["key_id"] != key_id or doc["station"]["key_id"] != key_id:
        print("key id or algorithm mismatch")
        return 1
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(bytes.fromhex(sig["value"]), canon)
    except InvalidSignature:
        print("signature does not verify")
        return 1
    print(f"ok: {doc['id']} ({len(canon)} canonical bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
