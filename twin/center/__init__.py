"""The control center's decisions: the same code in simulation and in live mode.

- :mod:`twin.center.tracking`: GPS reports, map matching to the proposed route, the
  tracker (rejects garbage, goes stale, estimates arrival times);
- :mod:`twin.center.ev_routes`: the EV's route and the signals on it;
- :mod:`twin.center.preemption`: the preemption planner (tracker + signals ahead + port
  state + queues -> priority requests);
- :mod:`twin.center.signs`: the VMS sign logic.

It may import the engine (for types), the map (:mod:`city_models`) and
:mod:`signal_control`; never a scenario: the simulated world lives above it.
"""
