"""Where a registry keeps things in its Git repository: the one definition of each name.

docs/format.md describes the layout; these names are a contract with every
registry already written.
"""

#: The branch holding every live program.
MAIN = "refs/heads/main"
#: The file at the root of ``main``'s tree saying "this is a progreg registry".
MARKER = "progreg.json"
#: The directory of ``main``'s tree holding the program files.
PROGRAMS_DIR = "programs"
#: The directory of ``main``'s tree holding one label file per signature,
#: ``labels/<signature>.json``.
LABELS_DIR = "labels"
#: Tags are ``refs/tags/<tag>/<program id>``.
TAGS_PREFIX = "refs/tags/"
#: Checkpoints are branches ``refs/heads/checkpoints/<run>``.
CHECKPOINTS_PREFIX = "refs/heads/checkpoints/"
#: Remote-tracking refs are ``refs/remotes/<remote>/...``.
REMOTES_PREFIX = "refs/remotes/"
#: The Git attributes file at the root of ``main``'s tree.
ATTRIBUTES = ".gitattributes"
#: The merge and diff driver its attributes name (``merge.progreg.*`` in a clone's config).
DRIVER = "progreg"
#: What progreg writes in :data:`ATTRIBUTES`.
ATTRIBUTES_TEXT = (
    "# Written by progreg. Program files merge value by value and diff one value per line\n"
    "# in a clone that defines the drivers (progreg hooks install); else Git uses text.\n"
    f"{PROGRAMS_DIR}/**/*.json merge={DRIVER} diff={DRIVER}\n"
)

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTES_TEXT",
    "CHECKPOINTS_PREFIX",
    "DRIVER",
    "LABELS_DIR",
    "MAIN",
    "MARKER",
    "PROGRAMS_DIR",
    "REMOTES_PREFIX",
    "TAGS_PREFIX",
]
