"""The ``crossrec`` command line: a thin shell over :class:`crossrec.workspace.Workspace`."""

from __future__ import annotations

import sys

from crossrec.cli.common import new_app

app = new_app(
    "crossrec: cross-platform account linkage and recommendation powered by pretrained models."
)


def _register() -> None:
    from crossrec.cli import datasets, demo, ingest, link, train

    ingest.register(app)
    train.register(app)
    link.register(app)
    datasets.register(app)
    demo.register(app)
    from crossrec.cli import report

    report.register(app)
    from crossrec.cli import forget

    forget.register(app)
    from crossrec.cli import recommend

    recommend.register(app)
    from crossrec.cli import serve

    serve.register(app)
    from crossrec.cli import stream

    stream.register(app)
    from crossrec.cli import export

    export.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="crossrec")
