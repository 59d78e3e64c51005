"""The entry point of the server hook: ``from progreg.hooks import pre_receive``.

Installed hooks (``progreg hooks install``, ``hooks/pre-receive``) import this
path, so it stays stable whatever the package layout; the hook itself lives in
:mod:`progreg.integrations.hooks`.
"""

from progreg.integrations.hooks import pre_receive

__all__ = ["pre_receive"]
