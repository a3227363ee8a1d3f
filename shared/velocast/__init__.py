"""velocast: hourly bicycle-traffic prediction for the Paris bike counters.

Runtime modules (features, schema, store, registry, model_cache, auth, http, logs)
import only the standard library, numpy, onnxruntime and the Google clients.
`velocast.train` is the offline pipeline and may use scikit-learn and pandas.
"""

__version__ = "0.1.0"
