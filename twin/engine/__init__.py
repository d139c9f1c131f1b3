"""The engine: SUMO I/O, the session, state arrays, event bus, the steppable run,
metrics, the run store and the executors. It never imports a city or a scenario:
what it needs of them arrives as plain inputs and protocols (:mod:`twin.engine.run`)."""
