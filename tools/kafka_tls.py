#!/usr/bin/env python3
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations

"""Certificates and SCRAM users for the test broker's secured listeners.

A CA made at test time signs the broker's certificate (for 127.0.0.1 and
localhost) and a client certificate for mutual TLS. Kafka reads PEM files
directly; its keys must be PKCS#8. Nothing here is a secret of any real
system: every file lives in the cluster's work directory.
"""

import pathlib

from cryptography.hazmat.primitives import serialization
import trustme

SCRAM_MECHANISM = 'SCRAM-SHA-512'
SCRAM_USER = 'monasca'
SCRAM_PASSWORD = 'scram-test-password'
CLIENT_KEY_PASSWORD = 'client-key-password'


def _pkcs8(key_pem: bytes, password: str | None = None) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    encryption = (serialization.BestAvailableEncryption(password.encode())
                  if password else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8, encryption)


class TestTLS:
    """The files of one secured cluster, written under ``directory``.

    :ivar ca: PEM of the CA clients trust.
    :ivar client_cert, client_key: the mTLS client's certificate and its
        key, encrypted with :data:`CLIENT_KEY_PASSWORD`.
    :ivar untrusted_ca: a CA that signed nothing the broker uses.
    """

    def __init__(self, directory: pathlib.Path):
        directory.mkdir(parents=True, exist_ok=True)
        authority = trustme.CA()
        server = authority.issue_cert('127.0.0.1', 'localhost')
        client = authority.issue_cert('monasca-client')
        self.ca = directory / 'ca.pem'
        self.ca.write_bytes(authority.cert_pem.bytes())
        self.server = directory / 'server.pem'
        self.server.write_bytes(
            _pkcs8(server.private_key_pem.bytes()) +
            b''.join(blob.bytes() for blob in server.cert_chain_pems))
        self.client_cert = directory / 'client.pem'
        self.client_cert.write_bytes(
            b''.join(blob.bytes() for blob in client.cert_chain_pems))
        self.client_key = directory / 'client.key'
        self.client_key.write_bytes(_pkcs8(client.private_key_pem.bytes(),
                                           CLIENT_KEY_PASSWORD))
        self.untrusted_ca = directory / 'untrusted-ca.pem'
        self.untrusted_ca.write_bytes(trustme.CA().cert_pem.bytes())

    def broker_properties(self) -> dict:
        """``server.properties`` of the SSL, SASL_SSL and MTLS listeners.

        Their ports are the node's.
        """
        return {
            'ssl.keystore.type': 'PEM',
            'ssl.keystore.location': str(self.server),
            'ssl.truststore.type': 'PEM',
            'ssl.truststore.location': str(self.ca),
            'listener.name.mtls.ssl.client.auth': 'required',
            'sasl.enabled.mechanisms': SCRAM_MECHANISM,
            'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config':
                'org.apache.kafka.common.security.scram.ScramLoginModule '
                'required;',
        }

    @staticmethod
    def scram_format_argument() -> str:
        """``kafka-storage format --add-scram`` for the test user."""
        return '%s=[name=%s,password=%s]' % (SCRAM_MECHANISM, SCRAM_USER,
                                             SCRAM_PASSWORD)
