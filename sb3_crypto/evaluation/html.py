"""One self-contained HTML page per report: a verdict, headings, text, tables and interactive figures.

The page opens offline from a single file: plotly.js is embedded once (never loaded from a CDN), the
styles are inline, and a Content-Security-Policy forbids the browser to fetch anything else (no
fonts, scripts or images from the network). Every piece of text that callers pass is escaped, so a
column name or a reason that contains ``<script>`` is shown, not run.

Figures are plotly figures (the ``report`` extra: ``pip install "sb3_crypto[report]"``); a page
made only of a verdict, text and tables needs no plotly::

    report = HtmlReport("Backtest", subtitle="SAC on CryptoTrading-v0, test split")
    report.verdict("edge", ["Sharpe 1.9 beats buy-and-hold's 0.4"], level="good")
    report.table([{"strategy": "agent", "sharpe": 1.93}], title="Metrics")
    report.figure(fig, title="Equity")  # a plotly.graph_objects.Figure
    report.write("logs/backtest/report.html")
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sb3_crypto.files import refuse_existing, write_text
from sb3_crypto.version import __version__

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

LEVELS = ("good", "bad", "warn", "info")
"""Levels of :meth:`HtmlReport.verdict`: the colour of the box that leads the page."""

REPORT_EXTRA = "report"
"""The extra that installs plotly: ``pip install "sb3_crypto[report]"``."""

# Nothing may be fetched: inline scripts and styles only (plotly.js compiles some functions with
# ``new Function``, hence 'unsafe-eval'; its images and the modebar's "download as png" use data: and blob:).
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'; worker-src blob:"
)

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1180px; padding: 1.5rem 1.5rem 3rem; color: #1f2933; line-height: 1.45; }
header h1 { margin: 0 0 .2rem; font-size: 1.7rem; }
header .subtitle { margin: 0 0 1.2rem; color: #52606d; }
.verdict { border-left: .45rem solid; border-radius: .3rem; padding: .8rem 1.2rem; margin: 0 0 1.5rem; }
.verdict .label { font-size: 1.45rem; font-weight: 700; margin: 0 0 .3rem; }
.verdict ul { margin: .2rem 0 0; padding-left: 1.3rem; }
.verdict-good { background: #e3f9e5; border-color: #31a354; }
.verdict-bad { background: #fde8e8; border-color: #d64545; }
.verdict-warn { background: #fff8e1; border-color: #e8a317; }
.verdict-info { background: #e6f0fb; border-color: #3d7ec9; }
h2 { margin: 2rem 0 .6rem; font-size: 1.3rem; border-bottom: 1px solid #d9e2ec; padding-bottom: .2rem; }
h3 { margin: 1.2rem 0 .4rem; font-size: 1.05rem; }
table.data { border-collapse: collapse; font-size: .9rem; margin: .3rem 0 1rem; }
table.data th, table.data td { padding: .25rem .7rem; border-bottom: 1px solid #e4e7eb; text-align: right; }
table.data th { background: #f5f7fa; }
table.data td.text, table.data th.text { text-align: left; }
.figure { margin: .3rem 0 1.2rem; }
footer { margin-top: 3rem; color: #7b8794; font-size: .8rem; }
"""


def _escape(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _is_float(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, (bool, Integral))


class HtmlReport:
    """A report built block by block and rendered as one self-contained HTML page.

    Blocks appear in the order they are added, except the verdict, which always leads the page.

    :param title: the page's title (``<title>`` and the top heading).
    :param subtitle: one line under the title (what was tested, on which data).
    """

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = str(title)
        self.subtitle = str(subtitle)
        self._verdict: str | None = None
        self._blocks: list[str] = []
        self._n_figures = 0

    @property
    def n_figures(self) -> int:
        """Number of figures added (each renders as one ``.js-plotly-plot`` element in a browser)."""
        return self._n_figures

    def verdict(self, label: str, reasons: Sequence[str], level: str = "info") -> None:
        """The prominent box that leads the page: a short ``label`` and the ``reasons`` behind it.

        :param level: ``"good"``, ``"bad"``, ``"warn"`` or ``"info"`` (the box's colour).
        """
        if level not in LEVELS:
            raise ValueError(f"verdict level must be one of {', '.join(LEVELS)}, got {level!r}")
        if self._verdict is not None:
            raise ValueError("the report has a verdict already; a page leads with one verdict")
        if isinstance(reasons, str):
            reasons = [reasons]
        items = "".join(f"<li>{_escape(reason)}</li>" for reason in reasons)
        self._verdict = (
            f'<section class="verdict verdict-{level}" role="status">'
            f'<p class="label">{_escape(label)}</p>' + (f"<ul>{items}</ul>" if items else "") + "</section>"
        )

    def heading(self, text: str) -> None:
        """A section heading."""
        self._blocks.append(f"<h2>{_escape(text)}</h2>")

    def text(self, text: str) -> None:
        """Plain text, escaped: blank lines separate paragraphs, single newlines are kept."""
        paragraphs = [part.strip("\n") for part in re.split(r"\n\s*\n", str(text)) if part.strip()]
        self._blocks.append(
            "".join("<p>" + "<br>".join(_escape(line) for line in part.split("\n")) + "</p>" for part in paragraphs)
        )

    def table(
        self,
        data: pd.DataFrame | Sequence[Mapping[str, Any]],
        title: str | None = None,
        float_format: str = "{:.4g}",
    ) -> None:
        """A table of a DataFrame (its index is shown unless it is the default 0..n-1) or of records
        (one mapping per row, columns in order of first appearance).

        :param float_format: format of the floats (``str.format`` syntax); NaN and None show as a dash.
        """
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            frame = data
        elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
            for row, record in enumerate(data):
                if not isinstance(record, Mapping):
                    kind = type(record).__name__
                    raise TypeError(f"table row {row} is a {kind}, expected a mapping (column -> value)")
            frame = pd.DataFrame.from_records(list(data))
        else:
            raise TypeError(f"table data must be a DataFrame or a sequence of mappings, got {type(data).__name__}")
        try:
            float_format.format(1.5)
        except (ValueError, IndexError, KeyError) as error:
            raise ValueError(f"float_format {float_format!r} cannot format a float: {error}") from None
        show_index = not (isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1)

        def cell(value: Any) -> tuple[str, bool]:
            """The cell's escaped text and whether it is a number (right-aligned)."""
            if value is None or (_is_float(value) and value != value):
                return "&ndash;", True
            if _is_float(value):
                return _escape(float_format.format(float(value))), True
            if isinstance(value, Integral) and not isinstance(value, bool):
                return _escape(value), True
            return _escape(value), False

        parts = []
        if title:
            parts.append(f"<h3>{_escape(title)}</h3>")
        parts.append('<table class="data"><thead><tr>')
        if show_index:
            parts.append(f'<th class="text">{_escape(frame.index.name or "")}</th>')
        parts.extend(f"<th>{_escape(column)}</th>" for column in frame.columns)
        parts.append("</tr></thead><tbody>")
        for label, row in zip(frame.index, frame.itertuples(index=False, name=None)):
            parts.append("<tr>")
            if show_index:
                parts.append(f'<th class="text">{_escape(label)}</th>')
            for value in row:
                content, number = cell(value)
                parts.append(f"<td>{content}</td>" if number else f'<td class="text">{content}</td>')
            parts.append("</tr>")
        parts.append("</tbody></table>")
        self._blocks.append("".join(parts))

    def figure(self, fig: go.Figure, title: str | None = None) -> None:
        """An interactive plotly figure (zoom, hover, legend toggles); plotly.js is embedded once
        per page, however many figures it has."""
        pio = require_plotly()
        self._n_figures += 1
        div = pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=False,
            include_mathjax=False,
            div_id=f"figure-{self._n_figures}",
            default_width="100%",
            default_height=f"{int(fig.layout.height or 440)}px",
            config={"displaylogo": False, "responsive": True},
            validate=True,
        )
        heading = f"<h3>{_escape(title)}</h3>" if title else ""
        self._blocks.append(f'<div class="figure">{heading}{div}</div>')

    def render(self) -> str:
        """The whole page as one HTML string."""
        script = ""
        if self._n_figures:
            from plotly.offline import get_plotlyjs

            script = f'<script type="text/javascript">{get_plotlyjs()}</script>'
        subtitle = f'<p class="subtitle">{_escape(self.subtitle)}</p>' if self.subtitle else ""
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="generator" content="sb3_crypto {_escape(__version__)}">'
            f"<title>{_escape(self.title)}</title><style>{_STYLE}</style>{script}</head>\n<body>"
            f"<header><h1>{_escape(self.title)}</h1>{subtitle}</header>\n"
            + (self._verdict or "")
            + "\n".join(self._blocks)
            + f"\n<footer>Written by sb3_crypto {_escape(__version__)}.</footer></body></html>\n"
        )

    def write(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the page to ``path`` atomically; an existing file is replaced only with ``overwrite``
        (else :class:`sb3_crypto.files.OutputExistsError`)."""
        target = Path(path)
        refuse_existing([target], overwrite=overwrite, flag="overwrite=True")
        return write_text(target, self.render())


def require_plotly() -> Any:
    """``plotly.io``, or an :class:`ImportError` that names the extra to install."""
    try:
        import plotly.io as pio
    except ImportError as error:
        raise ImportError(f'HTML report figures need plotly: pip install "sb3_crypto[{REPORT_EXTRA}]"') from error
    return pio


def plotly_available() -> bool:
    """Whether plotly is installed (the ``report`` extra), so that figures can be added."""
    try:
        import plotly.io  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = ["LEVELS", "REPORT_EXTRA", "HtmlReport", "plotly_available", "require_plotly"]
