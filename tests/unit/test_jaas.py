"""JAAS login configuration parsing (the DIGEST-MD5 users of ZooKeeper's Server section)."""

from __future__ import annotations

import pytest

from corral.server.jaas import JaasError, parse_jaas, server_credentials

ZK_DOC_EXAMPLE = """
Server {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       user_super="adminsecret"
       user_bob="bobsecret";
};
Client {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       username="bob"
       password="bobsecret";
};
"""


def test_zookeeper_documentation_example() -> None:
    assert server_credentials(ZK_DOC_EXAMPLE) == {"super": "adminsecret", "bob": "bobsecret"}


def test_sections_and_entries() -> None:
    sections = parse_jaas(ZK_DOC_EXAMPLE)
    assert set(sections) == {"Server", "Client"}
    (client,) = sections["Client"]
    assert client.module == "org.apache.zookeeper.server.auth.DigestLoginModule"
    assert client.flag == "required"
    assert dict(client.options) == {"username": "bob", "password": "bobsecret"}
    assert "bobsecret" not in repr(client)


def test_comments_quotes_escapes_and_several_modules() -> None:
    text = """
    // a comment
    /* a block
       comment */
    # a hash comment
    QuorumServer { x.Y required user_q="q"; };
    MyServer {
        com.example.Other optional debug=true;
        org.apache.zookeeper.server.auth.DigestLoginModule Required
            user_alice='pa"ss'
            user_carol="with \\"quote\\" and ; } {"
            user_dave=bare-word_1
            user_alice="override";
    };
    """
    assert server_credentials(text, "MyServer") == {
        "alice": "override",
        "carol": 'with "quote" and ; } {',
        "dave": "bare-word_1",
    }


def test_property_expansion() -> None:
    text = 'Server { m.M required user_bob="${bob.pw}-x"; };'
    assert server_credentials(text) == {"bob": "${bob.pw}-x"}
    assert server_credentials(text, properties={"bob.pw": "s3"}) == {"bob": "s3-x"}
    with pytest.raises(JaasError, match="expand"):
        server_credentials(text, properties={})


def test_missing_section() -> None:
    # No section, no SASL (as ZooKeeper); a malformed file raises.
    assert server_credentials("Client { m.M required; };") is None
    assert server_credentials('QuorumServer { m.M required user_p="x"; };') is None
    assert server_credentials(ZK_DOC_EXAMPLE) == {"super": "adminsecret", "bob": "bobsecret"}
    with pytest.raises(JaasError):
        server_credentials("Server { m.M required")


@pytest.mark.parametrize(
    "text",
    [
        'Server { m.M required user_a="x" };',  # missing ';' after the module
        'Server { m.M required user_a="x"; }',  # missing ';' after the section
        "Server { m.M mandatory; };",  # bad flag
        "Server { m.M required user_a; };",  # option without value
        'Server { m.M required user_a="x; };',  # unterminated string
        "Server { m.M required; }; Server { m.M required; };",  # duplicate section
        'Server { m.M required user_a="x"; }; /* open',  # unterminated comment
        "Server { m.M required user_a=@; };",  # stray character
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(JaasError):
        parse_jaas(text)
