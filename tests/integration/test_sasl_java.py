"""Our DIGEST-MD5 server against the JDK's DIGEST-MD5 client, set up as ZooKeeper's client does.

ZooKeeper's Java client (zkCli.sh with a JAAS ``Client`` section) asks the JDK for a
DIGEST-MD5 SaslClient with authzid = username, protocol ``zookeeper`` and server name
``zk-sasl-md5``; the JDK client checks our challenge and our rspauth.
"""

from __future__ import annotations

import base64
import random
import shutil
import subprocess
from pathlib import Path
from typing import IO

import pytest

from corral.server.sasl_digest import DigestConfig, DigestMD5Server, SaslError

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="needs a JDK")

JAVA_CLIENT = r"""
import javax.security.sasl.*;
import javax.security.auth.callback.*;
import java.io.*;
import java.util.*;

public class ZkDigestClient {
    public static void main(String[] args) throws Exception {
        String user = args[0], password = args[1], authzid = args[2];
        CallbackHandler handler = callbacks -> {
            for (Callback c : callbacks) {
                if (c instanceof NameCallback nc) nc.setName(nc.getDefaultName());
                else if (c instanceof PasswordCallback pc) pc.setPassword(password.toCharArray());
                else if (c instanceof RealmCallback rc) rc.setText(rc.getDefaultText());
            }
        };
        // As ZooKeeper's SecurityUtils.createSaslClient does for DIGEST-MD5.
        Map<String, String> props = new HashMap<>();
        SaslClient client = Sasl.createSaslClient(
            new String[] {"DIGEST-MD5"}, authzid, "zookeeper", "zk-sasl-md5", props,
            cbs -> { for (Callback c : cbs) {
                if (c instanceof NameCallback nc) nc.setName(user);
                else handler.handle(new Callback[] {c});
            } });
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        PrintStream out = System.out;
        Base64.Encoder enc = Base64.getEncoder();
        out.println(client.hasInitialResponse() ? "initial" : "none");
        out.flush();
        String line;
        while ((line = in.readLine()) != null) {
            try {
                byte[] resp = client.evaluateChallenge(Base64.getDecoder().decode(line));
                if (client.isComplete()) {
                    out.println("COMPLETE");
                } else {
                    out.println(enc.encodeToString(resp == null ? new byte[0] : resp));
                }
            } catch (SaslException e) {
                out.println("ERROR " + e.getMessage());
            }
            out.flush();
        }
    }
}
"""


@pytest.fixture(scope="module")
def java_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("java") / "ZkDigestClient.java"
    src.write_text(JAVA_CLIENT)
    return src


def drive(src: Path, server: DigestMD5Server, user: str, password: str, authzid: str) -> str:
    """Run the exchange; return the Java client's last line (COMPLETE or ERROR ...)."""
    with subprocess.Popen(
        ["java", str(src), user, password, authzid],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        return _exchange(proc.stdin, proc.stdout, server)


def _exchange(to_java: IO[str], from_java: IO[str], server: DigestMD5Server) -> str:
    assert from_java.readline().strip() == "none"  # DIGEST-MD5 has no initial response
    token = server.evaluate(b"")  # ZooKeeper's client opens with an empty token
    while True:
        to_java.write(base64.b64encode(token).decode() + "\n")
        to_java.flush()
        line = from_java.readline().strip()
        if line == "COMPLETE" or line.startswith("ERROR"):
            return line
        try:
            token = server.evaluate(base64.b64decode(line))
        except SaslError as e:
            return f"SERVER {e}"


def make_server(seed: int) -> DigestMD5Server:
    return DigestMD5Server(
        DigestConfig(credentials={"bob": "bobsecret", "super": "adminsecret"}),
        random.Random(seed),
    )


def test_jdk_client_authenticates(java_client: Path) -> None:
    server = make_server(1)
    assert drive(java_client, server, "bob", "bobsecret", "bob") == "COMPLETE"
    assert server.complete
    assert server.authorization_id == "bob"


def test_jdk_client_with_other_authzid_gets_its_own_id(java_client: Path) -> None:
    server = make_server(2)
    assert drive(java_client, server, "bob", "bobsecret", "super") == "COMPLETE"
    assert server.authorization_id == "bob"


def test_jdk_client_wrong_password(java_client: Path) -> None:
    server = make_server(3)
    result = drive(java_client, server, "bob", "nope", "bob")
    assert result.startswith("SERVER") and "Mismatched response" in result
    assert not server.complete
