#!/usr/bin/env python3
"""Checks a Lapterop server's Merkle tree, tree heads and proofs with code we did not write.

Usage: independent_merkle.py CHECK.json

CHECK.json holds what the test fetched from the server:
  leaves:      the leaf data of the log, hex, in order (lapterop.log.leaf/v1 bytes, docs/certificate.md)
  heads:       [{tree_size, root_hash}] from signed tree heads (signatures checked by the caller)
  inclusion:   [{leaf_index, tree_size, audit_path}] as the server gave them
  consistency: [{first, second, consistency_path}] as the server gave them

With pymerkle (PyPI, RFC 9162 hashing: SHA-256, 0x00 leaf and 0x01 node prefixes):
  - it builds its own tree of the leaves; its root for every head's size must be the head's root;
  - every inclusion proof of the server, the leaf hash first as pymerkle takes it, must pass
    pymerkle.verify_inclusion against the head's root (pymerkle derives the path's shape itself);
  - for every consistency pair, pymerkle's own consistency proof between the two sizes must pass
    pymerkle.verify_consistency against the server's two roots (its proof format is not RFC 9162's).
The server's RFC 9162 consistency paths are checked by verify_rfc9162_consistency below, a
transcription of RFC 9162 section 2.1.4.2 that shares no code with Lapterop.
Exit 0 when everything holds, 1 with the first failure otherwise.
"""
import hashlib
import json
import sys

import pymerkle
from pymerkle.core import _inclusion_path_layout


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_rfc9162_consistency(first, second, first_hash, second_hash, path):
    """RFC 9162 section 2.1.4.2, step by step (0 < first < second)."""
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [first_hash] + path
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


def main(path):
    with open(path) as f:
        check = json.load(f)
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for leaf in check["leaves"]:
        tree.append_entry(bytes.fromhex(leaf))
    roots = {}
    for head in check["heads"]:
        size, root = head["tree_size"], bytes.fromhex(head["root_hash"])
        if tree.get_root(size) != root:
            print(f"root of {size} leaves differs from pymerkle's")
            return 1
        roots[size] = root
    for p in check["inclusion"]:
        index, size = p["leaf_index"] + 1, p["tree_size"]
        base = tree.hash_buff(bytes.fromhex(check["leaves"][p["leaf_index"]]))
        rule, _ = _inclusion_path_layout(index, size)
        proof = pymerkle.InclusionProof("sha256", True, size, index, rule,
                                        [base] + [bytes.fromhex(h) for h in p["audit_path"]])
        try:
            pymerkle.verify_inclusion(base, roots[size], proof, index=index, size=size)
        except pymerkle.InvalidProof as e:
            print(f"inclusion of leaf {p['leaf_index']} in {size}: {e}")
            return 1
    for p in check["consistency"]:
        first, second = p["first"], p["second"]
        own = tree.prove_consistency(first, second)
        try:
            pymerkle.verify_consistency(roots[first], roots[second], own,
                                        prior_size=first, later_size=second)
        except pymerkle.InvalidProof as e:
            print(f"heads of {first} and {second} leaves are not consistent: {e}")
            return 1
        if first < second and not verify_rfc9162_consistency(
                first, second, roots[first], roots[second],
                [bytes.fromhex(h) for h in p["consistency_path"]]):
            print(f"consistency path {first} -> {second} does not verify (RFC 9162 2.1.4.2)")
            return 1
    print(f"ok: {len(check['leaves'])} leaves, {len(check['heads'])} heads, "
          f"{len(check['inclusion'])} inclusion and {len(check['consistency'])} consistency proofs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
