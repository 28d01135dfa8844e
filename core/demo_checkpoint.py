"""`python -m core.demo_checkpoint DIR [--flag-all]`, the name DESIGN.md gives the demo writer: core.demo.checkpoint."""

from __future__ import annotations

from core.demo.checkpoint import main

if __name__ == "__main__":
    raise SystemExit(main())
