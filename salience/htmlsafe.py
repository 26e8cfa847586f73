"""Static HTML reports made safe: the one Content-Security-Policy every self-contained report
(``salience report``, ``check``, ``cost``, ``attack``) carries, and the one escaper for the
strings from the data.

The policy allows no script at all, styles only inline and images only as data URIs, so markup
in a class, file, model or method name can neither run nor load anything. The explorer's server
sends its own header (:mod:`salience.server.security`): its pages load their scripts.
"""

from __future__ import annotations

import html
from typing import Any

REPORT_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'"
)
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{REPORT_CSP}">'


def escape(value: Any) -> str:
    """``str(value)`` escaped for HTML text and quoted attribute values."""
    return html.escape(str(value), quote=True)


def page(title: str, style: str, body: str) -> str:
    """A whole self-contained report page: the policy, ``title`` (escaped), the inline
    ``style`` and ``body`` (markup the caller built, its data strings escaped)."""
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{CSP_META}"
        f"<title>{escape(title)}</title><style>{style}</style></head><body>{body}</body></html>"
    )
