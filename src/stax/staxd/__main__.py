"""``python -m stax.staxd``: the same as the ``staxd`` console script.

Lets a unit file start staxd with only an interpreter path.
"""

import sys

from stax.staxd.daemon import main

sys.exit(main())
