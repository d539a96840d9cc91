"""Entry point of ``python -m n2v_tf`` (same as the ``n2v-tf`` command)."""
from .cli import main

raise SystemExit(main())
