"""runtime."""
# Ray is optional: importing ray_ps does not import ray (it is imported when a run starts).
from fedjax_lab.runtime.ray_ps import ParameterServerPool, RayPSResult, WorkerError, run_parameter_server
