"""Shandong (山东, province code 37) for Gongji, out of tree: an adapter speaking
JSON-RPC 2.0 (`gongji_shandong.adapter`) and the sandbox modelling the province
(`gongji_shandong.sandbox`), registered under the ``gongji.adapters`` and
``gongji.sandboxes`` entry points. Its rules, people and codes are illustrative."""
