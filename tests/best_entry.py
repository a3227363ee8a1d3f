"""The best published entry by a metric, as the catalog ranks them (velocast.catalog.ranked):
what a store without promotions serves for that (type, metric)."""

from velocast import catalog
from velocast.catalog.registry import DEFAULT_METRIC


def best_entry(entries, task, metric=None, model_type=None):
    return next(iter(catalog.ranked(entries, task, metric or DEFAULT_METRIC[task], model_type)), None)
