"""``python -m submission -input /data/input/ -output /data/output/submission.csv``"""

from submission.cli import main

raise SystemExit(main())
