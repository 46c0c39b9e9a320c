"""Suite-wide settings.

OpenMP threads that spin-wait collapse throughput on a loaded 2-core machine (torch's default);
passive waiting must be chosen before the OpenMP runtime starts, i.e. before torch is imported.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
