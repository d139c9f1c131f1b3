"""The center's SNMP manager for one field controller (pysnmp 7's SNMPv2c messages over
an asyncio datagram endpoint).

One :class:`SnmpLink` per controller, each with its own UDP socket, so a controller
that stops answering or answers garbage only ever delays its own requests. Requests are
BER-encoded with pysnmp's protocol API (``pysnmp.proto.api.v2c``) and matched to their
answers by request id; a request unanswered within ``timeout_s`` is sent again
``retries`` times. pysnmp's high-level API does the same with more work per request
(object resolution, var-bind processing); on a loaded two-core machine that work was
most of a SET's latency, so the link builds the messages itself.

Every answer is checked: an SNMP error status, a timeout, an object that does not
exist, a value that is not an integer, an answer about other objects than asked or a
datagram that is not SNMP is a :class:`ControllerError` with the reason, never a crash.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pysnmp.proto import api as snmp_api

from twin.app.live import ntcip
from twin.errors import TwinError

log = logging.getLogger(__name__)

Failure = Literal["timeout", "snmp_error", "garbage", "no_such_object"]
_P = snmp_api.PROTOCOL_MODULES[snmp_api.SNMP_VERSION_2C]
_IDS = itertools.count(1)


class ControllerError(TwinError, RuntimeError):
    """A controller did not answer, or answered with an error or garbage."""

    def __init__(self, tls: str, kind: Failure, detail: str) -> None:
        super().__init__(f"controller {tls}: {kind}: {detail}")
        self.tls = tls
        self.kind = kind
        self.detail = detail


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, link: SnmpLink) -> None:
        self.link = link

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.link._received(data)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable and the like
        log.debug("controller %s: %s", self.link.tls, exc)


class SnmpLink:
    """GET and SET of integer objects on one controller (SNMPv2c)."""

    def __init__(
        self,
        tls: str,
        *,
        host: str,
        port: int,
        community: str,
        timeout_s: float,
        retries: int,
    ) -> None:
        self.tls = tls
        self.host = host
        self.port = port
        self.community = community
        self.timeout_s = timeout_s
        self.retries = retries
        self.last_latency_s = float("nan")
        self.garbage = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._garbled: set[int] = set()

    async def open(self) -> None:
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self), remote_addr=(self.host, self.port)
        )
        self._transport = transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()

    # ------------------------------------------------------------------ wire
    def _message(self, op: str, req_id: int, binds: Sequence[tuple[ntcip.Oid, Any]]) -> bytes:
        pdu = _P.GetRequestPDU() if op == "get" else _P.SetRequestPDU()
        _P.apiPDU.set_defaults(pdu)
        _P.apiPDU.set_request_id(pdu, req_id)
        _P.apiPDU.set_varbinds(pdu, [(_P.ObjectIdentifier(o), v) for o, v in binds])
        msg = _P.Message()
        _P.apiMessage.set_defaults(msg)
        _P.apiMessage.set_community(msg, self.community)
        _P.apiMessage.set_pdu(msg, pdu)
        return bytes(encoder.encode(msg))

    def _received(self, data: bytes) -> None:
        try:
            msg, _rest = decoder.decode(data, asn1Spec=_P.Message())
            pdu = _P.apiMessage.get_pdu(msg)
            req_id = int(_P.apiPDU.get_request_id(pdu))
        except (PyAsn1Error, ValueError, TypeError, KeyError, IndexError) as exc:
            self.garbage += 1
            self._garbled.update(self._pending)
            log.warning("controller %s: an answer that is not SNMP was dropped (%s)", self.tls, exc)
            return
        fut = self._pending.get(req_id)
        if fut is not None and not fut.done():
            fut.set_result(pdu)

    async def _call(
        self, op: str, binds: Sequence[tuple[ntcip.Oid, Any]]
    ) -> list[tuple[ntcip.Oid, Any]]:
        if self._transport is None:
            await self.open()
        assert self._transport is not None
        req_id = next(_IDS) & 0x7FFFFFFF
        data = self._message(op, req_id, binds)
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        try:
            for _attempt in range(self.retries + 1):
                fut: asyncio.Future[Any] = loop.create_future()
                self._pending[req_id] = fut
                self._transport.sendto(data)
                try:
                    pdu = await asyncio.wait_for(fut, self.timeout_s)
                    break
                except TimeoutError:
                    continue
            else:
                kind: Failure = "garbage" if req_id in self._garbled else "timeout"
                raise ControllerError(
                    self.tls,
                    kind,
                    f"{op}: no valid answer in {self.retries + 1} x {self.timeout_s:g} s",
                )
        finally:
            self._pending.pop(req_id, None)
            self._garbled.discard(req_id)
        self.last_latency_s = time.perf_counter() - t0
        status = int(_P.apiPDU.get_error_status(pdu))
        if status:
            k = int(_P.apiPDU.get_error_index(pdu, muteErrors=True))
            what = ntcip.describe(binds[k - 1][0]) if 0 < k <= len(binds) else "?"
            name = _P.apiPDU.get_error_status(pdu).prettyPrint()
            raise ControllerError(self.tls, "snmp_error", f"{op} {what}: {name}")
        return [(tuple(oid), val) for oid, val in _P.apiPDU.get_varbinds(pdu)]

    # ------------------------------------------------------------------ calls
    async def get(self, oids: Sequence[ntcip.Oid]) -> list[int | None]:
        """The integer values of ``oids`` (``None``: the controller has no such object)."""
        answer = await self._call("get", [(o, _P.Null("")) for o in oids])
        if [o for o, _v in answer] != list(oids):
            raise ControllerError(
                self.tls, "garbage", "the answer is about other objects than asked"
            )
        out: list[int | None] = []
        for oid, value in answer:
            if isinstance(value, univ.Integer):
                out.append(int(value))
            elif value.__class__.__name__ in ("NoSuchInstance", "NoSuchObject", "EndOfMibView"):
                out.append(None)
            else:
                raise ControllerError(
                    self.tls,
                    "garbage",
                    f"{ntcip.describe(oid)} is {value.__class__.__name__}, not an integer",
                )
        return out

    async def set(self, pairs: Sequence[tuple[ntcip.Oid, int]]) -> None:
        """Write integer objects, all in one request (the controller applies all or none)."""
        answer = await self._call("set", [(o, _P.Integer(int(v))) for o, v in pairs])
        if [o for o, _v in answer] != [o for o, _v in pairs]:
            raise ControllerError(
                self.tls, "garbage", "the answer is about other objects than written"
            )
