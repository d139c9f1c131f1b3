"""Live mode: the center loop in real time against field controllers.

The door that faces the field (see docs/LIVE.md): GPS and detector ingest
(:mod:`.ingest`, over MQTT :mod:`.mqtt` and the API's live router), the center loop
(:mod:`.service`: the same :class:`~twin.center.ev_center.EvCenter`, priority manager,
guard and adaptive kernel as a simulated run) commanding field controllers through an
NTCIP 1202 adapter (:mod:`.ntcip`, :mod:`.snmp`, :mod:`.adapter`), SPaT out
(:mod:`.spat`), an append-only audit log with a hash chain (:mod:`.audit`), a shadow
twin (:mod:`.shadow`), and a controller emulator with its own conflict monitor
(:mod:`.emulator`, :mod:`.mmu`) to run it all against.
"""
