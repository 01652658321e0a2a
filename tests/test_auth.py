"""OAuth 1.0a signing, checked against Twitter's worked example."""

from twisted.trial.unittest import SynchronousTestCase

from flamingo.stream.auth import (
    BasicAuth,
    BearerAuth,
    OAuth1,
    oauth1_signature,
    parse_oauth_header,
    percent_encode,
    signature_base_string,
)

# "Creating a signature", developer.twitter.com (OAuth 1.0a).
EXAMPLE_URL = "https://api.twitter.com/1.1/statuses/update.json"
EXAMPLE_PARAMS = [
    ("status", "Hello Ladies + Gentlemen, a signed OAuth request!"),
    ("include_entities", "true"),
    ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
    ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
    ("oauth_signature_method", "HMAC-SHA1"),
    ("oauth_timestamp", "1318622958"),
    ("oauth_token", "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb"),
    ("oauth_version", "1.0"),
]
CONSUMER_SECRET = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw"
TOKEN_SECRET = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"


class OAuthSignatureTests(SynchronousTestCase):
    def test_worked_example_base_string(self):
        base = signature_base_string("post", EXAMPLE_URL, EXAMPLE_PARAMS)
        self.assertTrue(base.startswith("POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&"))
        self.assertIn("include_entities%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog", base)
        self.assertIn(
            "status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521",
            base,
        )

    def test_worked_example_signature(self):
        sig = oauth1_signature("POST", EXAMPLE_URL, EXAMPLE_PARAMS, CONSUMER_SECRET, TOKEN_SECRET)
        self.assertEqual(sig, "hCtSmYh+iHYCEqBWrE7C7hYmtUk=")

    def test_percent_encode_reserved(self):
        self.assertEqual(percent_encode("a b+c!*~"), "a%20b%2Bc%21%2A~")
        self.assertEqual(percent_encode("☃"), "%E2%98%83")

    def test_header_round_trips_and_verifies(self):
        auth = OAuth1(
            "xvz1evFS4wEEPTGEFPHBog", CONSUMER_SECRET,
            "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb", TOKEN_SECRET,
            clock=lambda: 1318622958, nonce=lambda: "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
        )
        body = [("status", "Hello Ladies + Gentlemen, a signed OAuth request!")]
        header = auth.header("POST", EXAMPLE_URL + "?include_entities=true", body).decode()
        fields = parse_oauth_header(header)
        self.assertEqual(fields["oauth_signature"], "hCtSmYh+iHYCEqBWrE7C7hYmtUk=")
        self.assertNotIn(TOKEN_SECRET, header)
        self.assertNotIn(CONSUMER_SECRET, header)

    def test_malformed_header_is_refused(self):
        self.assertRaises(ValueError, parse_oauth_header, "Basic abc")
        self.assertRaises(ValueError, parse_oauth_header, "OAuth oauth_token=unquoted")


class SimpleAuthTests(SynchronousTestCase):
    def test_basic(self):
        self.assertEqual(BasicAuth("user", "pass").header("GET", "http://x/", []), b"Basic dXNlcjpwYXNz")

    def test_secrets_not_in_repr(self):
        self.assertNotIn("pass", repr(BasicAuth("user", "pass")))
        self.assertNotIn("tok", repr(BearerAuth("tok")))
        self.assertEqual(BearerAuth("tok").header("GET", "http://x/", []), b"Bearer tok")
