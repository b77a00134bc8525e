"""RFC 9162 Merkle tree hashing, proof verification and proof planning -- pure functions.

Names follow RFC 9162 section 2.1.  Hashes are SHA-256 and exactly :data:`HASH_SIZE` bytes.

Proof *generation* is split in two so a database can serve any proof in one query:
:func:`inclusion_proof_ranges` / :func:`consistency_proof_ranges` say which leaf ranges
``[start, end)`` the proof hashes cover (in proof order), :func:`perfect_nodes` says which stored
perfect nodes ``(level, index)`` make up such a range, and :func:`range_hash` folds the fetched
nodes back into the range's hash.  A perfect node ``(level, i)`` is the tree hash of leaves
``[i * 2**level, (i + 1) * 2**level)``; level 0 nodes are the leaf hashes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence

from custody.errors import ConsistencyProofError, InclusionProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_PROOF_HASHES",
    "CompactRange",
    "consistency_proof",
    "consistency_proof_ranges",
    "inclusion_proof",
    "inclusion_proof_ranges",
    "leaf_hash",
    "node_hash",
    "perfect_nodes",
    "range_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
# A tree of up to 2**64 leaves has depth 64, so no proof needs more hashes; longer is malformed
# and refusing it early bounds the work an untrusted proof can cause.
MAX_PROOF_HASHES = 64
# RFC 9162 section 2.1.1: the hash of an empty list is the hash of an empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()
# Tree sizes are bounded by the number of leaves a 64-bit index can name.
MAX_TREE_SIZE = 2**64 - 1

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256

NodeKey = tuple[int, int]
"""A stored perfect node: ``(level, index)``."""


def leaf_hash(data: bytes) -> bytes:
    """``MTH({d}) = SHA-256(0x00 || d)`` (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)`` (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


class CompactRange:
    """Streaming root computation: append leaf hashes, ask for the root at any point.

    Keeps one hash per set bit of the size (O(log n) memory); :meth:`append` is amortised O(1)
    and :meth:`root` is O(log n).
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf: bytes) -> None:
        """Append the next leaf hash.

        Raises:
            ValueError: ``leaf`` is not ``HASH_SIZE`` bytes.
        """
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf)}")
        stack = self._stack
        size = self._size
        self._size = size + 1
        # Each trailing 1 bit of the old size is a complete subtree that now merges.  Inlined
        # node_hash: this runs once per leaf of every verified export.
        while size & 1:
            leaf = _sha256(_NODE_PREFIX + stack.pop() + leaf).digest()
            size >>= 1
        stack.append(leaf)

    def append_subtree(self, level: int, node: bytes) -> None:
        """Append ``2**level`` leaves at once, given the root of their perfect subtree.

        Raises:
            ValueError: The size is not a multiple of ``2**level`` (the subtree would not be a
                node of the tree), ``level`` is negative, or ``node`` is not ``HASH_SIZE`` bytes.
        """
        if level < 0 or self._size & ((1 << level) - 1):
            raise ValueError(f"size {self._size} is not a multiple of 2**{level}")
        if len(node) != HASH_SIZE:
            raise ValueError(f"node hash must be {HASH_SIZE} bytes, got {len(node)}")
        stack = self._stack
        size = self._size >> level
        self._size += 1 << level
        while size & 1:
            node = _sha256(_NODE_PREFIX + stack.pop() + node).digest()
            size >>= 1
        stack.append(node)

    def root(self) -> bytes:
        """The RFC 9162 root of the leaves appended so far (``EMPTY_ROOT`` for none)."""
        if not self._stack:
            return EMPTY_ROOT
        stack = self._stack
        root = stack[-1]
        for left in reversed(stack[:-1]):
            root = node_hash(left, root)
        return root


def root_from_leaf_hashes(leaves: Iterable[bytes]) -> bytes:
    """The RFC 9162 tree head ``MTH(D[n])`` over ``leaves`` (streamed, O(log n) memory).

    Raises:
        ValueError: A leaf hash is not ``HASH_SIZE`` bytes.
    """
    compact = CompactRange()
    for leaf in leaves:
        compact.append(leaf)
    return compact.root()


def _check_hash(
    value: bytes, what: str, error: type[InclusionProofError | ConsistencyProofError]
) -> None:
    if len(value) != HASH_SIZE:
        raise error(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Verify that ``leaf`` is leaf ``index`` of the tree of ``tree_size`` with head ``root``.

    RFC 9162 section 2.1.3.2.

    Raises:
        InclusionProofError: The proof does not verify, is too long, or holds a hash of the
            wrong size; ``index >= tree_size``; or any hash is not ``HASH_SIZE`` bytes.
        ValueError: ``index`` or ``tree_size`` is negative.
    """
    if index < 0 or tree_size < 0:
        raise ValueError("index and tree size must not be negative")
    if index >= tree_size:
        raise InclusionProofError(f"leaf index {index} not below tree size {tree_size}")
    _check_hash(leaf, "leaf hash", InclusionProofError)
    _check_hash(root, "root", InclusionProofError)
    if len(proof) > MAX_PROOF_HASHES:
        raise InclusionProofError(f"proof has {len(proof)} hashes, more than {MAX_PROOF_HASHES}")
    fn, sn = index, tree_size - 1
    r = leaf
    for p in proof:
        _check_hash(p, "proof hash", InclusionProofError)
        if sn == 0:
            raise InclusionProofError("proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InclusionProofError("proof is shorter than the path to the root")
    if not hmac.compare_digest(r, root):
        raise InclusionProofError("proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Verify that the tree of ``size2`` with head ``root2`` extends the one of ``size1``/``root1``.

    RFC 9162 section 2.1.4.2.  Equal sizes need an empty proof and equal roots.  A proof from
    size 0 is refused: the empty tree is a prefix of every tree, so there is nothing to prove
    and a non-empty "proof" of it is malformed.

    Raises:
        ConsistencyProofError: The proof does not verify, sizes are 0 or decreasing, or (for
            different sizes) any hash is not ``HASH_SIZE`` bytes.
        ValueError: A size is negative.
    """
    if _same_tree(size1, size2, proof, root1, root2):
        return
    _check_hash(root1, "root1", ConsistencyProofError)
    _check_hash(root2, "root2", ConsistencyProofError)
    if len(proof) > MAX_PROOF_HASHES:
        raise ConsistencyProofError(f"proof has {len(proof)} hashes, more than {MAX_PROOF_HASHES}")
    for p in proof:
        _check_hash(p, "proof hash", ConsistencyProofError)
    if not proof:
        raise ConsistencyProofError("empty proof between different sizes")
    fr, sr = _consistency_roots(size1, size2, proof, root1)
    if not hmac.compare_digest(fr, root1):
        raise ConsistencyProofError("proof does not lead to root1")
    if not hmac.compare_digest(sr, root2):
        raise ConsistencyProofError("proof does not lead to root2")


def _same_tree(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> bool:
    """Refuse sizes no proof can join; True when the sizes are equal and the roots agree."""
    if size1 < 0 or size2 < 0:
        raise ValueError("tree sizes must not be negative")
    if size1 == 0:
        raise ConsistencyProofError("no consistency proof from the empty tree")
    if size1 > size2:
        raise ConsistencyProofError(f"size1 {size1} is greater than size2 {size2}")
    if size1 != size2:
        return False
    # Only equality matters here: a tree is consistent with itself whatever its root's
    # encoding (transparency-dev/merkle behaves so, and its vector
    # "sizes-are-equal-one-and-proof-is-empty" uses 12-byte roots).  Hash lengths are
    # checked wherever a hash is computed with.
    if proof:
        raise ConsistencyProofError("proof between equal sizes must be empty")
    if not hmac.compare_digest(root1, root2):
        raise ConsistencyProofError("roots of equal sizes differ")
    return True


def _consistency_roots(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> tuple[bytes, bytes]:
    """The two roots the proof leads to (RFC 9162 2.1.4.2, steps 1-7), for different sizes."""
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is the first node
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ConsistencyProofError("proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ConsistencyProofError("proof is shorter than needed")
    return fr, sr


# --- proof planning (for the side that holds the tree) -------------------------------------


def _split(n: int) -> int:
    """The largest power of two strictly less than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges ``[start, end)`` whose tree hashes form ``PATH(index, D[size])``, in proof order.

    RFC 9162 section 2.1.3.1.

    Raises:
        ValueError: ``not 0 <= index < size``.
    """
    if not 0 <= index < size:
        raise ValueError(f"need 0 <= index < size, got index {index}, size {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()  # the recursion emits the deepest sibling first
    return ranges


def consistency_proof_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """Leaf ranges whose tree hashes form ``PROOF(size1, D[size2])``, in proof order.

    RFC 9162 section 2.1.4.1.  Empty when the sizes are equal.

    Raises:
        ValueError: ``not 0 < size1 <= size2``.
    """
    if not 0 < size1 <= size2:
        raise ValueError(f"need 0 < size1 <= size2, got {size1}, {size2}")
    ranges: list[tuple[int, int]] = []
    m, start, end, whole = size1, 0, size2, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            m -= k
            start += k
            whole = False
    if not whole:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def _check_subtree(start: int, end: int) -> None:
    size = end - start
    if start < 0 or size <= 0:
        raise ValueError(f"empty or negative range [{start}, {end})")
    # A subtree of an RFC 9162 tree starts at a multiple of the next power of two >= its size.
    if start % (1 << (size - 1).bit_length()) != 0:
        raise ValueError(f"[{start}, {end}) is not a subtree of any RFC 9162 tree")


def perfect_nodes(start: int, end: int) -> list[NodeKey]:
    """Decompose the subtree of leaves ``[start, end)`` into stored perfect nodes, left to right.

    Works for every range a proof or a tree head needs (``perfect_nodes(0, n)`` gives the
    nodes for the root of a tree of size ``n``).

    Raises:
        ValueError: The range is empty or is not a subtree of any RFC 9162 tree.
    """
    _check_subtree(start, end)
    nodes: list[NodeKey] = []
    while start < end:
        level = (end - start).bit_length() - 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def range_hash(start: int, end: int, nodes: Mapping[NodeKey, bytes]) -> bytes:
    """The tree hash ``MTH(D[start:end])`` folded from the perfect nodes of :func:`perfect_nodes`.

    Raises:
        ValueError: The range is not a subtree, or a node is missing or not ``HASH_SIZE`` bytes.
    """
    keys = perfect_nodes(start, end)
    hashes = []
    for key in keys:
        value = nodes.get(key)
        if value is None or len(value) != HASH_SIZE:
            raise ValueError(f"perfect node {key} missing or not {HASH_SIZE} bytes")
        hashes.append(value)
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def _proof(
    ranges: list[tuple[int, int]], get_nodes: Callable[[set[NodeKey]], Mapping[NodeKey, bytes]]
) -> list[bytes]:
    wanted = {key for start, end in ranges for key in perfect_nodes(start, end)}
    nodes = get_nodes(wanted) if wanted else {}
    return [range_hash(start, end, nodes) for start, end in ranges]


def inclusion_proof(
    index: int, size: int, get_nodes: Callable[[set[NodeKey]], Mapping[NodeKey, bytes]]
) -> list[bytes]:
    """Build the inclusion proof of leaf ``index`` in the tree of ``size``.

    ``get_nodes`` receives every ``(level, index)`` needed, once, and returns a mapping of them
    to their hashes (one database query).

    Raises:
        ValueError: ``not 0 <= index < size``, or ``get_nodes`` left a node out.
    """
    return _proof(inclusion_proof_ranges(index, size), get_nodes)


def consistency_proof(
    size1: int, size2: int, get_nodes: Callable[[set[NodeKey]], Mapping[NodeKey, bytes]]
) -> list[bytes]:
    """Build the consistency proof from the tree of ``size1`` to the tree of ``size2``.

    Raises:
        ValueError: ``not 0 < size1 <= size2``, or ``get_nodes`` left a node out.
    """
    return _proof(consistency_proof_ranges(size1, size2), get_nodes)
