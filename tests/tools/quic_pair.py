"""A QUIC server and client (aioquic) for tests/protocols.rs.

    quic_pair.py server HOST PORT VERSION   # serves until killed
    quic_pair.py client HOST PORT VERSION   # one echo exchange, exit 0 on success

VERSION is 1 (RFC 9000) or 2 (RFC 9369). The server makes its own
self-signed certificate; the client does not verify it. One bidirectional
stream carries a short message that the server echoes, so the handshake
completes and both sides' Initial packets are on the wire.
"""

import asyncio
import datetime
import os
import ssl
import sys
import tempfile

from aioquic.asyncio import connect, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamDataReceived
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.packet import QuicProtocolVersion
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ALPN = ["osprey-test"]


def version(v: str) -> int:
    return {"1": QuicProtocolVersion.VERSION_1, "2": QuicProtocolVersion.VERSION_2}[v]


def self_signed(directory: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "osprey.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


class Echo(QuicConnectionProtocol):
    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            self._quic.send_stream_data(event.stream_id, event.data, event.end_stream)
            self.transmit()


async def run_server(host: str, port: int, v: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        cfg = QuicConfiguration(is_client=False, alpn_protocols=ALPN, supported_versions=[v])
        cfg.load_cert_chain(*self_signed(d))
        await serve(host, port, configuration=cfg, create_protocol=Echo)
        print("listening", flush=True)
        await asyncio.Future()


async def run_client(host: str, port: int, v: int) -> None:
    cfg = QuicConfiguration(
        is_client=True,
        alpn_protocols=ALPN,
        supported_versions=[v],
        verify_mode=ssl.CERT_NONE,
        server_name="osprey.test",
    )
    async with connect(host, port, configuration=cfg) as client:
        reader, writer = await client.create_stream()
        writer.write(b"hello over quic")
        writer.write_eof()
        data = await asyncio.wait_for(reader.read(), timeout=5)
        assert data == b"hello over quic", data


def main() -> None:
    mode, host, port, v = sys.argv[1], sys.argv[2], int(sys.argv[3]), version(sys.argv[4])
    if mode == "server":
        asyncio.run(run_server(host, port, v))
    else:
        asyncio.run(asyncio.wait_for(run_client(host, port, v), timeout=10))


if __name__ == "__main__":
    main()
