"""Git objects: their encoding and ids, trees and tree diffs, deltas, commit
trailers, identities, signatures, and the fsck rules an object must pass."""
