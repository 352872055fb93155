"""The conformance kit (`conformance.suite`) on Shandong alone: this package's adapter
against this package's sandbox, staged with this package's people. The same suite as
``gongji conformance --province shandong``."""

import os

# Before the kit is imported: it picks its provinces (and their people) at import.
os.environ["GONGJI_CONFORMANCE"] = "shandong"

from conformance.suite import *  # noqa: F403
