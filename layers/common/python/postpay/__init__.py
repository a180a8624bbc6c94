"""Post-Pay: usage billing for SolusVM 2. Shared code of every function (the Lambda layer).

Imported first by every function's own imports, after the runtime's and the dependencies' modules: those are
moved out of the cyclic garbage collector's reach (``gc.freeze``), as they live as long as the process. A cold
start then no longer pays a full collection that walks the whole heap the dependencies built (one, triggered
by whichever of the product's modules happened to cross the threshold, was 15 ms of the sign-up function's
import), and neither does a warm invocation's. Objects created later are collected as before.
"""

import gc

gc.freeze()
