"""
The assistants file: assistants, provider credentials with environment
fallbacks, and clear errors.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.config import ConfigError, loadConfig, parseConfig

FULL = """
[[assistants]]
id = "sales"
kind = "echo"
numbers = ["+1 555 765 0000", "100"]
sample_rate = 8000
[assistants.options]
greeting = "hi"

[providers.twilio]
account_sid = "AC1"
auth_token = "file-token"

[providers.vonage]
signature_secret = "vsecret"

[providers.exotel]
stream_username = "u"
stream_password = "p"
allow_from = ["203.0.113.0/24"]
chunk_ms = 40

[sip]
realm = "example"
users = { alice = "pw" }
max_dialogs = 10

[audiosocket]
assistant = "sales"
"""


class ParseTests(SynchronousTestCase):
    def test_echoAlwaysThere(self) -> None:
        config = parseConfig("")
        self.assertEqual(config.assistant("echo").kind, "echo")
        self.assertIsNone(config.assistant("nobody"))

    def test_full(self) -> None:
        config = parseConfig(FULL, {"TWILIO_AUTH_TOKEN": "env-token", "VONAGE_APPLICATION_ID": "app"})
        sales = config.assistant("sales")
        self.assertEqual((sales.sampleRate, sales.options["greeting"]), (8000, "hi"))
        self.assertEqual(config.twilio.auth_token, "file-token")  # the file wins
        self.assertEqual(config.vonage.application_id, "app")  # env fallback
        self.assertEqual(config.exotel.allow_from[0].num_addresses, 256)
        self.assertEqual(config.exotel.chunk_ms, 40)
        self.assertEqual(config.sip.users, {"alice": "pw"})
        self.assertEqual(config.sip.max_dialogs, 10)
        self.assertEqual(config.audiosocket_assistant, "sales")

    def test_numbers(self) -> None:
        config = parseConfig(FULL)
        self.assertEqual(config.assistantForNumber("+15557650000").id, "sales")
        self.assertEqual(config.assistantForNumber("100").id, "sales")
        self.assertIsNone(config.assistantForNumber("999"))
        self.assertIsNone(config.assistantForNumber(""))

    def test_envOnly(self) -> None:
        config = parseConfig("", {"TWILIO_ACCOUNT_SID": "AC9", "EXOTEL_API_KEY": "k"})
        self.assertEqual((config.twilio.account_sid, config.exotel.api_key), ("AC9", "k"))

    def test_errors(self) -> None:
        for text, fragment in [
            ("[[assistants]]\nkind='echo'\n", "assistants[0].id"),
            ("[[assistants]]\nid='a b'\n", "assistants[0].id"),
            ("[[assistants]]\nid='a'\nkind='magic'\n", "magic"),
            ("[[assistants]]\nid='a'\nsample_rate=44100\n", "sample_rate"),
            ("[[assistants]]\nid='a'\nnumbers='1'\n", "numbers"),
            ("[providers.exotel]\nallow_from=['nonsense']\n", "allow_from"),
            ("[providers.twilio]\nauth_token=1\n", "auth_token"),
            ("[audiosocket]\nassistant='ghost'\n", "ghost"),
            ("[providers.exotel]\nchunk_ms=-1\n", "chunk_ms"),
            ("this is = = not toml", "not valid TOML"),
        ]:
            error = self.assertRaises(ConfigError, parseConfig, text)
            self.assertIn(fragment, str(error), text)

    def test_loadErrors(self) -> None:
        self.assertIn("cannot read", str(self.assertRaises(ConfigError, loadConfig, "/no/such.toml")))
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\xff\xfe")
        self.assertIn("UTF-8", str(self.assertRaises(ConfigError, loadConfig, path)))
