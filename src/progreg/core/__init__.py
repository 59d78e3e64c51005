"""The registry's format, with no Git in it.

Layout constants (:mod:`~progreg.core.layout`), canonical JSON, program ids
and names, the program document and its models, optimization results, the
secret screen, format migration, and the program types (DSPy modules among
them). Everything above builds on these; nothing here imports another
package of progreg.
"""
