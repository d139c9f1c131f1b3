"""City importers: each turns one source (OpenStreetMap, an engineer's SUMO model, the
Korean standard node-link) into a :class:`~city_models.importers.base.SourceNet`; the one
shared pipeline (:mod:`city_models.pipeline`) makes a city folder of it."""
