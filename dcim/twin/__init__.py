"""The digital twin of the reference site: physics and ground truth (``model``, ``physics``),
history (``backfill``), the reference config (``site``) and the protocol servers
(``serve_*``, ``runner``)."""
