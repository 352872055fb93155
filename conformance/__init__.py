"""The conformance kit: one suite that every province adapter must pass, run against
the province's own sandbox.

Run it on the provinces installed (entry points ``gongji.adapters`` and
``gongji.sandboxes``, a province's adapter and sandbox under one name)::

    gongji conformance                 # every province installed
    gongji conformance shandong -x     # one province; pytest's options after it

or from a test module of your own package (``asyncio_mode = "auto"`` in its pytest
configuration)::

    from conformance.suite import *  # noqa: F403

What a province's sandbox must provide (docs/adding-a-province.md, "The kit"): an
application built on `sandbox.engine.ProvinceSystem`, a dialect (`sandbox.dialect`),
and people (`sandbox.engine` roster format) to stage every scenario. A scenario its
people cannot stage fails, saying what is missing; none is left out silently.
"""
