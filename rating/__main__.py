"""``python -m rating --input DIR --output DIR``: the batch rater without the trunkline CLI."""

from rating.batch import main

raise SystemExit(main())
