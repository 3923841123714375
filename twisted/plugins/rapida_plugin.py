"""
The C{rapida} twistd/twist plugin.

Lazy on purpose: C{twistd --help} imports every plugin module, so this file
imports nothing of rapida_twisted; C{rapida_twisted.tap} is imported only
when the C{rapida} subcommand runs.
"""

from twisted.application.service import ServiceMaker

rapida = ServiceMaker(
    "rapida-twisted",
    "rapida_twisted.tap",
    "Telephony gateway connecting Twilio, Vonage, Exotel, Asterisk and SIP calls to voice assistants",
    "rapida",
)
