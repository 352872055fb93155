"""The conformance kit (`conformance.suite`) run on every province installed here: the
same suite an integrator runs on their own (``gongji conformance``)."""

from conformance.suite import *  # noqa: F403
