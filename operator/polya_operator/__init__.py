"""PolyaRun operator: kopf handlers that drive each PolyaRun through its stages as Jobs."""
